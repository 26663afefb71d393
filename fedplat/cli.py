"""`fedplat`: the Hydra command line.

`main` checks the overrides first (group names, keys, values: for a sweep, every combination),
so a mistake costs one line on stderr and exit code 2 before Hydra, Ray or any data starts. Then
Hydra takes over: it makes the run directory (or one per sweep job with `-m`) and calls the
scenario's runner (`scenario.runner`, e.g. simulations.centralized.run).

`fedplat evaluate RUN_DIR [strategy.KEY=VALUE ...]` evaluates a saved run's checkpoint again
under another evaluation option (`fedplat.evaluate`); it is recognised here, before Hydra.

Run directories (`fedplat.recording.rundir`): a new run refuses a directory that already holds a
run unless `resume=DIR` or `overwrite=true` is given, checked before Hydra writes anything;
`resume=DIR` of a complete run says so and exits 0 without writing; a resumed run (and one with
`output_dir=DIR`) logs into that directory (hydra.run.dir follows it). SIGTERM is raised like
Ctrl-C's KeyboardInterrupt, so summary.json records the interruption.

Exit codes: 0 done (or nothing to resume), 1 the run stopped early (`RunAborted`; results so far
are kept), 2 bad input, 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM (128 + the signal).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fedplat.config.compose import compose, compose_hydra, import_object, parse_overrides, prepare
from fedplat.config.diagnose import check_output_dir, find_malformed, load_config_file
from fedplat.config.settings import resume_dir
from fedplat.config.tree import CONF_DIR
from fedplat.errors import RunAborted, UserError
from fedplat.progress import check_mode, stop_all
from fedplat.recording import rundir
from fedplat.recording.recorder import (
    devices_line,
    faults_line,
    forget_earlier_runs,
    interrupt_open_runs,
)
from fedplat.sweep import (
    check_direction,
    check_storage,
    machine_cpus,
    objective_key,
    objective_value,
    parallel_jobs,
    size_for_jobs,
)

log = logging.getLogger("fedplat")

#: Hydra flags that take a value as the next argument.
_FLAGS_WITH_VALUE = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir",
                     "--experimental-rerun", "-i", "--info"}
#: Flags after which fedplat does not pre-check anything (help, config printing).
_PASSTHROUGH = {"-h", "--help", "--hydra-help", "-c", "--cfg", "--resolve", "--info", "-i",
                "--shell-completion", "-sc"}
#: Hydra's other flags; any other `-x` is a mistake answered before Hydra's usage block.
_OTHER_FLAGS = {"-m", "--multirun", "-r", "--run", "--version", "-p", "--package"}
_MAX_CHECKED_COMBINATIONS = 256


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit."""
    print(f"fedplat: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def user_overrides(argv: Sequence[str]) -> list[str] | None:
    """The `key=value` overrides in argv (None when a help/print flag is present)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _PASSTHROUGH:
            return None
        if arg in _FLAGS_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        out.append(arg)
    return out


def flag_values(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """The values given to a flag (`--config-dir DIR`, `-cd DIR`, `--config-dir=DIR`)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if eq and name in names:
            out.append(value)
        elif arg in names and i + 1 < len(argv):
            out.append(argv[i + 1])
    return out


def check_flags(argv: Sequence[str]) -> None:
    """Refuse unknown flags and an absent or broken primary config in one line.

    Hydra would answer an unknown flag with its usage block, and a `--config-path` or
    `--config-name` that is absent or does not parse with a traceback.
    """
    known = _FLAGS_WITH_VALUE | _PASSTHROUGH | _OTHER_FLAGS
    for i, arg in enumerate(argv):
        if arg.startswith("-") and arg.partition("=")[0] not in known and not (
                i > 0 and argv[i - 1] in _FLAGS_WITH_VALUE):
            raise UserError(f"unknown option {arg}: fedplat takes KEY=VALUE overrides and "
                            "Hydra's flags (see fedplat --help)")
    paths = flag_values(argv, ("-cp", "--config-path"))
    root = Path(paths[-1]).expanduser() if paths else CONF_DIR
    if not root.is_dir():
        raise UserError(f"--config-path {root}: no such directory; pass the folder of your "
                        "primary config")
    name = (flag_values(argv, ("-cn", "--config-name")) or ["config"])[-1]
    dirs = [root, *map(Path, flag_values(argv, ("-cd", "--config-dir")))]
    if not any((d / f"{name.removesuffix('.yaml')}.yaml").is_file() for d in dirs):
        raise UserError(f"--config-name {name}: no {name.removesuffix('.yaml')}.yaml in "
                        f"{', '.join(map(str, dirs))}")
    if paths and (malformed := find_malformed([root])) is not None:
        raise malformed


def precheck(overrides: Sequence[str], config_dirs: Sequence[Path] = (),
             multirun: bool = False, compose_check: bool = True) -> None:
    """Compose and validate every sweep combination (up to a cap); raise UserError.

    Also the directories the run will write (Hydra's run or sweep directory, `output_dir`):
    one that cannot be created is refused here, before Hydra fails on it with a traceback.
    `compose_check=False` (a primary config of the user's own, `--config-path`/`-cn`, which
    `compose` does not know): only the directories; each run still validates its config.
    """
    plain = [o for o in overrides if not o.lstrip("~+").startswith("hydra")]
    combos = parse_overrides(plain, config_dirs) if compose_check else []
    for combo in combos[:_MAX_CHECKED_COMBINATIONS]:
        cfg = prepare(compose(combo, config_dirs))
        check_mode(cfg)
        key = objective_key(cfg)
    if multirun and combos:
        check_sweeper(combos[0], overrides, config_dirs, key)
    given = {o.partition("=")[0].lstrip("+"): o.partition("=")[2] for o in overrides}
    hydra_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    check_output_dir(given.get(hydra_key, "multirun" if multirun else "outputs"), hydra_key)
    if given.get("output_dir"):
        check_output_dir(given["output_dir"], "output_dir")


def check_sweeper(combo: Sequence[str], overrides: Sequence[str], config_dirs: Sequence[Path],
                  key: str) -> None:
    """An Optuna sweep must optimise the objective its own way and keep its study in memory.

    Read from the Hydra config the command line composes (with its sweeper choice and
    settings); only when a `hydra/sweeper` is chosen there.
    """
    chosen = [o for o in overrides if o.lstrip("+").startswith(("hydra/sweeper=",
                                                                 "hydra.sweeper."))]
    if not any(o.lstrip("+").startswith("hydra/sweeper=") for o in chosen):
        return
    hydra_cfg = compose_hydra([*combo, *chosen], config_dirs)
    check_direction(hydra_cfg.hydra.sweeper, key)
    check_storage(hydra_cfg.hydra.sweeper)


def format_summary(summary: Mapping[str, Any], run_dir: Path) -> str:
    """The one-screen end-of-run report."""

    def pct(x: Any) -> str:
        return f"{100 * x:.2f}%" if isinstance(x, int | float) else "n/a"

    final = summary.get("final", {})
    best = summary.get("best", {})
    best_mean = summary.get("best_mean", {})
    startup = summary.get("startup_s")
    per_round = summary.get("mean_round_time_s")
    lines = [
        f"fedplat run {summary['status']}: {summary['strategy']} on {summary['dataset']} "
        f"({summary['partition']}, {summary['num_clients']} clients, model {summary['model']}, "
        f"seed {summary['seed']})",
        f"  rounds        {summary['rounds_completed']}/{summary['num_rounds']} in "
        f"{summary['wall_time_s']:.1f} s"
        + (f" (start-up {startup:.1f} s, {per_round:.2f} s/round)"
           if startup is not None and per_round is not None else ""),
        f"  final         accuracy {pct(final.get('accuracy'))} at round {final.get('round')} "
        f"(mean over clients {pct(final.get('accuracy_mean'))})",
        f"  best          accuracy {pct(best.get('accuracy'))} at round {best.get('round')} "
        f"(round chosen by {best.get('criterion', 'n/a')})",
        *([f"  best (mean)   mean accuracy over clients {pct(best_mean.get('accuracy_mean'))} "
           f"at round {best_mean.get('round')} (round chosen by mean validation accuracy)"]
          if best_mean else []),
        *([f"  data          {summary['data']['line']}"]
          if isinstance(summary.get("data"), Mapping) and summary["data"].get("line") else []),
        f"  faults        {faults_line(summary.get('faults'), summary.get('failures', 0))}",
        *([f"  clients       {where}"] if (where := devices_line(summary.get("devices")))
          else []),
        f"  results       {run_dir}",
    ]
    if summary.get("reason"):
        lines.append(f"  stopped       {summary['reason']}")
    return "\n".join(lines)


def resume_config(resume: Path, task_overrides: Sequence[str]) -> DictConfig:
    """The saved config of the run in `resume`, which continues in its own directory."""
    others = [o for o in task_overrides if not o.startswith("resume=")]
    if others:
        raise UserError(f"resume=... continues a run with its saved config; drop the other "
                        f"overrides ({' '.join(others)})")
    run_dir = resume.resolve()
    saved = load_config_file(run_dir / "config.yaml", "fedplat run")
    saved.resume = str(run_dir)
    saved.output_dir = str(run_dir)
    return saved


class NothingToDo(Exception):
    """`resume=` of a complete run: one line, exit 0, nothing written."""


def _override_value(overrides: Sequence[str], key: str) -> str | None:
    """The value of the last `key=value` among `overrides` (quotes removed), or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    found = [o for o in overrides if o.lstrip("+").split("=", 1)[0] == key]
    if not found:
        return None
    try:
        value = OverridesParser.create().parse_overrides([found[-1]])[0].value()
    except Exception:  # Hydra reports a malformed override itself, in its own words
        return None
    return None if value is None else str(value)


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_dir_overrides(args: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """Check the run directory before Hydra writes into it; the Hydra overrides to add.

    * `resume=DIR`: a complete run raises `NothingToDo`; otherwise Hydra's directory (run.log)
      becomes DIR, without a new .hydra/ (the original run's stays).
    * `output_dir=DIR` or `hydra.run.dir=DIR` that holds a run: `UserError` unless
      `overwrite=true` (nothing written). With `output_dir=DIR`, run.log goes there too.
    A sweep (`-m`) is checked job by job in `_hydra_entry`.
    """
    if "-m" in args or "--multirun" in args:
        return []
    plain = [o for o in overrides if not o.lstrip("~+").startswith("hydra")]
    hydra_dir = _override_value(overrides, "hydra.run.dir")
    cfg = compose(plain)
    resume = resume_dir(cfg)
    if resume is not None:
        done = rundir.completed_line(resume)
        if done is not None:
            raise NothingToDo(done)
        return [] if hydra_dir is not None else [f"hydra.run.dir={_quoted(resume.resolve())}",
                                                 "hydra.output_subdir=null"]
    overwrite = rundir.overwrite_flag(cfg)
    extra: list[str] = []
    if cfg.get("output_dir"):
        target = Path(str(cfg.output_dir)).expanduser().resolve()
        if hydra_dir is None:
            extra = [f"hydra.run.dir={_quoted(target)}"]
        rundir.claim(target, overwrite)
    elif hydra_dir is not None and "${" not in hydra_dir:
        rundir.claim(Path(hydra_dir).expanduser().resolve(), overwrite)
    return extra


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def _hydra_entry(cfg: DictConfig) -> float | None:
    """One run (one job of a sweep); returns its `objective` for Hydra's sweepers.

    The value (default: summary.json's `final.accuracy`) is what `hydra/sweeper=optuna`
    optimises; None when the run has none (no evaluated round, or a sweep job that stopped).
    In a sweep, a run that stops early (`RunAborted`, e.g. a learning rate that diverges)
    is reported in one line and the sweep goes on; a single run exits with code 1.
    """
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        resume = resume_dir(cfg)
        if resume is not None:
            done = rundir.completed_line(resume)
            if done is not None:
                print(f"fedplat: {done}", file=sys.stderr)
                return None
            cfg = resume_config(resume, list(hydra_cfg.overrides.task))
        key = objective_key(cfg)
        if multirun:
            sizing = size_for_jobs(cfg, parallel_jobs(hydra_cfg.launcher, hydra_cfg.sweeper,
                                                      machine_cpus()), machine_cpus())
            if sizing is not None:
                log.info("%s", sizing)
        prepare(cfg)
        check_mode(cfg)
        run_dir = Path(cfg.output_dir or hydra_cfg.runtime.output_dir).resolve()
        if resume is None:
            rundir.claim(run_dir, rundir.overwrite_flag(cfg))
        runner = import_object(cfg.scenario.runner, "scenario.runner")
        summary = runner(cfg, run_dir)
    except UserError as exc:
        fail(str(exc), 2)
    except RunAborted as exc:
        if not multirun:
            fail(f"run stopped: {exc} (results so far are in the run directory)", 1)
        print(f"fedplat: error: run stopped: {exc} (results so far are in "
              f"{hydra_cfg.runtime.output_dir}); the sweep goes on", file=sys.stderr, flush=True)
        return None
    print(format_summary(summary, run_dir), flush=True)
    return objective_value(summary, key)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of `fedplat`."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "evaluate":  # a subcommand, not a Hydra override
        from fedplat.evaluate import main as evaluate_main

        evaluate_main(args[1:])
        return
    # Hydra reads a relative --config-path from fedplat's package; the user means the cwd
    args = [str(Path(a).expanduser().resolve()) if i and args[i - 1] in ("-cp", "--config-path")
            else a for i, a in enumerate(args)]
    overrides = user_overrides(args)
    try:
        check_flags(args)
        if overrides is not None:
            t0 = time.perf_counter()
            print(time.strftime("[%H:%M:%S] start-up: checking the config ..."), flush=True)
            precheck(overrides, [Path(d) for d in flag_values(args, ("-cd", "--config-dir"))],
                     multirun=bool({"-m", "--multirun"} & set(args)),
                     compose_check=not flag_values(args, ("-cp", "--config-path", "-cn",
                                                          "--config-name")))
            args += run_dir_overrides(args, overrides)
            print(time.strftime("[%H:%M:%S] start-up: config checked in ")
                  + f"{time.perf_counter() - t0:.1f} s", flush=True)
    except UserError as exc:
        fail(str(exc), 2)
    except NothingToDo as done:
        print(f"fedplat: {done}", file=sys.stderr)
        return
    sys.argv = [sys.argv[0], *args]
    in_main = threading.current_thread() is threading.main_thread()
    previous = rundir.on_sigterm() if in_main else None
    forget_earlier_runs()
    try:
        _hydra_entry()
    except KeyboardInterrupt as exc:
        _interrupted(rundir.signal_name(exc))
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(name: str) -> None:
    """Close the interrupted run(s), say where, exit 128 + the signal's number.

    When the run's server loop is in another thread (the Ray backend), that thread would wait
    for replies forever: the process then ends at once, after flushing the logs.
    """
    threaded = any(t.is_alive() and not t.daemon for t in threading.enumerate()
                   if t is not threading.current_thread())
    runs = interrupt_open_runs(name, draw=not threaded)
    where = "; ".join(str(r.reason) for r in runs) or f"stopped by {name}"
    code = rundir.exit_code(name)
    print(f"fedplat: error: run interrupted: {where}; summary.json says \"interrupted\"",
          file=sys.stderr, flush=True)
    if threaded:  # Ray's processes share the driver's fate (they end with it)
        stop_all()  # a live progress bar gives the terminal its cursor back
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    main()

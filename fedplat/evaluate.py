"""`fedplat evaluate RUN_DIR [strategy.KEY=VALUE ...]`: evaluate a saved run again, no training.

An evaluation protocol that only changes how clients are evaluated (an absent-class mask,
which extractor is evaluated) should not cost a training run. This command takes a run's saved
config (config.yaml), applies the given overrides, restores its latest checkpoint (the
strategy's state and every client's private state, as `resume=` does) and runs one evaluate
stage through the same ServerApp, ClientApp, transport and strategy code as a run (on the
inline backend), as that round of the run would: the strategy's own evaluation sample, the
same offline clients and seeds. Results go to `RUN_DIR/evaluations/<UTC time>_<overrides>/`
(config.yaml, metrics.jsonl, summary.json, clients.json, metrics.json, report.txt); the run's
own files are only read.

Only keys a strategy declares evaluation-only (`Strategy.evaluation_keys`) may change; any
other key (seed, num_clients, dataset.*, partition.*, model.*, ...) would change training and
is refused with one line, as is a data set whose files changed since the run (sha256).

A checkpoint exists at every `checkpoint_every`-th round and after the last one, so a run
started with `checkpoint_every=N` can be evaluated at its end. Invoked as a subcommand of
`fedplat` (detected in `fedplat.cli.main` before Hydra starts).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from omegaconf import DictConfig, OmegaConf

from fedplat.config.compose import import_object, prepare
from fedplat.config.diagnose import load_config_file
from fedplat.errors import RunAborted, UserError
from fedplat.recording import checkpoint
from fedplat.recording.recorder import CONFIG_FILE, SUMMARY_FILE, RunRecorder, write_json

log = logging.getLogger("fedplat")

#: Subdirectory of a run that holds its later evaluations.
EVALUATIONS_DIR = "evaluations"
#: The evaluation's result file and its console block, inside the evaluation's directory.
RESULT_FILE = "metrics.json"
REPORT_FILE = "report.txt"

USAGE = "usage: fedplat evaluate RUN_DIR [strategy.KEY=VALUE ...]"


def allowed_keys(cfg: DictConfig) -> list[str]:
    """The dotted keys `fedplat evaluate` may change for this run's strategy."""
    cls = import_object(cfg.strategy._target_, "strategy._target_")
    return [f"strategy.{k}" for k in getattr(cls, "evaluation_keys", ())]


def parse_overrides(overrides: Sequence[str], allowed: Sequence[str],
                    strategy: str) -> dict[str, Any]:
    """`key=value` pairs, each key one the strategy declares evaluation-only; else UserError."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key or key.startswith(("+", "~")):
            raise UserError(f"fedplat evaluate: '{item}' is not KEY=VALUE ({USAGE})")
        if key not in allowed:
            choice = (f"evaluation-only keys of strategy {strategy}: {', '.join(allowed)}"
                      if allowed else f"strategy {strategy} declares no evaluation-only key "
                      "(Strategy.evaluation_keys)")
            raise UserError(f"fedplat evaluate: {key} would change training or the saved state, "
                            f"not only evaluation; train a new run for it ({choice})")
        parsed = OmegaConf.from_dotlist([f"{key}={value}"])
        out[key] = OmegaConf.select(parsed, key)
    return out


def load_run(run_dir: Path) -> tuple[DictConfig, tuple[int, Path]]:
    """The saved config and latest checkpoint of `run_dir`, or one line saying what is missing."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"fedplat evaluate: {run_dir} is not a run directory (no {CONFIG_FILE})")
    saved = load_config_file(run_dir / CONFIG_FILE, "fedplat run")
    latest = checkpoint.latest(run_dir)
    if latest is None:
        raise UserError(f"fedplat evaluate: {run_dir} has no checkpoint; start the run with "
                        "checkpoint_every=N (a checkpoint follows every N-th and the last round)")
    return saved, latest


def slug(overrides: Sequence[str]) -> str:
    """A directory-name-safe summary of the overrides ("as_trained" for none)."""
    text = "_".join(o.removeprefix("strategy.") for o in overrides) or "as_trained"
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text)[:80]


def evaluation_config(saved: DictConfig, values: Mapping[str, Any], out_dir: Path
                      ) -> DictConfig:
    """The saved config with the overrides, on the inline backend, writing into `out_dir`."""
    cfg = OmegaConf.create(OmegaConf.to_container(saved, resolve=True))
    assert isinstance(cfg, DictConfig)
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    cfg.simulation.backend = "inline"
    cfg.resume = ""
    cfg.output_dir = str(out_dir)
    cfg.checkpoint_every = 0
    if "capture" in cfg:
        cfg.capture.round = 0  # an evaluation captures nothing
    prepare(cfg)
    return cfg


def check_same_data(run_dir: Path, entry: Mapping[str, Any]) -> None:
    """Refuse data whose files differ from those the run recorded (sha256)."""
    try:
        recorded = json.loads((run_dir / SUMMARY_FILE).read_text()).get("data") or {}
    except (OSError, ValueError):
        return
    before, now = recorded.get("sha256"), entry.get("sha256")
    if before and now and before != now:
        raise UserError(f"fedplat evaluate: the data files changed since the run (sha256 "
                        f"{str(before)[:12]} then, {str(now)[:12]} now: {entry.get('origin')}); "
                        "evaluate with the data the run trained on")


def format_report(run_dir: Path, out_dir: Path, cfg: DictConfig, server_round: int,
                  overrides: Sequence[str], row: Mapping[str, Any],
                  data: Mapping[str, Any]) -> str:
    """The console block of an evaluation."""

    def pct(x: Any) -> str:
        return f"{100 * x:.2f}%" if isinstance(x, int | float) else "n/a"

    def num(x: Any) -> str:
        return f"{x:.4f}" if isinstance(x, int | float) else "n/a"

    lines = [
        f"fedplat evaluate: {cfg.strategy.name} on {cfg.dataset.name} ({cfg.num_clients} "
        f"clients), checkpoint of round {server_round} of {run_dir}",
        f"  overrides     {' '.join(overrides) or '(none: the protocol the run trained with)'}",
        f"  accuracy      {pct(row.get('test_accuracy'))} (mean over clients "
        f"{pct(row.get('test_accuracy_mean'))}), loss {num(row.get('test_loss'))}, "
        f"{row.get('num_evaluate_clients', 0)} clients",
    ]
    if isinstance(row.get("val_accuracy"), int | float):
        lines.append(f"  validation    {pct(row.get('val_accuracy'))} (mean over clients "
                     f"{pct(row.get('val_accuracy_mean'))})")
    if data.get("line"):
        lines.append(f"  data          {data['line']}")
    failures = int(row.get("failures_evaluate", 0))
    if failures:
        lines.append(f"  failures      {failures} clients failed to evaluate")
    lines.append(f"  results       {out_dir}")
    return "\n".join(lines)


def evaluate(run_dir: Path, overrides: Sequence[str]) -> tuple[dict[str, Any], Path]:
    """Evaluate `run_dir`'s latest checkpoint under `overrides`; (result, its directory)."""
    from fedplat.app import client_app
    from fedplat.data import load_federated, sources
    from fedplat.data.federated import describe_data
    from fedplat.runtime import launch
    from fedplat.server import Server

    run_dir = run_dir.expanduser().resolve()
    saved, latest = load_run(run_dir)
    values = parse_overrides(overrides, allowed_keys(saved), str(saved.strategy.name))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out_dir = run_dir / EVALUATIONS_DIR / f"{stamp}_{slug(overrides)}"
    n = 1
    while out_dir.exists():
        n += 1
        out_dir = run_dir / EVALUATIONS_DIR / f"{stamp}_{slug(overrides)}_{n}"
    cfg = evaluation_config(saved, values, out_dir)
    cls = import_object(cfg.strategy._target_, "strategy._target_")
    problem = cls.evaluation_problem(saved, cfg)
    if problem:
        raise UserError(f"fedplat evaluate: {problem}")
    entry = describe_data(load_federated(cfg), sources.cache_dir(cfg.get("cache_dir") or None))
    check_same_data(run_dir, entry)

    recorder = RunRecorder(out_dir, cfg)
    recorder.log_data(entry)
    rows: list[dict[str, Any]] = []
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        rows.append(Server(grid, cfg, recorder).evaluate_saved(latest))

    try:
        launch(cfg, app, client_app)
    except RunAborted as exc:
        recorder.finish("aborted", str(exc))
        raise
    except BaseException as exc:
        recorder.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    recorder.finish("completed")
    result = {"run_dir": str(run_dir), "checkpoint_round": latest[0],
              "overrides": list(overrides), "metrics": rows[0], "data": entry}
    write_json(out_dir / RESULT_FILE, result)
    report = format_report(run_dir, out_dir, cfg, latest[0], overrides, rows[0], entry)
    (out_dir / REPORT_FILE).write_text(report + "\n")
    return result, out_dir


def main(args: Sequence[str]) -> None:
    """`fedplat evaluate RUN_DIR [overrides...]`: exit 0 done, 1 stopped, 2 bad input."""

    def fail(message: str, code: int) -> None:
        print(f"fedplat: error: {message}", file=sys.stderr)  # as `fedplat.cli.fail`
        raise SystemExit(code)

    if not args:
        fail(f"fedplat evaluate needs a run directory ({USAGE})", 2)
    if args[0] in ("-h", "--help"):
        print(f"{USAGE}\n\n{__doc__}")
        return
    if args[0].startswith("-"):
        fail(f"fedplat evaluate: unknown option {args[0]} ({USAGE})", 2)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        _, out_dir = evaluate(Path(args[0]), list(args[1:]))
    except UserError as exc:
        fail(str(exc), 2)
    except RunAborted as exc:
        fail(f"evaluation stopped: {exc}", 1)
    print((out_dir / REPORT_FILE).read_text(), end="", flush=True)

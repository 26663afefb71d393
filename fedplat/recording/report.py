"""`fedplat-report RUN_DIR...`: compare runs in one markdown table and one accuracy plot.

Arguments may be run directories or folders holding them (a `multirun/...` sweep). Runs are
labelled by what differs between them, and only that: a sweep over
`seed=0,1,2 partition.alpha=0.1,1.0` reads as `partition.alpha=0.1, seed=0`, ... A second table
groups runs that differ only in `seed` and reports mean +- std over seeds; the plot draws such a
group as its mean curve with a band of +- 1 standard deviation over its runs.

What a label names (`label_keys`):

* the user's choices: the config groups (`strategy=hyperfl`, `dataset=cifar10`, ...) and, where
  Hydra kept them (`.hydra/overrides.yaml`), the command line's overrides, which name what no
  config key records (`experiment=privacy_fmnist_fedavg`);
* any other config key that differs and is not implied by those choices
  (`partition=iid` vs `partition=dirichlet` also changes `partition.alpha`; the label names the
  partition only, unless alpha also varies among the dirichlet runs themselves);
* never a value fedplat filled in itself (`AUTO_FILLED`: `simulation.clients_per_node`, and the
  model that `model=auto` picked for the dataset) unless the user set it.

Values longer than `MAX_VALUE_CHARS` are cut, so a label stays a few words.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fedplat.errors import UserError
from fedplat.recording.recorder import CONFIG_FILE, SUMMARY_FILE, read_rows

_IGNORED_KEYS = {"output_dir", "cache_dir", "overwrite", "resume"}
#: Keys fedplat fills in when the user leaves them at `auto`; a label names them only when a
#: run's overrides set them. (`model`, filled in by `model=auto`, is handled in `label_keys`.)
AUTO_FILLED = frozenset({"simulation.clients_per_node"})
#: The config groups whose choice names a run, in the order a label lists them. `model` comes
#: last: `model=auto` picks it from the dataset and strategy, so it is named only when those
#: do not already imply it (or when the user chose it).
GROUPS = ("scenario", "strategy", "dataset", "partition", "client", "simulation", "model")
#: A value longer than this is cut (with "…") in labels.
MAX_VALUE_CHARS = 24
#: Hydra's record of a run's command-line overrides, inside the run directory.
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"


@dataclass
class Run:
    """One run directory as the report sees it."""

    path: Path
    summary: dict[str, Any]
    #: Flat config (`a.b` keys), each group's `name` also as the group key (`strategy`), plus
    #: the override keys no config key records (`experiment`; None where a run lacks it).
    facts: dict[str, Any]
    #: The keys of `facts` that come from config.yaml.
    cfg_keys: set[str] = field(default_factory=set)
    #: Keys the user set on the command line (empty when Hydra kept no record).
    overridden: set[str] = field(default_factory=set)
    #: Whether Hydra's record of the overrides was found.
    recorded: bool = False
    label: str = ""


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Run directories (holding summary.json) at or below the given paths, sorted."""
    runs: set[Path] = set()
    for p in paths:
        if (p / SUMMARY_FILE).is_file():
            runs.add(p.resolve())
        elif p.is_dir():
            runs.update(s.parent.resolve() for s in p.rglob(SUMMARY_FILE))
    return sorted(runs)


def _flatten(d: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def read_overrides(run: Path) -> dict[str, str] | None:
    """The `key=value` overrides Hydra recorded for `run`; None when it kept no record.

    Only a hint for labels (config.yaml records what ran), so an unreadable record counts as
    none rather than stopping the report. Hydra's own keys and the run-directory keys are left
    out, as are deletions (`~key`).
    """
    import yaml

    path = run / OVERRIDES_FILE
    try:
        items = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(items, list):
        return None
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = str(item).partition("=")
        key = key.lstrip("+")
        if eq and key and not key.startswith(("hydra", "~")) and key not in _IGNORED_KEYS:
            out[key] = value
    return out


def _facts(cfg: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """`cfg` with each `<group>.name` under the group's key, plus the override-only keys."""
    facts: dict[str, Any] = {}
    for k, v in cfg.items():
        head, _, tail = k.rpartition(".")
        facts[head if tail == "name" and head and "." not in head else k] = v
    for k, v in overrides.items():
        facts.setdefault(k, v)
    return facts


def _load(run: Path) -> Run:
    from fedplat.config.diagnose import load_config_file

    try:
        summary = json.loads((run / SUMMARY_FILE).read_text())
    except ValueError as exc:
        raise UserError(f"{run / SUMMARY_FILE} is not valid JSON ({exc}); leave that run out "
                        "or rerun it") from None
    if not isinstance(summary, dict):
        raise UserError(f"{run / SUMMARY_FILE} does not hold a run summary (a JSON object); "
                        "leave that run out or rerun it")
    cfg_path = run / CONFIG_FILE
    saved = (OmegaConf.to_container(load_config_file(cfg_path, "fedplat run"))
             if cfg_path.is_file() else {})
    flat = _flatten(saved) if isinstance(saved, Mapping) else {}
    cfg = {k: v for k, v in flat.items() if k not in _IGNORED_KEYS}
    overrides = read_overrides(run)
    facts = _facts(cfg, {})
    return Run(run, summary, _facts(cfg, overrides or {}), set(facts), set(overrides or {}),
               overrides is not None)


def _distinct(facts: Sequence[Mapping[str, Any]], key: str) -> int:
    """Distinct values of `key` among the runs that have it.

    Runs made by older versions of fedplat may lack newer keys; that alone does not make a key
    vary.
    """
    return len({json.dumps(f[key], sort_keys=True, default=str) for f in facts if key in f})


def _implied(facts: Sequence[Mapping[str, Any]], key: str, by: Sequence[str]) -> bool:
    """Whether runs that agree on every key of `by` also agree on `key` (with `by` non-empty)."""
    if not by:
        return False
    same: dict[str, list[Mapping[str, Any]]] = {}
    for f in facts:
        same.setdefault(json.dumps([f.get(b) for b in by], default=str), []).append(f)
    return all(_distinct(fs, key) <= 1 for fs in same.values())


def label_keys(runs: Sequence[Run]) -> list[str]:
    """The keys that tell `runs` apart, choices first (see the module's docstring).

    Also gives each run that has Hydra's record every override-only key (None where it lacks
    one), so that `experiment=a` and no experiment differ.
    """
    facts = [r.facts for r in runs]
    chosen = set().union(*(r.overridden for r in runs))
    known = bool(runs) and all(r.recorded for r in runs)
    # Keys only the overrides record (`experiment`); None where a run with a record lacks one.
    extra = sorted({k for r in runs for k in r.overridden if k not in r.cfg_keys})
    for r in runs:
        if r.recorded:
            for k in extra:
                r.facts.setdefault(k, None)
    keys = {k for f in facts for k in f}
    groups = [g for g in GROUPS if g in keys]
    groups += sorted(k for k in keys if "." not in k and any(j.startswith(f"{k}.") for j in keys)
                     and k not in groups and k not in extra)
    choices = {*extra, *groups}
    kept: list[str] = []
    by: list[str] = []  # the kept keys that are choices: what may imply the others
    for k in [*extra, *groups, *sorted(keys - choices)]:
        if _distinct(facts, k) < 2 or (k in AUTO_FILLED and k not in chosen):
            continue
        if k not in chosen and _implied(facts, k, by) and (
                k not in choices or k == "model" or known):
            continue
        kept.append(k)
        if k in choices or k in chosen:
            by.append(k)
    return kept


def _show(value: Any) -> str:
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def _label(facts: Mapping[str, Any], keys: Sequence[str], fallback: str) -> str:
    """`k=v, ...` over `keys`, leaving out those a run lacks (`partition.alpha` of an iid run)."""
    parts = [f"{k}={_show(facts[k])}" for k in keys if k in facts]
    return ", ".join(parts) if parts else fallback


def _fmt(x: Any, pct: bool = True) -> str:
    if not isinstance(x, int | float):
        return "n/a"
    return f"{100 * x:.2f}" if pct else f"{x:.1f}"


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def label_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Set each run's label; return the runs grouped by their label without `seed`.

    A group of several runs (seeds, or reruns of one config) is one row of the seed table and
    one mean curve with a band; a run's own label names its directory too where two runs would
    otherwise read the same.
    """
    keys = label_keys(runs)
    for r in runs:
        r.label = _label(r.facts, keys, r.path.name)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.label] = counts.get(r.label, 0) + 1
    groups: dict[str, list[Run]] = {}
    for r in runs:
        group = _label(r.facts, [k for k in keys if k != "seed"],
                       str(r.summary.get("strategy", r.path.name)))
        groups.setdefault(group, []).append(r)
        if counts[r.label] > 1:
            r.label = f"{r.label} ({r.path.name})"
    return groups


def curve_label(group: str, runs: Sequence[Run]) -> str:
    """A plot label: the run's own, or the group's with what its band shows."""
    if len(runs) == 1:
        return runs[0].label
    seeds = {json.dumps(r.facts.get("seed")) for r in runs}
    what = f"{len(runs)} seeds" if len(seeds) == len(runs) else f"{len(runs)} runs"
    return f"{group} (mean ± std, {what})"


def build_report(paths: Sequence[Path]
                 ) -> tuple[str, dict[str, list[list[dict[str, Any]]]]]:
    """Markdown tables, and the curves to plot: label -> metrics rows of each of its runs."""
    runs = [_load(p) for p in paths]
    groups = label_runs(runs)
    lines = [
        "| run | strategy | dataset | rounds | final acc (%) | best acc (%) | best round "
        "| max test acc (%) | wall time (s) | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = r.summary
        final, best, top = s.get("final", {}), s.get("best", {}), s.get("best_test", {})
        lines.append(
            f"| {r.label} | {s.get('strategy')} | {s.get('dataset')} | "
            f"{s.get('rounds_completed')}/{s.get('num_rounds')} | {_fmt(final.get('accuracy'))} "
            f"| {_fmt(best.get('accuracy'))} | {best.get('round', 'n/a')} "
            f"| {_fmt(top.get('accuracy'))} | {_fmt(s.get('wall_time_s'), pct=False)} "
            f"| {s.get('status')} |")
    text = "\n".join(lines)
    if any(len(v) > 1 for v in groups.values()):
        glines = ["", "| config | seeds | final acc (%) | best acc (%) |", "|---|---|---|---|"]
        for group, members in groups.items():
            summaries = [r.summary for r in members]
            finals = [s["final"]["accuracy"] for s in summaries
                      if isinstance(s.get("final", {}).get("accuracy"), int | float)]
            bests = [s["best"]["accuracy"] for s in summaries
                     if isinstance(s.get("best", {}).get("accuracy"), int | float)]
            glines.append(f"| {group} | {len(summaries)} | {_mean_std(finals)} "
                          f"| {_mean_std(bests)} |")
        text += "\n" + "\n".join(glines)
    curves = {curve_label(g, members): [read_rows(r.path) for r in members]
              for g, members in groups.items()}
    return text + "\n", curves


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of `fedplat-report`."""
    from fedplat.config.diagnose import OneLineParser, check_output_dir

    parser = OneLineParser(prog="fedplat-report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run directories or sweep folders")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for comparison.md and comparison_accuracy.png")
    parser.add_argument("--metric", default="test_accuracy",
                        help="metrics.jsonl key to plot (default: test_accuracy)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"fedplat-report: error: no such directory: {', '.join(missing)}", file=sys.stderr)
        raise SystemExit(2)
    runs = find_runs(args.paths)
    if not runs:
        print("fedplat-report: error: no run directories (with summary.json) found under "
              f"{', '.join(map(str, args.paths))}", file=sys.stderr)
        raise SystemExit(2)
    from fedplat.recording.plots import plot_overlay

    try:
        check_output_dir(args.out, "--out")
        text, curves = build_report(runs)
    except UserError as exc:
        print(f"fedplat-report: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.md").write_text(text)
    plot_overlay(curves, args.out / "comparison_accuracy.png", key=args.metric)
    print(text, end="")
    print(f"\nwrote {args.out / 'comparison.md'} and {args.out / 'comparison_accuracy.png'}")


if __name__ == "__main__":
    main()

"""`fedplat-report RUN_DIR...`: compare runs in one markdown table and one accuracy plot.

Arguments may be run directories or folders holding them (a `multirun/...` sweep). Runs are
labelled by the config keys whose values differ between them, so a sweep over
`seed=0,1,2 partition.alpha=0.1,1.0` reads as `partition.alpha=0.1, seed=0`, ... A second table
groups runs that differ only in `seed` and reports mean +- std over seeds.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fedplat.errors import UserError
from fedplat.recording.recorder import CONFIG_FILE, SUMMARY_FILE, read_rows

_IGNORED_KEYS = {"output_dir", "cache_dir", "overwrite"}


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


def _load(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
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
    cfg = _flatten(saved) if isinstance(saved, Mapping) else {}
    return summary, {k: v for k, v in cfg.items() if k not in _IGNORED_KEYS}


def _distinct(configs: Sequence[Mapping[str, Any]], key: str) -> int:
    """Distinct values of `key` among the runs that have it.

    Runs made by older versions of fedplat may lack newer keys; that alone does not make a key
    vary.
    """
    return len({json.dumps(c[key], sort_keys=True) for c in configs if key in c})


def _varying(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys that differ between runs, leaving out those implied by a differing `<group>.name`.

    (`partition=iid` vs `partition=dirichlet` also changes `partition.alpha`; the label only
    needs `partition.name` unless alpha varies among the dirichlet runs themselves.)
    """
    keys = sorted({k for c in configs for k in c})
    varying = [k for k in keys if _distinct(configs, k) > 1]
    out = []
    for k in varying:
        group = k.rsplit(".", 1)[0] if "." in k else ""
        name_key = f"{group}.name"
        if group and k != name_key and name_key in varying:
            by_name: dict[str, list[Mapping[str, Any]]] = {}
            for c in configs:
                by_name.setdefault(str(c.get(name_key)), []).append(c)
            if all(_distinct(cs, k) == 1 for cs in by_name.values()):
                continue
        out.append(k)
    return out


def _label(cfg: Mapping[str, Any], keys: Sequence[str], fallback: str) -> str:
    parts = [f"{k}={cfg.get(k)}" for k in keys]
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


def build_report(runs: Sequence[Path]) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Markdown tables and the per-run rows (label -> metrics rows) for plotting."""
    loaded = [(run, *_load(run)) for run in runs]
    varying = _varying([cfg for _, _, cfg in loaded])
    lines = [
        "| run | strategy | dataset | rounds | final acc (%) | best acc (%) | best round "
        "| max test acc (%) | wall time (s) | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    curves: dict[str, list[dict[str, Any]]] = {}
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run, s, cfg in loaded:
        label = _label(cfg, varying, run.name)
        final, best, top = s.get("final", {}), s.get("best", {}), s.get("best_test", {})
        lines.append(
            f"| {label} | {s.get('strategy')} | {s.get('dataset')} | "
            f"{s.get('rounds_completed')}/{s.get('num_rounds')} | {_fmt(final.get('accuracy'))} "
            f"| {_fmt(best.get('accuracy'))} | {best.get('round', 'n/a')} "
            f"| {_fmt(top.get('accuracy'))} | {_fmt(s.get('wall_time_s'), pct=False)} "
            f"| {s.get('status')} |")
        curves[label] = read_rows(run)
        group = _label(cfg, [k for k in varying if k != "seed"], s.get("strategy", run.name))
        groups.setdefault(group, []).append(s)
    text = "\n".join(lines)
    if any(len(v) > 1 for v in groups.values()):
        glines = ["", "| config | seeds | final acc (%) | best acc (%) |", "|---|---|---|---|"]
        for group, summaries in groups.items():
            finals = [s["final"]["accuracy"] for s in summaries
                      if isinstance(s.get("final", {}).get("accuracy"), int | float)]
            bests = [s["best"]["accuracy"] for s in summaries
                     if isinstance(s.get("best", {}).get("accuracy"), int | float)]
            glines.append(f"| {group} | {len(summaries)} | {_mean_std(finals)} "
                          f"| {_mean_std(bests)} |")
        text += "\n" + "\n".join(glines)
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

"""FedHyper reproductions: heat maps of the robustness grid and rounds-to-target tables.

Reads fedplat run directories (config.yaml, metrics.jsonl) and writes figures and markdown
tables into --out. Runs are grouped by method (strategy name and variant, plus the hypergradient
steps where they differ from the released code's 1), initial local rate (client.lr) and initial
global rate (strategy.server_lr for FedAvg, strategy.eta_g0 for FedHyper/decay); seeds of the
same cell are averaged.

  grid   two heat maps like the paper's robustness figure: FedAvg's accuracy over (local rate x
         global rate), and each other method's gain over FedAvg in percentage points; plus a
         table with both and the spread of each method across the grid.
  speed  rounds until the test accuracy first reaches each target, per method, and the speed-up
         over FedAvg; plus accuracy and rate curves.

  python scripts/fedhyper_report.py grid multirun/fedhyper_grid_mnist1d --out docs/fedhyper
  python scripts/fedhyper_report.py speed multirun/fedhyper_speed_mnist1d --targets 0.5,0.6 \
      --out docs/fedhyper
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

NAMES = {"fedavg": "FedAvg", "fedadam": "FedAdam", "fedadagrad": "FedAdagrad",
         "fedexp": "FedExP", "fedhyper_adam": "FedHyper-Adam", "decay_g": "Decay-G",
         "decay_sl": "Decay-SL"}


@dataclass(frozen=True)
class Run:
    """One run directory, reduced to what the reports need."""

    path: Path
    method: str
    lr_local: float
    lr_global: float
    seed: int
    rows: list[dict[str, Any]]
    #: The accuracy the reports read: the global model on the central test set
    #: (`central_accuracy`, runs with split.central_test=true), else the clients' pooled
    #: `test_accuracy`.
    metric: str = "test_accuracy"

    def accuracy(self, last_k: int = 1) -> float:
        """Mean test accuracy over the last `last_k` evaluated rounds."""
        accs = [r[self.metric] for r in self.rows
                if isinstance(r.get(self.metric), int | float)]
        if not accs:
            return math.nan
        tail = accs[-last_k:]
        return sum(tail) / len(tail)

    def rounds_to(self, target: float) -> int | None:
        """First round whose test accuracy reaches `target` (None if never)."""
        for r in self.rows:
            acc = r.get(self.metric)
            if isinstance(acc, int | float) and acc >= target:
                return int(r["round"])
        return None


def method_label(cfg: DictConfig) -> str:
    """FedAvg, FedHyper-G+CL, FedHyper-G+CL (beta 735), FedAdam, ..."""
    s = cfg.strategy
    name = str(s.name)
    if name != "fedhyper":
        return NAMES.get(name, name)
    label = f"FedHyper-{s.variant}"
    betas = {float(s.get("hyper_lr", 1.0)), float(s.cl.get("hyper_lr", 1.0))}
    if betas != {1.0}:
        label += " (beta " + "/".join(f"{b:g}" for b in sorted(betas)) + ")"
    return label


def load_run(path: Path) -> Run | None:
    """A run directory, or None when it has no metrics."""
    cfg_path, metrics = path / "config.yaml", path / "metrics.jsonl"
    if not cfg_path.is_file() or not metrics.is_file():
        return None
    cfg = OmegaConf.load(cfg_path)
    assert isinstance(cfg, DictConfig)
    rows = []
    for line in metrics.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    if not rows:
        return None
    s = cfg.strategy
    lr_global = float(s.get("server_lr", s.get("eta_g0", 1.0)))
    metric = "central_accuracy" if any("central_accuracy" in r for r in rows) \
        else "test_accuracy"
    return Run(path, method_label(cfg), float(cfg.client.lr), lr_global, int(cfg.seed), rows,
               metric)


def find_runs(paths: Sequence[Path]) -> list[Run]:
    """Every run directory at or below the given paths."""
    dirs: set[Path] = set()
    for p in paths:
        if (p / "metrics.jsonl").is_file():
            dirs.add(p)
        else:
            dirs.update(m.parent for m in p.rglob("metrics.jsonl"))
    runs = [load_run(d) for d in sorted(dirs)]
    return [r for r in runs if r is not None]


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


# -- grid -------------------------------------------------------------------------------------


def grid_tables(runs: Sequence[Run], last_k: int, baseline: str = "FedAvg"
                ) -> tuple[list[float], list[float], dict[str, dict[tuple[float, float], float]]]:
    """(local rates, global rates, method -> {(lr_l, lr_g): accuracy averaged over seeds})."""
    acc: dict[str, dict[tuple[float, float], list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        acc[r.method][(r.lr_local, r.lr_global)].append(r.accuracy(last_k))
    if baseline not in acc:
        raise SystemExit(f"no {baseline} runs among the {len(runs)} runs given")
    lrs_l = sorted({k[0] for k in acc[baseline]})
    lrs_g = sorted({k[1] for k in acc[baseline]})
    table = {m: {k: _mean(v) for k, v in cells.items()} for m, cells in acc.items()}
    return lrs_l, lrs_g, table


def spread_stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, min, max, max - min and standard deviation of a grid (in %)."""
    vs = [100 * v for v in values if not math.isnan(v)]
    return {"mean": _mean(vs), "min": min(vs), "max": max(vs), "spread": max(vs) - min(vs),
            "std": statistics.pstdev(vs)}


def _heatmap(ax: Any, data: list[list[float]], rows: list[float], cols: list[float],
             title: str, cmap: str, center: float | None = None) -> None:
    import numpy as np

    arr = np.array(data, dtype=float)
    if center is not None:
        lim = max(1e-9, float(np.nanmax(np.abs(arr - center))))
        lo, hi = center - lim, center + lim
    else:
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    im = ax.imshow(arr, cmap=cmap, vmin=lo, vmax=hi)
    span = max(hi - lo, 1e-9)
    ax.set_xticks(range(len(cols)), [f"{c:g}" for c in cols])
    ax.set_yticks(range(len(rows)), [f"{r:g}" for r in rows])
    ax.set_xlabel("initial global rate")
    ax.set_ylabel("initial local rate")
    ax.set_title(title, fontsize=9)
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            if not np.isnan(arr[i, j]):
                t = (arr[i, j] - lo) / span  # white text on the colour maps' dark ends
                dark = t < 0.4 if center is None else abs(t - 0.5) > 0.3
                ax.text(j, i, f"{arr[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def report_grid(runs: Sequence[Run], out: Path, last_k: int, name: str,
                baseline: str = "FedAvg") -> str:
    """Heat maps (PNG) and a markdown table; returns the markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs_l, lrs_g, table = grid_tables(runs, last_k, baseline)
    others = sorted(m for m in table if m != baseline)
    out.mkdir(parents=True, exist_ok=True)
    what = "final accuracy" if last_k == 1 else f"mean accuracy of the last {last_k} evaluations"
    md = [f"### {name}: {what} (%)", ""]

    def cell(m: str, lr: float, g: float) -> float:
        return 100 * table[m].get((lr, g), math.nan)

    for m in others:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        _heatmap(ax1, [[cell(baseline, lr, g) for g in lrs_g] for lr in lrs_l], lrs_l, lrs_g,
                 f"{baseline} accuracy (%)", "viridis")
        _heatmap(ax2, [[cell(m, lr, g) - cell(baseline, lr, g) for g in lrs_g] for lr in lrs_l],
                 lrs_l, lrs_g, f"{m} gain over {baseline} (pp)", "RdBu", center=0.0)
        fig.suptitle(f"{name}: {what}", fontsize=10)
        fig.tight_layout()
        slug = re.sub(r"[^0-9a-z]+", "_", m.lower()).strip("_")
        fig.savefig(out / f"{name}_heatmap_{slug}.png", dpi=120)
        plt.close(fig)

    header = "| local \\ global | " + " | ".join(f"{g:g}" for g in lrs_g) + " |"
    sep = "|---" * (len(lrs_g) + 1) + "|"
    for m in [baseline, *others]:
        md += [f"**{m}**", "", header, sep]
        for lr in lrs_l:
            vals = []
            for g in lrs_g:
                v = cell(m, lr, g)
                if math.isnan(v):
                    vals.append("-")
                elif m != baseline:
                    d = v - cell(baseline, lr, g)
                    vals.append(f"{v:.1f} ({d:+.1f})")
                else:
                    vals.append(f"{v:.1f}")
            md.append(f"| {lr:g} | " + " | ".join(vals) + " |")
        md.append("")
    md += ["| method | mean | worst cell | best cell | spread (max - min) | std | "
           "cells >= baseline | cells >= baseline - 0.5 pp |", "|---|---|---|---|---|---|---|---|"]
    keys = [(lr, g) for lr in lrs_l for g in lrs_g]
    for m in [baseline, *others]:
        st = spread_stats([table[m].get(k, math.nan) for k in keys])
        if m == baseline:
            wins = wins_tol = "-"
        else:
            gains = [cell(m, *k) - cell(baseline, *k) for k in keys]
            gains = [g for g in gains if not math.isnan(g)]
            wins = f"{sum(g >= 0 for g in gains)}/{len(gains)}"
            wins_tol = f"{sum(g >= -0.5 for g in gains)}/{len(gains)}"
        md.append(f"| {m} | {st['mean']:.1f} | {st['min']:.1f} | {st['max']:.1f} | "
                  f"{st['spread']:.1f} | {st['std']:.1f} | {wins} | {wins_tol} |")
    text = "\n".join(md) + "\n"
    (out / f"{name}_grid.md").write_text(text)
    return text


# -- rounds to target ---------------------------------------------------------------------------


def report_speed(runs: Sequence[Run], out: Path, targets: Sequence[float], name: str,
                 baseline: str = "FedAvg") -> str:
    """Rounds-to-target table and accuracy/rate curves; returns the markdown.

    Runs are grouped by (method, local rate, global rate), seeds averaged; a group's speed-up
    is relative to the baseline group with the same local rate (and global rate, if run).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, float, float], list[Run]] = defaultdict(list)
    for r in runs:
        groups[(r.method, r.lr_local, r.lr_global)].append(r)
    many_l = len({k[1] for k in groups}) > 1
    many_g = len({k[2] for k in groups}) > 1

    def label(key: tuple[str, float, float]) -> str:
        m, lr, g = key
        extra = ([f"lr {lr:g}"] if many_l else []) + ([f"eta_g {g:g}"] if many_g else [])
        return m + (f" ({', '.join(extra)})" if extra else "")

    def reference(key: tuple[str, float, float]) -> list[Run]:
        _, lr, g = key
        same = groups.get((baseline, lr, g))
        if same:
            return same
        cands = sorted(k for k in groups if k[0] == baseline and k[1] == lr)
        return groups[cands[0]] if cands else []

    def reach(rs: list[Run], t: float) -> float | None:
        got = [r.rounds_to(t) for r in rs]
        if not got or any(g is None for g in got):
            return None
        return sum(g for g in got if g is not None) / len(got)

    order = sorted(groups, key=lambda k: (k[1], k[2], k[0] != baseline, k[0]))
    out.mkdir(parents=True, exist_ok=True)
    md = [f"### {name}: rounds to reach a target test accuracy", "",
          "| method | seeds | final acc (%) | best acc (%) | "
          + " | ".join(f"rounds to {100 * t:g}% (speed-up vs {baseline})" for t in targets)
          + " |", "|---" * (4 + len(targets)) + "|"]
    for key in order:
        rs = groups[key]
        final = _mean([r.accuracy(1) for r in rs])
        best = _mean([max(x[r.metric] for x in r.rows
                          if isinstance(x.get(r.metric), int | float)) for r in rs])
        ref_runs = reference(key)
        cells = []
        for t in targets:
            mine, ref = reach(rs, t), reach(ref_runs, t)
            if mine is None:
                cells.append("not reached")
            elif key[0] == baseline or not ref_runs:
                cells.append(f"{mine:g}")
            elif ref is None:
                cells.append(f"{mine:g} ({baseline} never)")
            else:
                cells.append(f"{mine:g} ({ref / mine:.2f}x)")
        md.append(f"| {label(key)} | {len(rs)} | {100 * final:.1f} | {100 * best:.1f} | "
                  + " | ".join(cells) + " |")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    # one colour per method in both panels, 20 distinct ones so that > 10 methods stay apart
    colours = plt.get_cmap("tab20").colors
    for i, key in enumerate(order):
        r, colour = groups[key][0], colours[i % len(colours)]
        pts = [(x["round"], 100 * x[r.metric]) for x in r.rows
               if isinstance(x.get(r.metric), int | float)]
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], label=label(key), color=colour)
        rate = [(x["round"], x["lr_global"]) for x in r.rows
                if isinstance(x.get("lr_global"), int | float)]
        if rate:
            ax2.plot([p[0] for p in rate], [p[1] for p in rate], label=label(key),
                     color=colour)
    for t in targets:
        ax1.axhline(100 * t, color="grey", lw=0.6, ls=":")
    ax1.set_xlabel("round")
    ax1.set_ylabel("test accuracy (%)")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("round")
    ax2.set_ylabel("global rate (lr_global)")
    ax2.set_yscale("log")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.suptitle(f"{name} (first seed of each group)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / f"{name}_speed.png", dpi=120)
    plt.close(fig)
    text = "\n".join(md) + "\n"
    (out / f"{name}_speed.md").write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["grid", "speed"])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories or folders of runs")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="fedhyper", help="prefix of the output files")
    ap.add_argument("--last-k", type=int, default=1,
                    help="grid: average the last k evaluated rounds (1 = final accuracy)")
    ap.add_argument("--targets", default="0.5", help="speed: comma-separated accuracies")
    ap.add_argument("--baseline", default="FedAvg")
    args = ap.parse_args(argv)
    runs = find_runs(args.runs)
    if not runs:
        raise SystemExit("no run directories (with config.yaml and metrics.jsonl) found")
    if args.mode == "grid":
        print(report_grid(runs, args.out, args.last_k, args.name, args.baseline))
    else:
        targets = [float(t) for t in args.targets.split(",") if t.strip()]
        print(report_speed(runs, args.out, targets, args.name, args.baseline))


if __name__ == "__main__":
    main()

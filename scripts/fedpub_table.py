"""Collect the FED-PUB reproduction runs (scripts/fedpub_reproduce.sh) into a markdown table.

Per run: local accuracy (mean over clients of the test accuracy measured right after local
training) at the round of best mean validation accuracy (summary.json `best_mean`, the
paper's "Acc @ Best Val"), at the final round (`final.accuracy_mean`), the first round at
which the mean reaches 80 %, the mean mask sparsity at the end, the wall time, and for the SBM
runs the community-recovery scores of the final similarity matrix.

    .venv/bin/python scripts/fedpub_table.py [results/fedpub]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.strip()]


def describe(run: Path) -> dict[str, Any] | None:
    """One table row for a finished run directory (None if it has no summary)."""
    path = run / "summary.json"
    if not path.is_file():
        return None
    s = json.loads(path.read_text())
    rows = _rows(run)
    first80 = next((r["round"] for r in rows if r.get("test_accuracy_mean", 0) >= 0.8), None)
    best = s.get("best_mean", {})
    rec = s.get("strategy_summary", {}).get("community_recovery", {}) or {}
    return {
        "run": run.name, "status": s["status"], "strategy": s["strategy"],
        "clients": s["num_clients"], "rounds": s["rounds_completed"], "seed": s["seed"],
        "acc_best_val": best.get("accuracy_mean"), "best_round": best.get("round"),
        "acc_final": s.get("final", {}).get("accuracy_mean"), "first_80": first80,
        "sparsity": rows[-1].get("mask_sparsity_mean") if rows else None,
        "wall_s": s.get("wall_time_s"),
        "recovery": {k: rec[k] for k in ("within", "across", "top1", "ari") if k in rec},
    }


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals."""
    return "n/a" if x is None else f"{100 * x:.2f}"


def main() -> None:
    """Print the table."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/fedpub")
    print("| run | clients | rounds | seed | Acc @ best val (round) | Acc @ final | "
          "first >= 80 % | mask sparsity | wall time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    recoveries = []
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        d = describe(run)
        if d is None:
            continue
        sparsity = "" if d["sparsity"] is None else f"{d['sparsity']:.3f}"
        print(f"| {d['run']} | {d['clients']} | {d['rounds']} | {d['seed']} | "
              f"{pct(d['acc_best_val'])} ({d['best_round']}) | {pct(d['acc_final'])} | "
              f"{d['first_80'] or '-'} | {sparsity} | {d['wall_s']:.0f} |")
        if d["recovery"]:
            recoveries.append((d["run"], d["recovery"]))
    for name, rec in recoveries:
        print(f"\n{name}: community recovery of the final similarity matrix: "
              + ", ".join(f"{k} {v:.3f}" for k, v in rec.items()))


if __name__ == "__main__":
    main()

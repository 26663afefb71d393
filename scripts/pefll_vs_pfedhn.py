"""PeFLL vs pFedHN on PeFLL's by-class split (Fashion-MNIST, 100 clients, 10% unseen).

Runs `fedplat experiment=pefll_fmnist100_<method>` for each method and seed (inline backend,
one thread), keeps the run directories and logs under --out, and prints a markdown table of the
training ('seen') and unseen clients' pooled test accuracy: at the evaluation with the best
pooled validation accuracy of the training clients (the papers' selection) and at the end.

    .venv/bin/python scripts/pefll_vs_pfedhn.py --out results/pefll_vs_pfedhn --seeds 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from runs import run_once


def run(method: str, seed: int, out: Path, extra: list[str], checkpoint_every: int = 0) -> Path:
    """One fedplat run; its directory (skipped when a completed summary is already there).

    With `checkpoint_every`, an unfinished run continues from its last checkpoint when the
    script is run again, and the final round is checkpointed, so `fedplat evaluate RUN_DIR
    strategy.mask_absent=none|multiply` scores it under the other evaluation protocols.
    """
    return run_once(out / f"{method}_seed{seed}",
                    [f"experiment=pefll_fmnist100_{method}", f"seed={seed}", *extra],
                    out / f"{method}_seed{seed}.log", checkpoint_every)


def pct(x: float | None) -> str:
    """A fraction as a percentage (n/a for None)."""
    return f"{100 * x:.2f}" if isinstance(x, int | float) else "n/a"


def main() -> None:
    """Run both methods, then print and save the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/pefll_vs_pfedhn"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=["pefll", "pfedhn"],
                    choices=["pefll", "pfedhn"])
    ap.add_argument("--checkpoint-every", type=int, default=10,
                    help="rounds between checkpoints (a rerun continues unfinished runs)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| method | seed | seen (best val) | unseen (same eval) | seen (final) | "
             "unseen (final) | selected round | rounds | wall time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method in args.methods:
        for seed in args.seeds:
            t0 = time.time()
            run_dir = run(method, seed, args.out, args.overrides, args.checkpoint_every)
            s = json.loads((run_dir / "summary.json").read_text())
            paper = s["strategy_summary"]["paper"]
            best, final = paper["best"], paper["final"]
            lines.append(
                f"| {method} | {seed} | {pct(best.get('seen_test_accuracy'))} | "
                f"{pct(best.get('unseen_test_accuracy'))} | "
                f"{pct(final.get('seen_test_accuracy'))} | "
                f"{pct(final.get('unseen_test_accuracy'))} | {best['round']} | "
                f"{s['rounds_completed']} | {s['wall_time_s'] / 60:.0f} min |")
            print(lines[-1], f"({time.time() - t0:.0f} s)", flush=True)
    table = "\n".join(lines)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

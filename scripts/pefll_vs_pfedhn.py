"""PeFLL vs pFedHN on PeFLL's by-class split (Fashion-MNIST, 100 clients, 10% unseen).

Runs `fedplat experiment=pefll_fmnist100_<method>` for each method and seed (inline backend,
one thread), keeps the run directories and logs under --out, and prints a markdown table of the
training ('seen') and unseen clients' pooled test accuracy: at the evaluation with the best
pooled validation accuracy of the training clients (the papers' selection) and at the end.

Both methods train with the same absent-class mask (`neg_inf`, the experiment files'). With
`--masks`, each run's final checkpoint is then scored again under the other evaluation
protocols (`fedplat evaluate RUN strategy.mask_absent=none|multiply`; nothing is retrained) and
a second table gives, per method and protocol, the final seen / unseen accuracy as mean ± std
over the seeds (OUT/protocols.md): `none` is the unmasked task, `multiply` the released PeFLL
code's 0/1 multiplication of the logits.

    .venv/bin/python scripts/pefll_vs_pfedhn.py --out results/pefll_vs_pfedhn --seeds 0 1 2 \
        --masks none multiply
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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


def evaluate(run_dir: Path, mask: str) -> dict[str, float]:
    """The run's final checkpoint scored with `strategy.mask_absent=mask` (run once, then read).

    `fedplat evaluate` writes RUN/evaluations/<time>_mask_absent=<mask>/metrics.json; the newest
    such directory is reused, so a rerun of the script does not evaluate again.
    """
    suffix = f"_mask_absent={mask}"
    found = sorted(d for d in (run_dir / "evaluations").glob(f"*{suffix}")
                   if (d / "metrics.json").is_file()) if (run_dir / "evaluations").is_dir() else []
    if not found:
        subprocess.run([sys.executable, "-m", "fedplat.cli", "evaluate", str(run_dir),
                        f"strategy.mask_absent={mask}"], check=True, stdout=subprocess.DEVNULL)
        found = sorted((run_dir / "evaluations").glob(f"*{suffix}"))
    metrics = json.loads((found[-1] / "metrics.json").read_text())["metrics"]
    return {k: float(metrics[k]) for k in ("seen_test_accuracy", "unseen_test_accuracy")}


def mean_std(values: list[float]) -> str:
    """`mean ± std` in percent over seeds (sample std; one seed: the value)."""
    pct_values = [100 * v for v in values]
    if len(pct_values) == 1:
        return f"{pct_values[0]:.2f}"
    return f"{statistics.mean(pct_values):.2f} ± {statistics.stdev(pct_values):.2f}"


def protocol_table(runs: dict[str, list[Path]], masks: list[str]) -> str:
    """Final seen / unseen accuracy per method and mask, mean ± std over the seeds' runs."""
    lines = ["| method | seeds | protocol (`strategy.mask_absent`) | seen | unseen |",
             "|---|---|---|---|---|"]
    for method, dirs in runs.items():
        trained = [json.loads((d / "summary.json").read_text())["strategy_summary"]["paper"]
                   ["final"] for d in dirs]
        scored = {"neg_inf (as trained)": trained}
        for mask in masks:
            scored[mask] = [evaluate(d, mask) for d in dirs]
        for label, results in scored.items():
            lines.append(
                f"| {method} | {len(dirs)} | {label} | "
                f"{mean_std([r['seen_test_accuracy'] for r in results])} | "
                f"{mean_std([r['unseen_test_accuracy'] for r in results])} |")
    return "\n".join(lines)


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
    ap.add_argument("--masks", nargs="*", default=[], choices=["none", "multiply"],
                    help="also score each final checkpoint under these absent-class masks")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| method | seed | seen (best val) | unseen (same eval) | seen (final) | "
             "unseen (final) | selected round | rounds | wall time |",
             "|---|---|---|---|---|---|---|---|---|"]
    runs: dict[str, list[Path]] = {}
    for method in args.methods:
        for seed in args.seeds:
            t0 = time.time()
            run_dir = run(method, seed, args.out, args.overrides, args.checkpoint_every)
            runs.setdefault(method, []).append(run_dir)
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
    if args.masks:
        protocols = protocol_table(runs, args.masks)
        (args.out / "protocols.md").write_text(protocols + "\n")
        print()
        print(protocols)


if __name__ == "__main__":
    main()

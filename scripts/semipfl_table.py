"""SemiPFL on WISDM: F1 over label ratios and user counts, against FedAvg, Local and pFedHN.

Every run is `experiment=semipfl_wisdm` with `strategy=<method> num_clients=<N>
split.label_ratio=<r> seed=<s>` plus the method's rounds; runs go one after another in this
process (inline backend, one torch thread), each into its own directory under --out with its
metrics.jsonl and summary.json; finished runs are skipped on a rerun. Prints and saves a markdown
table of the final-round weighted F1 (mean over users of the F1 of each user's whole test split)
and the best round, with seeds and wall time.

    .venv/bin/python scripts/semipfl_table.py --out results/semipfl --seeds 0 \
        --users 9 27 --ratios 0 0.05 0.1 0.2 0.5
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

#: Method label -> (strategy, extra overrides). Rounds: `rounds_per_user` x N for the
#: one-user-per-round methods, `--rounds` for the all-clients ones.
METHODS: dict[str, tuple[str, list[str]]] = {
    "semipfl": ("semipfl", []),
    "semipfl_nofilter": ("semipfl", ["strategy.tau=1.0"]),
    "semipfl_finetune": ("semipfl", ["strategy.finetune_steps=100",
                                     "strategy.finetune_lr=0.003"]),
    "semipfl_paper_tau": ("semipfl", ["strategy.tau_mode=absolute", "strategy.tau=0.05"]),
    "fedavg": ("fedavg", []),
    "local": ("local", []),
    "pfedhn": ("pfedhn", ["strategy.optimizer=adam", "strategy.lr=0.001",
                          "strategy.inner_steps=20", "strategy.batch_size=32"]),
}
ONE_PER_ROUND = ("semipfl", "pfedhn")


def overrides(method: str, users: int, ratio: float, seed: int, args: argparse.Namespace
              ) -> list[str]:
    """The command-line overrides of one run."""
    strategy, extra = METHODS[method]
    rounds = args.rounds_per_user * users if strategy in ONE_PER_ROUND else args.rounds
    every = max(1, rounds // args.evals)
    return ["experiment=semipfl_wisdm", f"strategy={strategy}", f"num_clients={users}",
            f"split.label_ratio={ratio}", f"seed={seed}", f"num_rounds={rounds}",
            f"eval_every={every}", *extra, *args.extra]


def run_one(name: str, ov: list[str], out: Path) -> dict[str, Any]:
    """Run (or reuse) one configuration; return its summary."""
    from fedplat.config.compose import compose, prepare
    from simulations.centralized import run

    run_dir = out / name
    done = run_dir / "summary.json"
    if done.is_file():
        s = json.loads(done.read_text())
        if s.get("status") == "completed":
            return s
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "overrides.txt").write_text(" ".join(ov) + "\n")
    return run(prepare(compose(ov)), run_dir)


def common_users_f1(run_dir: Path, first: int) -> float | None:
    """Final-round F1 mean over clients 0..first-1 (the same users whatever num_clients is).

    Runs with more users evaluate more (and other) users; comparing on the users every run
    has is what "F1 rises with more users" needs.
    """
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if isinstance(r.get("test_f1_mean"), int | float)]
    if not rows:
        return None
    per = rows[-1].get("per_client", {})
    vals = [per[str(c)]["test_f1"] for c in range(first)
            if str(c) in per and isinstance(per[str(c)].get("test_f1"), int | float)]
    return sum(vals) / len(vals) if vals else None


def mixture_vs_uniform(run_dir: Path) -> tuple[float | None, float | None]:
    """SemiPFL only: the selected user's F1, learned vs uniform mixture, mean over rounds.

    `user_f1` uses the mixture fitted on the user's labels, `uniform_f1` the uniform mixture
    of the same base models: their gap is what the user's labels add.
    """
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None, None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for key in ("user_f1", "uniform_f1"):
        vals = [r[key] for r in rows if isinstance(r.get(key), int | float)]
        out.append(sum(vals) / len(vals) if vals else None)
    return out[0], out[1]


def cell(values: list[float]) -> str:
    """Mean (± sd over seeds) of one table cell."""
    if not values:
        return "n/a"
    sd = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{sd}"


def main() -> None:
    """Run the grid, then print and save the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/semipfl"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--users", type=int, nargs="+", default=[9, 27])
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.5])
    ap.add_argument("--methods", nargs="+", default=["semipfl", "fedavg", "local"])
    ap.add_argument("--rounds", type=int, default=30, help="FedAvg/Local rounds")
    ap.add_argument("--rounds-per-user", type=int, default=3,
                    help="SemiPFL/pFedHN rounds per user (one user per round)")
    ap.add_argument("--evals", type=int, default=3, help="evaluations per run")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every run")
    ap.add_argument("--no-run", action="store_true",
                    help="only tabulate the runs already completed under --out")
    ap.add_argument("--common", type=int, default=9,
                    help="F1 is also reported over the first COMMON users (same in every run)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    results = args.out / "results.jsonl"
    rows: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for users in args.users:
        for ratio in args.ratios:
            for method in args.methods:
                if ratio == 0 and METHODS[method][0] != "semipfl":
                    continue  # label-only methods have nothing to learn from
                for seed in args.seeds:
                    name = f"{method}_n{users}_r{ratio:g}_s{seed}"
                    ov = overrides(method, users, ratio, seed, args)
                    done = args.out / name / "summary.json"
                    if args.no_run and not (done.is_file() and json.loads(
                            done.read_text()).get("status") == "completed"):
                        continue
                    t0 = time.time()
                    s = run_one(name, ov, args.out)
                    f1 = s.get("f1", {})
                    rec = {"name": name, "method": method, "users": users, "ratio": ratio,
                           "seed": seed, "overrides": ov, "status": s.get("status"),
                           "f1_final": f1.get("final", {}).get("f1_mean"),
                           "f1_best": f1.get("best", {}).get("f1_mean"),
                           "f1_best_round": f1.get("best", {}).get("round"),
                           "f1_best_per_user": f1.get("best_per_client", {}).get("f1_mean"),
                           "f1_first_users": common_users_f1(args.out / name, args.common),
                           "train_user_f1": mixture_vs_uniform(args.out / name)[0],
                           "train_uniform_f1": mixture_vs_uniform(args.out / name)[1],
                           "rounds": s.get("rounds_completed"),
                           "wall_time_s": s.get("wall_time_s"),
                           "accept_rate": (s.get("strategy_summary") or {}).get(
                               "mean_accept_rate")}
                    rows.setdefault((method, users, ratio), []).append(rec)
                    if not args.no_run:
                        with results.open("a") as fh:
                            fh.write(json.dumps(rec) + "\n")
                    print(f"{name}: final F1 {rec['f1_final']} best {rec['f1_best']} "
                          f"first {args.common} users {rec['f1_first_users']} "
                          f"({time.time() - t0:.0f} s)", flush=True)
    lines = ["| users | label ratio | " + " | ".join(args.methods) + " |",
             "|---|---|" + "---|" * len(args.methods)]
    for users in args.users:
        for ratio in args.ratios:
            cells = []
            for m in args.methods:
                recs = rows.get((m, users, ratio), [])
                finals = [r["f1_final"] for r in recs if r["f1_final"] is not None]
                bests = [r["f1_best"] for r in recs if r["f1_best"] is not None]
                wall = [r["wall_time_s"] for r in recs if r["wall_time_s"]]
                cells.append(f"{cell(finals)} (best {cell(bests)}; "
                             f"{statistics.mean(wall):.0f} s)" if recs else "n/a")
            lines.append(f"| {users} | {ratio:g} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    note = (f"\nfinal-round weighted F1, mean over users (best round in brackets; wall time "
            f"per run); seeds {args.seeds}; rounds: {args.rounds} (FedAvg/Local), "
            f"{args.rounds_per_user} x users (SemiPFL/pFedHN)\n")
    # The same users in every row: F1 over clients 0..COMMON-1 (for "more users" comparisons).
    common = ["| users | label ratio | " + " | ".join(args.methods) + " |",
              "|---|---|" + "---|" * len(args.methods)]
    mix = ["| users | label ratio | method | learned mixture | uniform mixture |",
           "|---|---|---|---|---|"]
    for users in args.users:
        for ratio in args.ratios:
            vals = [cell([r["f1_first_users"] for r in rows.get((m, users, ratio), [])
                          if r["f1_first_users"] is not None]) for m in args.methods]
            common.append(f"| {users} | {ratio:g} | " + " | ".join(vals) + " |")
            for m in args.methods:
                recs = [r for r in rows.get((m, users, ratio), [])
                        if r["train_user_f1"] is not None]
                if recs:
                    mix.append(f"| {users} | {ratio:g} | {m} | "
                               f"{cell([r['train_user_f1'] for r in recs])} | "
                               f"{cell([r['train_uniform_f1'] for r in recs])} |")
    extra = (f"\nfinal-round weighted F1 over the first {args.common} users only:\n\n"
             + "\n".join(common)
             + "\n\nSemiPFL, selected user's F1 right after its combine step, mean over "
               "training rounds:\n\n" + "\n".join(mix) + "\n")
    (args.out / "table.md").write_text(table + note + extra)
    print(table + note + extra)


if __name__ == "__main__":
    main()

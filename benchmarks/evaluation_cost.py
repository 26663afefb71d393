"""Seconds per round of FedAvg with the default evaluation (every client, every round).

The workload of `benchmarks/overhead.py` (MNIST-1D, MLP 40-100-100-10, IID, 1 local epoch,
batch 32, SGD lr 0.05) but evaluating every client every round, as the defaults do; prints one
JSON line: the seconds of every round, the median over rounds 2.. and its evaluation and
training exchanges, and the last round's accuracy and loss. To compare two checkouts, run it
with each checkout first on PYTHONPATH (docs/performance.md, "Evaluation and summary").

    python benchmarks/evaluation_cost.py --clients 1000 --arm ray_grouped
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

ARMS = {
    "inline": ["simulation.backend=inline"],
    "inline_grouped": ["simulation.backend=inline", "simulation.batched=true"],  # + half per node
    "ray_grouped": ["simulation.backend=ray", "simulation.clients_per_node=auto",
                    "simulation.batched=true"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--arm", choices=sorted(ARMS), default="ray_grouped")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    from fedplat.config.compose import compose, prepare
    from simulations.centralized import run

    n = args.clients
    extra = list(ARMS[args.arm])
    if args.arm == "inline_grouped":
        extra.append(f"simulation.clients_per_node={max(1, n // 2)}")
    cfg = prepare(compose([
        "dataset=mnist1d", "model=mlp", "model.hidden=[100,100]", "partition=iid",
        f"num_clients={n}", f"num_rounds={args.rounds}", "client.local_epochs=1",
        "client.batch_size=32", "client.lr=0.05", "client.momentum=0.0", "seed=0", *extra]))
    logging.getLogger("flwr").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        run(cfg, Path(tmp))
        rows = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]

    def median(key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in rows[1:])

    print(json.dumps({
        "label": args.label, "clients": n, "arm": args.arm,
        "round_s": [round(r["round_time_s"], 3) for r in rows],
        "median_round_s": median("round_time_s"), "evaluate_s": median("exchange_s_evaluate"),
        "train_s": median("exchange_s_train"), "test_accuracy": rows[-1]["test_accuracy"],
        "test_loss": rows[-1]["test_loss"]}), flush=True)


if __name__ == "__main__":
    main()

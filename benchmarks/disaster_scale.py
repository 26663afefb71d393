"""Scale of the P2P (disaster) simulator: rounds per second and where a round's time goes.

    python benchmarks/disaster_scale.py                       # 50, 200, 1000 nodes
    python benchmarks/disaster_scale.py --nodes 50 200 --backends local ray --rounds 5

For each node count and executor it runs a short DecAvg run (Barabasi-Albert m=2, IID data,
a small MLP, 1 local epoch) and reports, over the rounds after the first (warm-up: Ray actor
start, imports): seconds per round, rounds per second, and the split of the workers' time
into local training, exchange (reading neighbours' messages + mixing), evaluation on the
global test set and consensus distance. As the reference measured in the same run it times a
plain PyTorch loop that trains the same number of models one after another on the same data
(`fedplat.training.loops.train`, no exchange, no evaluation): `ratio_vs_loop` = P2P round time /
loop time. Everything needed to compare machines is printed as JSON (and written with --out):
the machine's cores and load average before and after, torch and Ray versions, the config.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedplat.config.compose import compose, prepare
from fedplat.core import seeding
from fedplat.models import build_model
from fedplat.recording.recorder import read_rows
from fedplat.training.loops import make_optimizer, train
from simulations.disaster.placement import place_data
from simulations.disaster.runner import run


def _overrides(args: argparse.Namespace, n: int) -> list[str]:
    return [
        "scenario=disaster", f"dataset={args.dataset}", "model=mlp",
        f"model.hidden=[{args.hidden}]", f"num_clients={n}", f"num_rounds={args.rounds}",
        f"placement.per_node={args.per_node}", f"placement.test_size={args.test_size}",
        "client.local_epochs=1", "client.batch_size=10", "client.lr=0.05",
        "topology.m=2", "p2p.plots=false", f"p2p.num_workers={args.workers}",
        "strategy.weights=uniform",
    ]


def measure(args: argparse.Namespace, n: int, backend: str, batched: bool) -> dict[str, Any]:
    """One short run; timings of the rounds after the first."""
    cfg = prepare(compose([*_overrides(args, n), f"p2p.backend={backend}",
                           f"p2p.batched={str(batched).lower()}"]))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        summary = run(cfg, Path(d))
        wall = time.perf_counter() - t0
        rows = read_rows(Path(d))[1:]
    rt = [r["round_time_s"] for r in rows]
    per = statistics.median(rt)
    split = {k: statistics.mean(r[f"time_{k}_s"] for r in rows)
             for k in ("train", "exchange", "eval", "consensus")}
    busy = sum(split[k] for k in ("train", "exchange", "eval"))
    return {
        "nodes": n, "backend": backend, "workers": summary["workers"], "batched": batched,
        "num_params": summary["num_params"], "rounds_timed": len(rows),
        "s_per_round_median": per, "rounds_per_s": 1.0 / per if per > 0 else None,
        "worker_s_per_round": split,
        "share_of_worker_time": {k: split[k] / busy for k in ("train", "exchange", "eval")}
        if busy > 0 else None,
        "driver_overhead_s_per_round": per - (busy / max(summary["workers"], 1)
                                             if backend == "ray" else busy) - split["consensus"],
        "messages_per_round": statistics.mean(r["messages"] for r in rows),
        "mbytes_per_round": statistics.mean(r["bytes"] for r in rows) / 1e6,
        "transport_mbytes_per_round": statistics.mean(r["transport_bytes"] for r in rows) / 1e6,
        "final_acc_mean": summary["final"]["accuracy"],
        "run_wall_s": wall, "startup_s": summary.get("startup_s"),
    }


def loop_reference(args: argparse.Namespace, n: int) -> float:
    """Seconds for a plain loop that trains n models one after another (1 epoch each)."""
    cfg = prepare(compose(_overrides(args, n)))
    placement = place_data(cfg, frozenset())
    from fedplat.data.datasets import dataset_info

    model = build_model(cfg.model, dataset_info(cfg.dataset))
    torch.set_num_threads(1)
    xs = {v: (torch.from_numpy(placement.x_train[i]), torch.from_numpy(placement.y_train[i]))
          for v, i in placement.train_idx.items()}
    sample = sorted(xs)[:min(n, args.loop_nodes)]
    make_optimizer(model.parameters(), cfg.client)  # first use imports torch._dynamo
    t0 = time.perf_counter()
    for v in sample:
        opt = make_optimizer(model.parameters(), cfg.client)
        train(model, *xs[v], opt, epochs=1, batch_size=10,
              generator=seeding.torch_generator(0, seeding.CLIENT, 1, v))
    return (time.perf_counter() - t0) * n / len(sample)


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[50, 200, 1000])
    ap.add_argument("--backends", nargs="+", default=["local", "ray"],
                    choices=["local", "ray"])
    ap.add_argument("--sequential", action="store_true",
                    help="also measure the unbatched (one node at a time) training path")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--per-node", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--test-size", type=int, default=500)
    ap.add_argument("--loop-nodes", type=int, default=100)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    info: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "load_avg_before": os.getloadavg(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "ray": ray.__version__},
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "note": "model: MLP with one hidden layer; 1 local epoch, batch 10; BA m=2; IID",
        "results": [],
    }
    for n in args.nodes:
        ref = loop_reference(args, n)
        for backend in args.backends:
            for batched in ([True, False] if args.sequential else [True]):
                res = measure(args, n, backend, batched)
                res["loop_train_s"] = ref
                res["ratio_vs_loop"] = res["s_per_round_median"] / ref
                info["results"].append(res)
                print(json.dumps(res), flush=True)
    info["machine"]["load_avg_after"] = os.getloadavg()
    text = json.dumps(info, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

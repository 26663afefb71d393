"""What does a simulated FL round cost beyond the training itself?

Runs the same FedAvg work three ways in one invocation and prints/writes seconds per round:

* loop    a hand-written single-process PyTorch loop (the reference: training and averaging only)
* fedplat fedplat's generic ServerApp/ClientApp on Flower's Simulation Engine (Ray)
* flower  stock Flower usage: a Message-API ClientApp and the built-in FedAvg strategy with
          `strategy.start`, on the same Simulation Engine (as in Flower's PyTorch quickstart)

Same work = same clients, data, model (MLP 40-100-100-10 on MNIST-1D), 1 local epoch, batch 32,
SGD, every client every round. The loop and fedplat use the same seeds, so their final accuracies
must agree: the script checks it. Ray start-up is reported apart from the per-round time; the
round time of fedplat excludes its last round (which also evaluates).

    python benchmarks/overhead.py                       # 10 and 100 clients
    python benchmarks/overhead.py --clients 10 --rounds 4 --skip flower
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import torch

from fedplat import ops, seeding
from fedplat.config import compose, prepare
from fedplat.data import load_federated
from fedplat.models import build_model
from fedplat.training import evaluate, make_optimizer, train


def make_config(num_clients: int, rounds: int, seed: int) -> Any:
    """The benchmark workload as a fedplat config."""
    return prepare(compose([
        "dataset=mnist1d", "model=mlp", "model.hidden=[100,100]", "partition=iid",
        f"num_clients={num_clients}", f"num_rounds={rounds}", f"eval_every={rounds}",
        "client.local_epochs=1", "client.batch_size=32", "client.lr=0.05",
        "client.momentum=0.0", f"seed={seed}", "simulation.num_cpus=1",
    ]))


def run_loop(cfg: Any) -> dict[str, Any]:
    """The reference: plain PyTorch, one process, clients trained one after another."""
    fed = load_federated(cfg)
    clients = [fed.client(c) for c in range(fed.num_clients)]
    seeding.seed_torch(int(cfg.seed), seeding.INIT)
    model = build_model(cfg.model, fed.info)
    global_state = ops.clone(model.state_dict())
    times = []
    for rnd in range(1, int(cfg.num_rounds) + 1):
        t0 = time.perf_counter()
        states, weights = {}, {}
        for data in clients:
            model.load_state_dict(global_state)
            opt = make_optimizer(model.parameters(), cfg.client)
            gen = seeding.torch_generator(int(cfg.seed), seeding.CLIENT, rnd, data.cid)
            res = train(model, data.x_train, data.y_train, opt, epochs=1,
                        batch_size=int(cfg.client.batch_size), generator=gen)
            states[data.cid] = ops.clone(model.state_dict())
            weights[data.cid] = res.num_examples
        global_state = ops.weighted_average(states, weights)
        times.append(time.perf_counter() - t0)
    model.load_state_dict(global_state)
    correct = sum(evaluate(model, d.x_test, d.y_test).correct for d in clients)
    total = sum(len(d.y_test) for d in clients)
    return {"round_s": times, "startup_s": 0.0, "final_accuracy": correct / total}


def run_fedplat(cfg: Any) -> dict[str, Any]:
    """fedplat's simulation on Ray (what `fedplat ...` runs)."""
    from simulations.centralized import run

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = run(cfg, Path(out))
        wall = time.perf_counter() - t0
        rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return {"round_s": [r["round_time_s"] for r in rows[:-1]], "startup_s": summary["startup_s"],
            "wall_s": wall, "final_accuracy": summary["final"]["accuracy"]}


def run_flower(cfg: Any) -> dict[str, Any]:
    """Stock Flower: Message-API ClientApp + built-in FedAvg + strategy.start()."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    from fedplat.runtime.simulation import backend_config

    client_app = ClientApp()

    @client_app.train()
    def _train(msg: Message, context: Context) -> Message:
        fed = load_federated(cfg)  # cached per worker, as a quickstart's global cache
        data = fed.client(int(context.node_config["partition-id"]))
        torch.set_num_threads(1)
        model = build_model(cfg.model, fed.info)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = make_optimizer(model.parameters(), cfg.client)
        rnd = int(msg.content["config"]["server-round"])
        gen = seeding.torch_generator(int(cfg.seed), seeding.CLIENT, rnd, data.cid)
        res = train(model, data.x_train, data.y_train, opt, epochs=1,
                    batch_size=int(cfg.client.batch_size), generator=gen)
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                              "metrics": MetricRecord({"num-examples": res.num_examples,
                                                       "train_loss": res.loss})})
        return Message(content, reply_to=msg)

    marks: list[float] = []
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        seeding.seed_torch(int(cfg.seed), seeding.INIT)
        model = build_model(cfg.model, load_federated(cfg).info)
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0,
                          min_available_nodes=int(cfg.num_clients))

        def mark(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            marks.append(time.perf_counter())
            return MetricRecord({})

        strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                       num_rounds=int(cfg.num_rounds), train_config=ConfigRecord({}),
                       evaluate_fn=mark)

    load_federated(cfg)
    t0 = time.perf_counter()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    _run_simulation(num_supernodes=int(cfg.num_clients), client_app=client_app,
                    server_app=server_app, backend_name="ray",
                    backend_config=backend_config(cfg),
                    exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE)
    # Flower's strategy starts (and calls evaluate_fn for round 0) before the Ray actors exist,
    # so round 1 also pays the start-up: count it as start-up, not as a round.
    rounds = [b - a for a, b in itertools.pairwise(marks[1:])]
    startup = marks[1] - t0 - statistics.median(rounds)
    return {"round_s": rounds, "startup_s": startup, "wall_s": time.perf_counter() - t0}


RUNNERS = {"loop": run_loop, "fedplat": run_fedplat, "flower": run_flower}


def main() -> None:
    """Run the benchmark grid and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(RUNNERS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead.json"))
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be >= 3 (fedplat's last round also evaluates)")
    import flwr.app  # noqa: F401  (flwr sets its logger's level on import; quiet it after)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform()},
        "workload": "FedAvg, MNIST-1D, MLP 40-100-100-10, 1 local epoch, batch 32, SGD lr 0.05, "
                    "all clients every round",
        "rounds": args.rounds, "results": {},
    }
    for n in args.clients:
        cfg = make_config(n, args.rounds, args.seed)
        res: dict[str, Any] = {}
        for name, fn in RUNNERS.items():
            if name in args.skip:
                continue
            out = fn(cfg)
            out["median_round_s"] = statistics.median(out["round_s"])
            res[name] = out
            print(f"[{n:>4} clients] {name:<8} {out['median_round_s']:.3f} s/round "
                  f"(start-up {out['startup_s'] or 0:.1f} s)", flush=True)
        loop = res.get("loop", {}).get("median_round_s")
        for name in ("fedplat", "flower"):
            if loop and name in res:
                res[f"ratio_{name}_over_loop"] = res[name]["median_round_s"] / loop
        if "fedplat" in res and "flower" in res:
            res["ratio_flower_over_fedplat"] = (res["flower"]["median_round_s"]
                                                / res["fedplat"]["median_round_s"])
        if "fedplat" in res and "loop" in res:
            res["same_final_accuracy"] = abs(res["fedplat"]["final_accuracy"]
                                             - res["loop"]["final_accuracy"]) < 1e-9
        report["results"][str(n)] = res
        ratios = {k: round(v, 2) for k, v in res.items() if k.startswith("ratio")}
        print(f"[{n:>4} clients] ratios {ratios}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

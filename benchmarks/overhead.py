"""What does a simulated FL round cost beyond the training itself?

Runs the same FedAvg work several ways in one invocation and prints/writes seconds per round:

* (a) loop     a hand-written single-process PyTorch loop (the reference: training and
               averaging only)
* (b) flower   stock Flower usage: a Message-API ClientApp and the built-in FedAvg strategy with
               `strategy.start`, one client per node, on the same Simulation Engine (as in
               Flower's PyTorch quickstart)
* (c) fedplat  fedplat's generic ServerApp/ClientApp on the Simulation Engine (Ray), one
               client per node (`simulation.clients_per_node=1`)
* (d) grouped  the same with client groups (`clients_per_node=auto`: one node per Ray worker)
* (e) batched  grouped, and each node trains its clients in one vmapped pass
               (`simulation.batched=true`)

For fedplat runs the report also splits a round (medians over rounds): time packing messages on
the server, the exchange (send to last reply), the slowest node's handler time (grouped runs:
data, training, replies) and the rest (strategy configure/aggregate, metrics, logging).

Same work = same clients, data, model (MLP 40-100-100-10 on MNIST-1D), 1 local epoch, batch 32,
SGD, every client every round. The loop and fedplat use the same seeds, so their final accuracies
must agree: the script checks it. Ray start-up is reported apart from the per-round time; the
round time of fedplat excludes its last round (which also evaluates).

    python benchmarks/overhead.py                       # 10, 100 and 1000 clients
    python benchmarks/overhead.py --clients 10 --rounds 4 --skip flower fedplat
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

from fedplat.config.compose import compose, prepare
from fedplat.core import ops, seeding
from fedplat.data import load_federated
from fedplat.models import build_model
from fedplat.training.loops import evaluate, make_optimizer, train


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
    for server_round in range(1, int(cfg.num_rounds) + 1):
        t0 = time.perf_counter()
        states, weights = {}, {}
        for data in clients:
            model.load_state_dict(global_state)
            opt = make_optimizer(model.parameters(), cfg.client)
            gen = seeding.torch_generator(int(cfg.seed), seeding.CLIENT, server_round, data.cid)
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


def _fedplat(cfg: Any, **simulation: Any) -> dict[str, Any]:
    """fedplat's simulation on Ray (what `fedplat ...` runs), with `simulation.*` settings."""
    from simulations.centralized import run

    cfg = cfg.copy()
    for key, value in simulation.items():
        cfg.simulation[key] = value
    cfg = prepare(cfg)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = run(cfg, Path(out))
        wall = time.perf_counter() - t0
        rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rows = rows[:-1]  # the last round also evaluates

    def median(key: str) -> float:
        values = [r[key] for r in rows if key in r]
        return statistics.median(values) if values else 0.0

    profile = {"round_s": median("round_time_s"), "pack_s": median("pack_s_train"),
               "exchange_s": median("exchange_s_train"),
               "node_compute_s": median("node_compute_s_train")}
    profile["server_rest_s"] = profile["round_s"] - profile["exchange_s"] - profile["pack_s"]
    if profile["node_compute_s"]:
        profile["engine_s"] = profile["exchange_s"] - profile["node_compute_s"]
    return {"round_s": [r["round_time_s"] for r in rows], "startup_s": summary["startup_s"],
            "wall_s": wall, "final_accuracy": summary["final"]["accuracy"],
            "clients_per_node": int(cfg.simulation.clients_per_node),
            "bytes_down_per_round": median("bytes_down_train"), "profile": profile}


def run_fedplat(cfg: Any) -> dict[str, Any]:
    """(c) one client per node."""
    return _fedplat(cfg, clients_per_node=1)


def run_grouped(cfg: Any) -> dict[str, Any]:
    """(d) client groups, one node per Ray worker."""
    return _fedplat(cfg, clients_per_node="auto")


def run_batched(cfg: Any) -> dict[str, Any]:
    """(e) client groups trained in one vmapped pass per node."""
    return _fedplat(cfg, clients_per_node="auto", batched=True)


def run_flower(cfg: Any) -> dict[str, Any]:
    """Stock Flower: Message-API ClientApp + built-in FedAvg + strategy.start()."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    from fedplat.config.settings import Settings
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
        server_round = int(msg.content["config"]["server-round"])
        gen = seeding.torch_generator(int(cfg.seed), seeding.CLIENT, server_round, data.cid)
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
                    backend_config=backend_config(Settings.from_config(cfg).simulation),
                    exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE)
    # Flower's strategy starts (and calls evaluate_fn for round 0) before the Ray actors exist,
    # so round 1 also pays the start-up: count it as start-up, not as a round.
    rounds = [b - a for a, b in itertools.pairwise(marks[1:])]
    startup = marks[1] - t0 - statistics.median(rounds)
    return {"round_s": rounds, "startup_s": startup, "wall_s": time.perf_counter() - t0}


def hypernet_config(num_clients: int, rounds: int, seed: int) -> Any:
    """PeFLL on the same data and target MLP: 10% of clients per round, three exchanges each."""
    return prepare(compose([
        "strategy=pefll", "dataset=mnist1d", "model=mlp", "model.hidden=[100,100]",
        "partition=iid", f"num_clients={num_clients}", f"num_rounds={rounds}",
        f"eval_every={rounds}", f"strategy.clients_per_round={max(1, num_clients // 10)}",
        "strategy.inner_steps=20", f"seed={seed}", "simulation.num_cpus=1",
    ]))


def run_hypernet(num_clients: int, rounds: int, seed: int) -> dict[str, Any]:
    """PeFLL seconds per round: in-process reference (inline backend), Ray ungrouped, grouped.

    There is no stock-Flower PeFLL and no hand-written PeFLL loop here: the inline backend
    (the same ServerApp/ClientApp called directly in one process, no engine, no Ray) is the
    reference for what the training itself costs.
    """
    cfg = hypernet_config(num_clients, rounds, seed)
    out: dict[str, Any] = {
        "inline": _fedplat(cfg, backend="inline", clients_per_node=1),
        "fedplat": _fedplat(cfg, clients_per_node=1),
        "grouped": _fedplat(cfg, clients_per_node="auto"),
    }
    ref = statistics.median(out["inline"]["round_s"])
    for name in ("inline", "fedplat", "grouped"):
        out[name]["median_round_s"] = statistics.median(out[name]["round_s"])
        out[f"ratio_{name}_over_inline"] = out[name]["median_round_s"] / ref
        print(f"[{num_clients:>4} clients] pefll {name:<8} "
              f"{out[name]['median_round_s']:.3f} s/round", flush=True)
    return out


def groups_of(cfg: Any) -> int:
    """Clients per node that `clients_per_node=auto` picks for this config on Ray."""
    from fedplat.transport.placement import resolve_clients_per_node

    probe = cfg.copy()
    probe.simulation.clients_per_node = "auto"
    probe.simulation.backend = "ray"
    return resolve_clients_per_node(probe)


def wire_cost(cfg: Any, clients_per_node: int, repeats: int = 5) -> dict[str, float]:
    """Bytes and serialisation time of one round's train messages (Flower's protobuf wire).

    Builds the FedAvg payloads the server sends (one global-model record for every client),
    packs them per node as fedplat does (plain messages when a node has one client) and
    serialises every message with Flower's `recorddict_to_proto` + `SerializeToString`, the
    encoding a SuperLink uses; the median over `repeats`.
    """
    from flwr.app import ConfigRecord, RecordDict
    from flwr.common.serde import recorddict_to_proto

    from fedplat.core.records import to_record
    from fedplat.transport import wire

    seeding.seed_torch(int(cfg.seed), seeding.INIT)
    model = build_model(cfg.model, load_federated(cfg).info)
    content = RecordDict({"arrays": to_record(model.state_dict()),
                          "config": ConfigRecord({"lr": float(cfg.client.lr)})})
    n = int(cfg.num_clients)
    messages = []
    for start in range(0, n, clients_per_node):
        cids = list(range(start, min(n, start + clients_per_node)))
        messages.append(wire.encode_batch(dict.fromkeys(cids, content), 1, "")[0])
    times, size = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        size = sum(len(recorddict_to_proto(m).SerializeToString()) for m in messages)
        times.append(time.perf_counter() - t0)
    return {"messages": len(messages), "bytes": size, "serialise_s": statistics.median(times)}


RUNNERS = {"loop": run_loop, "flower": run_flower, "fedplat": run_fedplat,
           "grouped": run_grouped, "batched": run_batched}
FEDPLAT = ("fedplat", "grouped", "batched")


def main() -> None:
    """Run the benchmark grid and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(RUNNERS))
    parser.add_argument("--hypernet-clients", type=int, nargs="*", default=[100],
                        help="client counts for the PeFLL runs (none: skip them)")
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
        flower = res.get("flower", {}).get("median_round_s")
        for name in ("flower", *FEDPLAT):
            if name not in res:
                continue
            if loop:
                res[f"ratio_{name}_over_loop"] = res[name]["median_round_s"] / loop
            if flower and name != "flower":
                res[f"speedup_{name}_over_flower"] = flower / res[name]["median_round_s"]
            if name in FEDPLAT and "loop" in res:
                res[name]["same_final_accuracy_as_loop"] = abs(
                    res[name]["final_accuracy"] - res["loop"]["final_accuracy"]) < 1e-4
        workers = groups_of(cfg)
        res["wire"] = {"one_client_per_node": wire_cost(cfg, 1),
                       "grouped": wire_cost(cfg, workers)}
        report["results"][str(n)] = res
        ratios = {k: round(v, 2) for k, v in res.items()
                  if k.startswith(("ratio", "speedup"))}
        print(f"[{n:>4} clients] ratios {ratios}", flush=True)
        for name, w in res["wire"].items():
            print(f"[{n:>4} clients] wire {name:<20} {w['messages']:>5} messages "
                  f"{w['bytes'] / 1e6:8.2f} MB  serialise {w['serialise_s'] * 1e3:7.1f} ms",
                  flush=True)
    report["pefll"] = {str(n): run_hypernet(n, args.rounds, args.seed)
                       for n in args.hypernet_clients}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    plot(report, args.out.with_suffix(".png"))


def plot(report: dict[str, Any], path: Path) -> None:
    """Seconds per round against the number of clients, one line per way of running."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"loop": "(a) plain PyTorch loop", "flower": "(b) stock Flower",
              "fedplat": "(c) fedplat, 1 client/node", "grouped": "(d) fedplat grouped",
              "batched": "(e) fedplat grouped + batched"}
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted(int(n) for n in report["results"])
    for name, label in labels.items():
        pts = [(n, report["results"][str(n)][name]["median_round_s"]) for n in sizes
               if name in report["results"][str(n)]]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clients (all train every round)")
    ax.set_ylabel("seconds per round (median)")
    ax.set_title("FedAvg, MNIST-1D MLP, 1 epoch, 2 CPUs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""What does a simulated FL round cost beyond the training itself?

Runs the same FedAvg work several ways and prints/writes seconds per round, wall and CPU:

* (a) loop     the reference: a hand-written PyTorch loop (training and averaging only) that uses
               the machine as fedplat's Ray workers do: one process per core (`--cores`, default
               all), each with one torch thread and its share of the clients, trained one after
               another; the parent averages the processes' weighted partial sums
* (v) vmap     the same processes, each training its clients in one vmapped pass
               (`torch.func.functional_call` + `vmap` over stacked parameters, the kernel
               `fedplat.training.batched.train_sgd` that batched nodes also call): the limit of
               (e), without engine, messages or records
* (b) flower   stock Flower usage: a Message-API ClientApp and the built-in FedAvg strategy with
               `strategy.start`, one client per node, on the same Simulation Engine (as in
               Flower's PyTorch quickstart)
* (c) fedplat  fedplat's generic ServerApp/ClientApp on the Simulation Engine (Ray), one
               client per node (`simulation.clients_per_node=1`)
* (d) grouped  the same with client groups (`clients_per_node=auto`: one node per Ray worker)
* (e) batched  grouped, and each node trains its clients in one vmapped pass
               (`simulation.batched=true`)

Each arm runs in its own process, `--repeat` times (default 2: the machine is shared, so one
run alone proves little); the report keeps every repetition. Per arm it gives the median wall
seconds per round and the CPU seconds spent in those rounds by the arm's whole process tree
(Ray's workers and daemons included; sampled with psutil at round boundaries), and for the arm
as a whole the wall and CPU seconds (`resource.getrusage` of the finished child, with its
reaped descendants; the larger of that and the sampled tree). Ratios are against the loop and
the vmapped loop of the same invocation and repetition.

For fedplat runs the report also splits a round (medians over rounds): time packing messages on
the server, the exchange (send to last reply), the slowest node's handler time (grouped runs:
data, training, replies) and the rest (strategy configure/aggregate, metrics, logging).

Same work = same clients, data, model (MLP 40-100-100-10 on MNIST-1D), 1 local epoch, batch 32,
SGD, every client every round. The loops and fedplat use the same seeds, so their final
accuracies must agree: the script checks it. Start-up (processes, Ray) is reported apart from the
per-round time; every arm counts rounds 2.. only (round 1 also warms up fresh processes), and
fedplat's last round (which also evaluates) is not counted.

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


# -- CPU seconds of this process and everything it started -------------------------------------


class TreeCpu:
    """CPU seconds (user + system) of this process and all its descendants, sampled on demand.

    Ray's workers, raylet and GCS are descendants of the driver, so a fedplat or Flower arm's
    rounds are charged for every process that served them. A process's last sample is kept
    after it exits (its final fraction of a second is lost, so this slightly under-counts).
    """

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._last: dict[int, float] = {}

    def __call__(self) -> float:
        """Total CPU seconds so far."""
        import psutil

        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self._last[proc.pid] = times.user + times.system
        return sum(self._last.values())


CPU = TreeCpu()


def rounds_cpu(stamps: list[tuple[float, float]]) -> list[float]:
    """CPU seconds between consecutive (wall, cpu) stamps."""
    return [b[1] - a[1] for a, b in itertools.pairwise(stamps)]


# -- (a) and (v): the hand-written references, one process per core ---------------------------

_SHARE: Any = None  # (cfg, this process's clients, model) in a loop worker process


def _loop_process(conn: Any, config_json: str, cids: list[int]) -> None:
    """A reference worker: one torch thread, its clients' data loaded once, then rounds."""
    from fedplat.config.compose import from_json

    torch.set_num_threads(1)
    cfg = from_json(config_json)
    fed = load_federated(cfg)
    clients = [fed.client(c) for c in cids]
    model = build_model(cfg.model, fed.info)
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(_train_share(cfg, clients, model, *job))


def _train_share(cfg: Any, clients: list[Any], model: torch.nn.Module,
                 global_state: dict[str, torch.Tensor], server_round: int, total: float,
                 mode: str) -> dict[str, torch.Tensor]:
    """This process's clients trained from `global_state`: sum_k w_k / total * state_k."""
    from fedplat.training.batched import ClientBatchData, train_sgd

    acc = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in global_state.items()}
    seed, bs = int(cfg.seed), int(cfg.client.batch_size)
    gens = [seeding.torch_generator(seed, seeding.CLIENT, server_round, d.cid) for d in clients]
    if mode == "vmap":
        params, results, _ = train_sgd(
            model, [global_state] * len(clients),
            [ClientBatchData(d.x_train, d.y_train, g) for d, g in zip(clients, gens)],
            epochs=1, batch_size=bs, lr=float(cfg.client.lr),
            momentum=float(cfg.client.momentum), weight_decay=float(cfg.client.weight_decay))
        for state, res in zip(params, results):
            for k in acc:
                acc[k] += state[k].detach().to(torch.float64) * (res.num_examples / total)
        return acc
    for data, gen in zip(clients, gens):
        model.load_state_dict(global_state)
        opt = make_optimizer(model.parameters(), cfg.client)
        res = train(model, data.x_train, data.y_train, opt, epochs=1, batch_size=bs,
                    generator=gen)
        for k, v in model.state_dict().items():
            acc[k] += v.detach().to(torch.float64) * (res.num_examples / total)
    return acc


def _run_reference(cfg: Any, mode: str, cores: int) -> dict[str, Any]:
    """FedAvg by hand over `cores` processes (one torch thread each), half the clients each."""
    import multiprocessing

    from fedplat.config.compose import to_json

    t0 = time.perf_counter()
    fed = load_federated(cfg)
    n = fed.num_clients
    total = float(sum(len(fed.client(c).y_train) for c in range(n)))
    shares = [list(range(n))[k * n // cores:(k + 1) * n // cores] for k in range(cores)]
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for cids in shares:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_loop_process, args=(child, to_json(cfg), cids), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for conn in pipes:
        assert conn.recv() == "ready"
    seeding.seed_torch(int(cfg.seed), seeding.INIT)
    model = build_model(cfg.model, fed.info)
    global_state = ops.clone(model.state_dict())
    startup = time.perf_counter() - t0
    times, stamps = [], [(time.perf_counter(), CPU())]
    for server_round in range(1, int(cfg.num_rounds) + 1):
        t_round = time.perf_counter()
        for conn in pipes:
            conn.send((global_state, server_round, total, mode))
        parts = [conn.recv() for conn in pipes]
        global_state = {k: sum((p[k] for p in parts[1:]), parts[0][k]).to(v.dtype)
                        for k, v in global_state.items()}
        times.append(time.perf_counter() - t_round)
        stamps.append((time.perf_counter(), CPU()))
    for conn in pipes:
        conn.send(None)
    for proc in procs:
        proc.join()
    model.load_state_dict(global_state)
    clients = [fed.client(c) for c in range(n)]
    correct = sum(evaluate(model, d.x_test, d.y_test).correct for d in clients)
    return {"round_s": times, "round_cpu_s": rounds_cpu(stamps), "startup_s": startup,
            "final_accuracy": correct / sum(len(d.y_test) for d in clients),
            "processes": cores, "torch_threads_each": 1}


def run_loop(cfg: Any, cores: int) -> dict[str, Any]:
    """(a) plain per-client training, one process per core."""
    return _run_reference(cfg, "loop", cores)


def run_vmap(cfg: Any, cores: int) -> dict[str, Any]:
    """(v) each process trains its clients in one vmapped pass."""
    return _run_reference(cfg, "vmap", cores)


def _fedplat(cfg: Any, **simulation: Any) -> dict[str, Any]:
    """fedplat's simulation on Ray (what `fedplat ...` runs), with `simulation.*` settings."""
    from simulations.centralized import run

    cfg = cfg.copy()
    for key, value in simulation.items():
        cfg.simulation[key] = value
    cfg = prepare(cfg)
    from fedplat.recording.recorder import RunRecorder

    stamps: list[tuple[float, float]] = []
    log_round = RunRecorder.log_round

    def stamped(self: RunRecorder, row: dict[str, Any]) -> None:
        stamps.append((time.perf_counter(), CPU()))
        log_round(self, row)

    RunRecorder.log_round = stamped  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            summary = run(cfg, Path(out))
            wall = time.perf_counter() - t0
            rows = [json.loads(x)
                    for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    finally:
        RunRecorder.log_round = log_round  # type: ignore[method-assign]
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
            "round_cpu_s": rounds_cpu(stamps)[:-1],  # rounds 2.. (not the evaluating last)
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
    cpu: list[float] = []
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        seeding.seed_torch(int(cfg.seed), seeding.INIT)
        model = build_model(cfg.model, load_federated(cfg).info)
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0,
                          min_available_nodes=int(cfg.num_clients))

        def mark(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            marks.append(time.perf_counter())
            cpu.append(CPU())
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
    return {"round_s": rounds, "startup_s": startup, "wall_s": time.perf_counter() - t0,
            "round_cpu_s": [b - a for a, b in itertools.pairwise(cpu[1:])]}


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


RUNNERS: dict[str, Any] = {
    "loop": run_loop, "vmap": run_vmap,
    "flower": lambda cfg, cores: run_flower(cfg), "fedplat": lambda cfg, cores: run_fedplat(cfg),
    "grouped": lambda cfg, cores: run_grouped(cfg), "batched": lambda cfg, cores: run_batched(cfg)}
FEDPLAT = ("fedplat", "grouped", "batched")
#: What each arm is compared with (besides the loop): the vmapped loop is batched's own limit.
REFERENCE = {"batched": "vmap", "grouped": "loop", "fedplat": "loop"}


def run_arm(name: str, num_clients: int, rounds: int, seed: int, cores: int,
            result: Path) -> None:
    """The body of one arm's process: run it, write its result as JSON."""
    import flwr.app  # noqa: F401  (flwr sets its logger's level on import; quiet it after)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    out = RUNNERS[name](make_config(num_clients, rounds, seed), cores)
    out["tree_cpu_s"] = CPU()
    result.write_text(json.dumps(out) + "\n")


def arm_in_child(name: str, num_clients: int, rounds: int, seed: int,
                 cores: int) -> dict[str, Any]:
    """Run one arm in a fresh process; add its wall and CPU seconds as a whole."""
    import resource
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "arm.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--arm", name, "--clients",
                               str(num_clients), "--rounds", str(rounds), "--seed", str(seed),
                               "--cores", str(cores), "--result", str(result)],
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(Path(__file__).resolve().parents[1]),
                                   os.environ.get("PYTHONPATH", "")])}, check=False)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0 or not result.is_file():
            raise SystemExit(f"arm {name} with {num_clients} clients failed "
                             f"(exit code {proc.returncode})")
        out: dict[str, Any] = json.loads(result.read_text())
    rusage_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["arm_wall_s"] = wall
    out["arm_cpu_rusage_s"] = rusage_cpu
    out["arm_cpu_s"] = max(rusage_cpu, float(out.get("tree_cpu_s", 0.0)))
    warm_up(name, out)
    out["median_round_s"] = statistics.median(out["round_s"])
    cpu = out.get("round_cpu_s") or []
    out["median_round_cpu_s"] = statistics.median(cpu) if cpu else None
    return out


def warm_up(name: str, out: dict[str, Any]) -> None:
    """Count rounds 2.. only, in every arm: round 1 also warms up (lazy initialisation in fresh
    worker processes), and Flower's arm already counts its round 1 as start-up."""
    if name == "flower" or len(out["round_s"]) < 2:
        return
    out["round_1_s"] = out["round_s"][0]
    out["round_s"] = out["round_s"][1:]
    if name in ("loop", "vmap"):  # fedplat's CPU windows start at round 2 already
        out["round_cpu_s"] = out["round_cpu_s"][1:]


def compare(res: dict[str, Any]) -> dict[str, float]:
    """Ratios of one repetition's arms: over the loop, over each arm's reference, Flower's."""
    ratios: dict[str, float] = {}
    loop = res.get("loop", {}).get("median_round_s")
    flower = res.get("flower", {}).get("median_round_s")
    for name in ("vmap", "flower", *FEDPLAT):
        if name not in res:
            continue
        mine = res[name]["median_round_s"]
        if loop:
            ratios[f"{name}_over_loop"] = mine / loop
        ref = REFERENCE.get(name)
        if ref and ref != "loop" and ref in res:
            ratios[f"{name}_over_{ref}"] = mine / res[ref]["median_round_s"]
        if flower and name in FEDPLAT:
            ratios[f"speedup_{name}_over_flower"] = flower / mine
    # The same in CPU seconds per round: on a shared machine, wall time also measures the
    # others' load; the CPU a round's processes spent does much less.
    loop_cpu = res.get("loop", {}).get("median_round_cpu_s")
    for name in ("vmap", "flower", *FEDPLAT):
        mine_cpu = res.get(name, {}).get("median_round_cpu_s")
        if not mine_cpu:
            continue
        if loop_cpu:
            ratios[f"{name}_over_loop_cpu"] = mine_cpu / loop_cpu
        ref = REFERENCE.get(name)
        ref_cpu = res.get(ref, {}).get("median_round_cpu_s") if ref and ref != "loop" else None
        if ref_cpu:
            ratios[f"{name}_over_{ref}_cpu"] = mine_cpu / ref_cpu
    return ratios


def main() -> None:
    """Run the benchmark grid and write the JSON report (or, with --arm, one arm)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of every arm (each reported; the machine is shared)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="processes of the hand-written references (one torch thread each)")
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(RUNNERS))
    parser.add_argument("--hypernet-clients", type=int, nargs="*", default=[100],
                        help="client counts for the PeFLL runs (none: skip them)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead.json"))
    parser.add_argument("--arm", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be >= 3 (fedplat's last round also evaluates)")
    if args.arm:
        run_arm(args.arm, args.clients[0], args.rounds, args.seed, args.cores, args.result)
        return
    import flwr.app  # noqa: F401  (flwr sets its logger's level on import; quiet it after)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform()},
        "workload": "FedAvg, MNIST-1D, MLP 40-100-100-10, 1 local epoch, batch 32, SGD lr 0.05, "
                    "all clients every round",
        "rounds": args.rounds, "cores": args.cores, "repeat": args.repeat, "results": {},
    }
    for n in args.clients:
        cfg = make_config(n, args.rounds, args.seed)
        reps: list[dict[str, Any]] = []
        for rep in range(args.repeat):
            res: dict[str, Any] = {}
            for name in RUNNERS:
                if name in args.skip:
                    continue
                out = arm_in_child(name, n, args.rounds, args.seed, args.cores)
                res[name] = out
                cpu = out["median_round_cpu_s"]
                print(f"[{n:>4} clients, run {rep + 1}] {name:<8} "
                      f"{out['median_round_s']:.3f} s/round wall, "
                      f"{cpu if cpu is None else round(cpu, 3)} s/round CPU "
                      f"(start-up {out['startup_s'] or 0:.1f} s; arm {out['arm_wall_s']:.1f} s "
                      f"wall, {out['arm_cpu_s']:.1f} s CPU)", flush=True)
            for name in (*FEDPLAT, "vmap"):
                if name in res and "loop" in res:
                    res[name]["same_final_accuracy_as_loop"] = abs(
                        res[name]["final_accuracy"] - res["loop"]["final_accuracy"]) < 1e-4
            res["ratios"] = compare(res)
            print(f"[{n:>4} clients, run {rep + 1}] ratios "
                  f"{ {k: round(v, 2) for k, v in res['ratios'].items()} }", flush=True)
            reps.append(res)
        workers = groups_of(cfg)
        wire = {"one_client_per_node": wire_cost(cfg, 1), "grouped": wire_cost(cfg, workers)}
        report["results"][str(n)] = {"runs": reps, "wire": wire}
        for name, w in wire.items():
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

    labels = {"loop": "(a) plain PyTorch loop, 1 process per core",
              "vmap": "(v) vmapped loop, 1 process per core", "flower": "(b) stock Flower",
              "fedplat": "(c) fedplat, 1 client/node", "grouped": "(d) fedplat grouped",
              "batched": "(e) fedplat grouped + batched"}
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted(int(n) for n in report["results"])
    for name, label in labels.items():
        pts = [(n, min(run[name]["median_round_s"] for run in report["results"][str(n)]["runs"]))
               for n in sizes if name in report["results"][str(n)]["runs"][0]]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clients (all train every round)")
    ax.set_ylabel("seconds per round (median; best of the runs)")
    ax.set_title("FedAvg, MNIST-1D MLP, 1 epoch, 2 CPUs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

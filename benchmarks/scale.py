"""Does a round cost what its sampled clients cost, whatever the population?

FedAvg on `dataset=synthetic` (FedProx's Synthetic(1, 1), generated per user on demand),
grouped and batched (`simulation.clients_per_node`, `simulation.batched=true`), 1 % of the
clients per round, a few rounds, evaluation of a small sample at the last round only. Each
population runs in a fresh process, so its peak memory is its own. Per population it prints:

* s/round     median seconds per round (round_time_s of metrics.jsonl), the last round apart
              (it also evaluates)
* start-up    seconds before round 1 (data description, Ray, the nodes' set-up: every node
              reports its clients' sizes and label counts once, which grows with the
              population)
* driver RSS  the driver's peak resident memory (getrusage; on the inline backend, the
              default, the driver also runs every client: an upper bound of the driver alone)
* worker RSS  the largest peak resident memory of one Ray worker (sampled every 0.2 s)
* CPU s       CPU seconds of the driver and all its descendant processes, beside wall seconds

    python benchmarks/scale.py                        # 1k, 10k, 100k clients, inline, 2 nodes
    python benchmarks/scale.py --clients 1000 --backend ray --rounds 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

ROOT = Path(__file__).resolve().parent.parent

#: Per-user sizes of the benchmark: int(lognormal(3, 1)) + 10, mean about 43 samples, so the
#: population's data is cheap to generate on 2 cores (FedProx's own lognormal(4, 2) + 50 has a
#: mean of about 450 and users of 10^5 samples at 100,000 users).
SIZES = ["dataset.size_mean=3.0", "dataset.size_sigma=1.0", "dataset.min_size=10"]


def overrides(num_clients: int, rounds: int, backend: str, clients_per_node: str,
              fraction_train: float, evaluate_clients: int) -> list[str]:
    """The benchmark's fedplat config as command-line overrides.

    One torch thread per process, as each Ray worker gets (`num_cpus=1`): with torch's default
    of one thread per core, an inline round on this loaded 2-core machine took 3.1 s of wall
    time for 0.28 s of CPU (each parallel region waits for a descheduled thread).
    """
    return [
        "dataset=synthetic", "partition=natural", *SIZES, "model=mlp", "model.hidden=[]",
        f"num_clients={num_clients}", f"num_rounds={rounds}", f"eval_every={rounds}",
        "strategy=fedavg", f"strategy.fraction_train={fraction_train}",
        f"strategy.fraction_evaluate={evaluate_clients / num_clients}",
        "client.local_epochs=1", "client.batch_size=32", "client.lr=0.05",
        "client.momentum=0.0", "seed=0", f"simulation.backend={backend}",
        "simulation.batched=true", f"simulation.clients_per_node={clients_per_node}",
        "simulation.num_cpus=1", "simulation.torch_threads=1"]


class Sampler(threading.Thread):
    """Peak RSS and last CPU times of every descendant process, sampled in the background."""

    def __init__(self, period_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        import psutil

        self.me = psutil.Process()
        self.period_s = period_s
        self.peak_rss: dict[int, int] = {}
        self.cpu_s: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.done = threading.Event()

    def sample(self) -> None:
        import psutil

        for proc in self.me.children(recursive=True):
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    cpu = proc.cpu_times()
                    if proc.pid not in self.names:
                        self.names[proc.pid] = " ".join(proc.cmdline()[:3])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self.peak_rss[proc.pid] = max(self.peak_rss.get(proc.pid, 0), rss)
            self.cpu_s[proc.pid] = cpu.user + cpu.system

    def run(self) -> None:
        while not self.done.wait(self.period_s):
            self.sample()

    def stop(self) -> None:
        self.sample()
        self.done.set()

    def worker_peak_mb(self) -> float:
        """The largest peak RSS of one Ray worker process (0 when none ran)."""
        workers = [rss for pid, rss in self.peak_rss.items()
                   if "default_worker" in self.names.get(pid, "")
                   or "ray::" in self.names.get(pid, "")]
        return max(workers, default=0) / 2**20


def cpu_clock() -> list[float]:
    """The driver's CPU clock when round 1 starts and as each round is logged.

    Wraps the recorder's two hooks (measurement only): on a machine shared with other work,
    wall seconds measure the contention, CPU seconds the work.
    """
    from fedplat.recording.recorder import RunRecorder

    marks: list[float] = []
    started, logged = RunRecorder.round_started, RunRecorder.log_round

    def round_started(self: RunRecorder) -> None:
        if self.t_first_round is None:
            marks.append(time.process_time())
        started(self)

    def log_round(self: RunRecorder, row: dict[str, Any]) -> None:
        marks.append(time.process_time())
        logged(self, row)

    RunRecorder.round_started = round_started  # type: ignore[method-assign]
    RunRecorder.log_round = log_round  # type: ignore[method-assign]
    return marks


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One population in this process: run, then measure."""
    from fedplat.config.compose import compose, prepare
    from simulations.centralized import run

    n = int(args.one)
    cfg = prepare(compose(overrides(n, args.rounds, args.backend, str(-(-n // args.nodes)),
                                    args.fraction_train, args.evaluate_clients)))
    cpu_marks = cpu_clock()
    sampler = Sampler()
    sampler.start()
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as out:
        summary = run(cfg, Path(out))
        wall = time.perf_counter() - t0
        rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    sampler.stop()
    driver_cpu = time.process_time() - c0
    rounds = [float(r["round_time_s"]) for r in rows]
    round_cpu = [b - a for a, b in itertools.pairwise(cpu_marks)]
    return {
        "clients": n, "sampled_per_round": max(1, round(args.fraction_train * n)),
        "backend": args.backend, "clients_per_node": int(cfg.simulation.clients_per_node),
        "rounds": len(rows), "round_s": rounds,
        "s_per_round": statistics.median(rounds[:-1] or rounds),
        "last_round_s": rounds[-1], "startup_s": float(summary.get("startup_s") or 0.0),
        "wall_s": wall,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mb": sampler.worker_peak_mb(),
        "driver_cpu_s": driver_cpu, "children_cpu_s": sum(sampler.cpu_s.values()),
        "startup_cpu_s": cpu_marks[0] - c0 if cpu_marks else None,
        "round_cpu_s": round_cpu,
        "cpu_s_per_round": statistics.median(round_cpu[:-1] or round_cpu) if round_cpu else None,
        "final_accuracy": summary.get("final", {}).get("accuracy"),
    }


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = ["| clients | sampled/round | s/round (wall) | CPU s/round | last round (eval) s "
             "| start-up s (CPU s) | wall s | CPU s (driver + others) | driver peak RSS MB "
             "| worker peak RSS MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['clients']:,} | {r['sampled_per_round']:,} | {r['s_per_round']:.2f} "
            f"| {r['cpu_s_per_round']:.2f} | {r['last_round_s']:.2f} "
            f"| {r['startup_s']:.1f} ({r['startup_cpu_s']:.1f}) | {r['wall_s']:.1f} "
            f"| {r['driver_cpu_s'] + r['children_cpu_s']:.0f} ({r['driver_cpu_s']:.0f} + "
            f"{r['children_cpu_s']:.0f}) | {r['driver_peak_rss_mb']:.0f} "
            f"| {r['worker_peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("ray", "inline"), default="inline")
    parser.add_argument("--nodes", type=int, default=2,
                        help="simulated nodes: clients_per_node = ceil(clients / nodes) (2: one "
                             "group per core of this machine, as clients_per_node=auto on Ray)")
    parser.add_argument("--fraction-train", type=float, default=0.01)
    parser.add_argument("--evaluate-clients", type=int, default=10,
                        help="clients evaluated at the last round")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return
    results = []
    for n in args.clients:
        cmd = [sys.executable, __file__, "--one", str(n), "--rounds", str(args.rounds),
               "--backend", args.backend, "--nodes", str(args.nodes),
               "--fraction-train", str(args.fraction_train),
               "--evaluate-clients", str(args.evaluate_clients)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        if args.backend == "ray":  # a fresh local Ray, never a cluster another user started
            env.setdefault("RAY_ADDRESS", "local")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not found:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"the run with {n} clients failed (exit {proc.returncode})")
        results.append(json.loads(found[-1][len("RESULT "):]))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    print(f"\nbackend {args.backend}, {args.nodes} nodes, "
          f"{args.rounds} rounds, python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Memory of a Ray run's processes with and without one shared copy of the data per machine.

Runs the same short FedAvg run on the Ray backend twice, `simulation.share_data=true` (the
workers open the driver's partitioned arrays memory-mapped, `fedplat.data.shared`) and `false`
(every worker loads and partitions its own copy), each in a fresh process, and samples every
descendant process every 0.2 s. Per arm it prints, in MB:

* driver peak RSS   getrusage of the fedplat process (it loads the data once in both arms)
* worker peak RSS   the largest resident size of one Ray worker (counts shared pages in full)
* worker peak USS   the largest memory unique to one worker (what sharing saves per worker)
* total peak PSS    the largest sum over all processes of their proportional set size (shared
                    pages divided among the processes that map them): the machine's cost

plus wall seconds, CPU seconds (the fedplat process and its reaped children: Ray's workers are
not counted), and whether both arms logged the same metrics (they must).

    python benchmarks/data_memory.py                          # fashion_mnist, 2 workers
    python benchmarks/data_memory.py --dataset mnist1d --clients 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


class Sampler(threading.Thread):
    """Peak RSS/USS per process and the peak total PSS of this process's descendants."""

    def __init__(self, period_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.period_s = period_s
        self.stop_event = threading.Event()
        self.worker_rss = 0
        self.worker_uss = 0
        self.total_pss = 0

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop_event.is_set():
            total = 0
            for proc in me.children(recursive=True):
                try:
                    info = proc.memory_full_info()
                    name = proc.name()
                except psutil.Error:
                    continue
                total += info.pss
                if name.startswith("ray::"):
                    self.worker_rss = max(self.worker_rss, info.rss)
                    self.worker_uss = max(self.worker_uss, info.uss)
            with contextlib.suppress(psutil.Error):
                total += me.memory_full_info().pss
            self.total_pss = max(self.total_pss, total)
            self.stop_event.wait(self.period_s)


def run_arm(args: argparse.Namespace, share: bool) -> dict[str, Any]:
    """One run in this (fresh) process; the metrics and the memory figures."""
    from fedplat.cli import main

    out = Path(tempfile.mkdtemp(prefix="fedplat-mem-")) / "run"
    sampler = Sampler()
    sampler.start()
    t0, c0 = time.perf_counter(), os.times()
    try:
        main([f"dataset={args.dataset}", f"num_clients={args.clients}",
              f"num_rounds={args.rounds}", "simulation.backend=ray",
              f"simulation.ray_num_cpus={args.workers}",
              f"simulation.share_data={str(share).lower()}", f"hydra.run.dir={out}"])
    except SystemExit as exc:
        if exc.code:
            raise
    wall = time.perf_counter() - t0
    c1 = os.times()
    sampler.stop_event.set()
    sampler.join()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keep = ("round", "train_loss", "test_loss", "test_accuracy")
    return {
        "share_data": share,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mb": sampler.worker_rss / MB,
        "worker_peak_uss_mb": sampler.worker_uss / MB,
        "total_peak_pss_mb": sampler.total_pss / MB,
        "wall_s": wall,
        "cpu_s": (c1.user - c0.user) + (c1.system - c0.system)
        + (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system),
        "metrics": [{k: r.get(k) for k in keep} for r in rows],
    }


def main() -> None:
    """Both arms, each in its own process; a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs (one worker each)")
    parser.add_argument("--one", choices=("true", "false"), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_arm(args, args.one == "true")))
        return
    results = []
    for share in ("false", "true"):
        cmd = [sys.executable, __file__, "--one", share, "--dataset", args.dataset,
               "--clients", str(args.clients), "--rounds", str(args.rounds),
               "--workers", str(args.workers)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"data_memory: the share_data={share} run failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{args.dataset}, {args.clients} clients, {args.rounds} round(s), Ray with "
          f"{args.workers} workers")
    print("| share_data | driver peak RSS | worker peak RSS | worker peak USS | total peak PSS "
          "| wall s | CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {str(r['share_data']).lower()} | {r['driver_peak_rss_mb']:.0f} MB "
              f"| {r['worker_peak_rss_mb']:.0f} MB | {r['worker_peak_uss_mb']:.0f} MB "
              f"| {r['total_peak_pss_mb']:.0f} MB | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    same = results[0]["metrics"] == results[1]["metrics"]
    print(f"same metrics in both arms: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Profile fedplat's own work in a grouped (+ batched) FedAvg run, in one process.

The inline backend runs the server and the nodes in this process, so cProfile sees both sides
of the wire: building and reading replies, the checks, aggregation and recording. This is how
the per-client costs behind the stacked replies (docs/performance.md, "Stacked replies") were
found. Same workload as `benchmarks/overhead.py`.

    python benchmarks/profile_round.py --clients 1000 --rounds 4 --clients-per-node 500 --batched
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import make_config

from fedplat.config.compose import prepare


def main() -> None:
    """Run once under cProfile and print the costliest fedplat functions (cumulative)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--clients-per-node", type=int, default=500)
    ap.add_argument("--batched", action="store_true")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    from simulations.centralized import run

    cfg = make_config(args.clients, args.rounds, 0)
    cfg.simulation.backend = "inline"
    cfg.simulation.clients_per_node = args.clients_per_node
    cfg.simulation.batched = args.batched
    cfg = prepare(cfg)
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as out:
        profile.runcall(run, cfg, Path(out))
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats("fedplat|strategies|clients", args.top)


if __name__ == "__main__":
    main()

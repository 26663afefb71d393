"""Check that two checkouts of fedplat give the same metrics for the same experiments.

A refactor must not change results. This runs each experiment (a set of Hydra overrides) on the
inline backend in both checkouts, each in its own process with that checkout first on
PYTHONPATH, and compares every metrics.jsonl row without the timing keys: every key the old
checkout writes must hold exactly the same value in the new one (keys only the new one writes
are listed, not compared). Exit code 0 when every experiment matches, 1 otherwise.

    python scripts/same_metrics.py --old /tmp/fedplat-before --new . --out /tmp/same
    python scripts/same_metrics.py --old A --new B --only fedavg pefll   # a subset

An experiment whose config keys were renamed between the checkouts takes a pair of override
lists (old, new) in EXPERIMENTS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fedplat.recording.recorder import without_timing

SMALL = ("num_rounds=3", "simulation.torch_threads=1")
HN = ("strategy.hypernet.hidden=16", "strategy.hypernet.n_hidden=1", "strategy.inner_steps=5")

#: name -> overrides, or (old overrides, new overrides) where keys were renamed.
EXPERIMENTS: dict[str, tuple[str, ...] | tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fedavg": ("num_clients=6",),
    "fedavg_faults": ("num_clients=6", "faults.crash_prob=0.2", "faults.dropout_prob=0.2",
                      "strategy.fraction_train=0.7"),
    "fedavg_grouped": ("num_clients=7", "simulation.clients_per_node=3",
                       "strategy.fraction_train=0.6"),
    "fedavg_batched": ("num_clients=7", "simulation.clients_per_node=4",
                       "simulation.batched=true"),
    "local": ("strategy=local", "num_clients=5"),
    "fedper": ("strategy=fedper", "num_clients=5"),
    "fedhyper_full": ("strategy=fedhyper", "strategy.variant=FULL", "num_clients=5"),
    "fedadam": ("strategy=fedadam", "num_clients=5"),
    "fedexp": ("strategy=fedexp", "num_clients=5"),
    "dp_fedavg": ("strategy=dp_fedavg", "num_clients=5"),
    "pfedhn": ("strategy=pfedhn", "num_clients=5", *HN),
    "pfedhn_pc": ("strategy=pfedhn_pc", "num_clients=5", *HN),
    "hyperfl": ("strategy=hyperfl", "num_clients=5", "strategy.hypernet.hidden=16"),
    "pefll": ("strategy=pefll", "num_clients=8", "strategy.unseen_fraction=0.25", *HN),
    "fedpub_sbm": ("experiment=fedpub_sbm",),
    "gcn_sbm": ("experiment=gcn_sbm",),
    "semipfl_wisdm": ("experiment=semipfl_wisdm", "num_rounds=2"),
}


def run(checkout: Path, overrides: tuple[str, ...], out: Path) -> list[dict[str, Any]]:
    """One inline run in its own process with `checkout` first on the import path."""
    code = ("import sys; from fedplat.config.compose import compose, prepare\n"
            "from simulations.centralized import run\n"
            "run(prepare(compose(sys.argv[2:])), __import__('pathlib').Path(sys.argv[1]))")
    if not (checkout / "fedplat" / "config" / "compose.py").is_file():  # before the move
        code = code.replace("fedplat.config.compose", "fedplat.config")
    env = {**os.environ, "PYTHONPATH": str(checkout), "FLWR_TELEMETRY_ENABLED": "0"}
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", code, str(out), "simulation.backend=inline",
                           *SMALL, *overrides], cwd=checkout, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{checkout}: {' '.join(overrides)} failed:\n{done.stderr[-1500:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without timing keys, per client as well."""
    out = without_timing(rows)
    for row in out:
        row["per_client"] = {c: without_timing([e])[0]
                             for c, e in row.get("per_client", {}).items()}
    return out


def same_numbers(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> tuple[bool, set[str]]:
    """Whether every key the old rows have holds the same value in the new rows.

    Keys only the new checkout writes (new facts such as the device a client ran on) are
    returned, not compared: they add information, they change no number.
    """
    if len(old) != len(new):
        return False, set()
    added: set[str] = set()
    for a, b in zip(old, new):
        added |= set(b) - set(a)
        if any(b.get(k) != v for k, v in a.items() if k != "per_client"):
            return False, added
        pa, pb = a.get("per_client", {}), b.get("per_client", {})
        if set(pa) != set(pb):
            return False, added
        for cid, entry in pa.items():
            added |= {f"per_client.{k}" for k in set(pb[cid]) - set(entry)}
            if any(pb[cid].get(k) != v for k, v in entry.items()):
                return False, added
    return True, added


def main() -> int:
    """Run the experiments in both checkouts and report which match."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    bad = 0
    for name, spec in EXPERIMENTS.items():
        if args.only and name not in args.only:
            continue
        old_ov, new_ov = spec if isinstance(spec[0], tuple) else (spec, spec)
        t0 = time.perf_counter()
        a = stable(run(args.old.resolve(), tuple(old_ov), args.out / name / "old"))
        b = stable(run(args.new.resolve(), tuple(new_ov), args.out / name / "new"))
        same, added = same_numbers(a, b)
        bad += not same
        keys = sorted({k for r in a for k in r if k != "per_client"})
        print(f"{name:16s} {'same' if same else 'DIFFERENT'}  {len(b)} rounds, "
              f"{len(keys)} row keys compared, {time.perf_counter() - t0:.1f} s"
              + (f", new keys: {', '.join(sorted(added))}" if added else ""), flush=True)
        if not same:
            for ra, rb in zip(a, b):
                diff = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
                if diff:
                    print(f"  round {rb.get('round')}: {diff[:8]}")
                    break
    print("all experiments give the same metrics" if not bad else f"{bad} experiment(s) differ")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

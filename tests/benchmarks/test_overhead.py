"""The overhead benchmark's references and bookkeeping (benchmarks/overhead.py)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"


@pytest.fixture(scope="module")
def overhead() -> Iterator[ModuleType]:
    """The script as module `overhead`, importable by the reference's spawned processes."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        yield importlib.import_module("overhead")
    finally:
        sys.path.remove(str(SCRIPT.parent))
        sys.modules.pop("overhead", None)


def test_ratios_are_against_the_loop_each_arms_reference_and_flower(overhead: ModuleType) -> None:
    res = {name: {"median_round_s": t} for name, t in
           (("loop", 2.0), ("vmap", 0.5), ("flower", 10.0), ("grouped", 1.0), ("batched", 0.4))}
    ratios = overhead.compare(res)
    assert ratios == pytest.approx({
        "vmap_over_loop": 0.25, "flower_over_loop": 5.0, "grouped_over_loop": 0.5,
        "batched_over_loop": 0.2, "batched_over_vmap": 0.8, "speedup_grouped_over_flower": 10.0,
        "speedup_batched_over_flower": 25.0})
    for name, cpu in (("loop", 1.0), ("vmap", 0.25), ("batched", 0.5)):
        res[name]["median_round_cpu_s"] = cpu
    cpu_ratios = {k: v for k, v in overhead.compare(res).items() if k.endswith("_cpu")}
    assert cpu_ratios == pytest.approx({"vmap_over_loop_cpu": 0.25, "batched_over_loop_cpu": 0.5,
                                        "batched_over_vmap_cpu": 2.0})
    loop = {"round_s": [5.0, 1.0, 2.0], "round_cpu_s": [3.0, 1.0, 1.5]}
    overhead.warm_up("loop", loop)  # round 1 warms up: not counted
    assert loop == {"round_s": [1.0, 2.0], "round_cpu_s": [1.0, 1.5], "round_1_s": 5.0}
    flower = {"round_s": [1.0, 2.0], "round_cpu_s": [1.0, 1.5]}
    overhead.warm_up("flower", flower)  # its round 1 is start-up already
    assert flower["round_s"] == [1.0, 2.0]
    assert overhead.rounds_cpu([(0.0, 1.0), (1.0, 2.5), (2.0, 2.75)]) == [1.5, 0.25]


@pytest.mark.slow  # spawns two Python processes that import torch and fedplat
def test_the_two_process_references_agree_and_count_their_workers_cpu(
        overhead: ModuleType) -> None:
    cfg = overhead.make_config(6, 2, 0)
    loop = overhead.run_loop(cfg, 2)
    vmap = overhead.run_vmap(cfg, 2)
    assert loop["processes"] == 2 and len(loop["round_s"]) == len(loop["round_cpu_s"]) == 2
    assert abs(loop["final_accuracy"] - vmap["final_accuracy"]) < 1e-4
    assert all(c > 0 for c in loop["round_cpu_s"])  # the workers' CPU, not only the parent's

"""Executors: the in-process one by hand; the Ray one (one Ray start) matches it, no stall."""

import json

import numpy as np
import pytest
import torch

from fedplat.data import DatasetInfo
from simulations.disaster.executor import LocalExecutor
from simulations.disaster.runner import run
from simulations.disaster.shard import RoundPlan, ShardSetup
from tests.helpers import make_cfg

INFO = DatasetInfo("digits", (1, 8, 8), 10, "image", 1797)
PATH = {0: [1], 1: [0, 2], 2: [1]}  # 0-1-2


def _setups(worker_exit=None):
    """Relays 0, 1 on shard 0 and relay 2 on shard 1 (no data: aggregation only)."""
    settings = {"seed": 0, "model": {"name": "mlp", "hidden": [2]}, "weights": "uniform",
                "zero_data_fallback": "uniform", "order": "jacobi", "node_shard": [0, 0, 1],
                "client": {"local_epochs": 1, "batch_size": 4, "optimizer": "sgd", "lr": 0.1,
                           "momentum": 0.0, "weight_decay": 0.0, "eval_batch_size": 8},
                "worker_exit": worker_exit or {}}
    sizes = np.zeros(3, dtype=np.int64)
    return [ShardSetup(sid, nodes, sizes, {}, np.zeros((1, 1, 8, 8)), np.zeros(1), INFO,
                       settings, None) for sid, nodes in ((0, [0, 1]), (1, [2]))]


def _plans(t, shards=(0, 1)):
    own = {0: [0, 1], 1: [2]}
    return {s: RoundPlan(t, own[s], {v: PATH[v] for v in own[s]}, {0: 1, 1: 2, 2: 1}, {},
                         False) for s in shards}


def _local(worker_exit=None):
    ex = LocalExecutor()
    ex.start(_setups(worker_exit), threads=1)
    for sid, values in ((0, {0: 3.0, 1: 6.0}), (1, {2: 12.0})):
        ex.shards[sid].models = {v: torch.tensor([x]) for v, x in values.items()}
    return ex


def test_local_shards_read_last_rounds_blocks_whatever_the_stepping_order():
    ex = _local()
    try:
        reports, lost = ex.step(_plans(1))
        assert lost == [] and sorted(reports) == [0, 1]
        reports, _ = ex.step(_plans(2))
        # shard 0 stepped first, yet shard 1 read its round-1 block: the same numbers as one
        # shard (tests/simulations/disaster/test_shard.py)
        models = ex.get_models()
        assert [float(models[v][0]) for v in range(3)] == pytest.approx([4.5, 7.0, 9.0])
        assert reports[0].fetched_bytes == 4 and reports[1].fetched_bytes == 8  # float32s
        sums = ex.consensus_sums({0: 0, 1: 0, 2: 0})
        assert [{k: (c, s.tolist()) for k, (c, s) in part.items()} for part in sums] == [
            {0: (2, [11.5])}, {0: (1, [9.0])}]
    finally:
        ex.close()


def test_a_local_worker_that_exits_is_reported_lost_and_the_others_go_on():
    ex = _local(worker_exit={"round": 2, "worker": 1})
    try:
        ex.step(_plans(1))
        reports, lost = ex.step(_plans(2))
        assert lost == [1] and sorted(reports) == [0] and ex.alive_shards() == [0]
        assert sorted(ex.get_models()) == [0, 1]
        reports, lost = ex.step(_plans(3, shards=(0,)))
        assert lost == [] and reports[0].sent == [0, 1]
    finally:
        ex.close()


def test_the_local_executor_restores_torchs_thread_count():
    before = torch.get_num_threads()
    ex = LocalExecutor()
    ex.start(_setups(), threads=1)
    assert torch.get_num_threads() == 1
    ex.close()
    assert torch.get_num_threads() == before and ex.shards == {}

TINY = ("scenario=disaster", "dataset=digits", "model=mlp", "model.hidden=[16]",
        "num_clients=8", "num_rounds=3", "placement.per_node=20", "client.batch_size=10",
        "p2p.plots=false", "p2p.num_workers=2",
        "disruption.events=[{round: 2, type: node_drop, select: top_degree, count: 1}]")


def _rows(d):
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.ray
def test_ray_actors_match_in_process_and_survive_a_dying_worker(tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        run(make_cfg(*TINY, "p2p.backend=ray"), tmp_path / "ray")
        run(make_cfg(*TINY, "p2p.backend=local"), tmp_path / "local")
        ray_rows, local_rows = _rows(tmp_path / "ray"), _rows(tmp_path / "local")
        for key in ("acc_mean", "acc_std", "train_loss", "messages", "alive"):
            assert [r[key] for r in ray_rows] == [r[key] for r in local_rows], key
        assert ray_rows[1]["transport_bytes"] > 0  # blocks crossed between the two actors

        # worker 0 (nodes 0..3) exits in the middle of round 2: the others go on
        summary = run(make_cfg(*TINY, "p2p.backend=ray", "p2p.worker_exit.round=2"),
                      tmp_path / "exit")
        rows = _rows(tmp_path / "exit")
        assert summary["rounds_completed"] == 3 and summary["status"] == "completed"
        assert [r["lost_workers"] for r in rows] == [0, 1, 0]
        assert rows[1]["alive"] == 4 and rows[2]["alive"] == 4
        assert set(summary["dropped_nodes"]) >= {0, 1, 2, 3}
    finally:
        ray.shutdown()

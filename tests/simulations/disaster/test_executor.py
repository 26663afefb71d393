"""The Ray executor (one Ray start for the file): same numbers as in-process, no stall."""

import json

import pytest

from simulations.disaster.runner import run
from tests.helpers import make_cfg

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

"""End-to-end P2P runs on the in-process executor (tiny: digits, 8 nodes, a 16-unit MLP)."""

import json

import numpy as np
import pytest

from simulations.disaster.runner import models_after, run
from tests.helpers import make_cfg

TINY = ("scenario=disaster", "p2p.backend=local", "dataset=digits", "model=mlp",
        "model.hidden=[16]", "num_clients=8", "num_rounds=4", "placement.per_node=20",
        "client.batch_size=10", "client.lr=0.05", "p2p.plots=false")


def _cfg(*overrides):
    return make_cfg(*TINY, *overrides)


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_fedplat_results_and_p2p_metrics(tmp_path):
    cfg = _cfg("disruption.events=[{round: 3, type: node_drop, select: top_degree, count: 2}]",
               "p2p.plots=true")
    summary = run(cfg, tmp_path)
    rows = _rows(tmp_path)
    assert summary["status"] == "completed" and summary["rounds_completed"] == 4
    assert summary["strategy"] == "decavg" and summary["num_clients"] == 8
    assert summary["final"]["accuracy"] == rows[-1]["acc_mean"] == rows[-1]["test_accuracy"]
    assert summary["first_disruption_round"] == 3 and len(summary["dropped_nodes"]) == 2
    assert [r["alive"] for r in rows] == [8, 8, 6, 6]
    assert [r["dropped_total"] for r in rows] == [0, 0, 2, 2]
    assert rows[2]["events"][0].startswith("round 3: node_drop 2 node(s)")
    for r in rows:
        assert 0.0 <= r["acc_min"] <= r["acc_mean"] <= r["acc_max"] <= 1.0
        assert r["messages"] == 2 * r["edges"]  # every alive node sends to each neighbour
        assert r["bytes"] == r["messages"] * summary["num_params"] * 4
        assert r["trained"] == r["alive"]
        assert r["consensus_distance"] >= 0.0
        assert sum(c["size"] for c in r["components"]) == r["alive"]
        assert r["giant_size"] == r["components"][0]["size"]
    assert rows[0]["messages_received"] == 0  # round 1: nobody has sent yet
    assert rows[1]["messages_received"] == 2 * rows[1]["edges"]
    for name in ("disruption.png", "topology.png", "accuracy.png", "summary.json",
                 "clients.json"):
        assert (tmp_path / name).is_file()
    data = json.loads((tmp_path / "summary.json").read_text())["data"]
    assert data["loader"] == "fedplat.data.datasets.digits" and data["kind"] == "package"
    assert data["package"].startswith("scikit-learn ")
    # 8 holders x 20 samples of the training pool
    assert data["partition"]["train"]["assigned"] == data["partition"]["clients"]["train"] == 160
    assert data["line"].startswith("digits bundled with scikit-learn (load_digits) (package, ")


def test_relays_never_train_and_an_all_relay_neighbourhood_stays_finite(tmp_path):
    # ring 0-1-...-7; nodes 0, 1, 2 are relays (victims of a connectivity-only drop at the
    # last round), so relay 1 sees only relays: the data_size zero-data guard must kick in
    cfg = _cfg("topology.type=ring", "strategy.weights=data_size",
               "disruption.events=[{round: 4, type: node_drop, nodes: [0, 1, 2], "
               "victims_hold_data: false}]")
    summary = run(cfg, tmp_path)
    rows = _rows(tmp_path)
    assert summary["relays"] == [0, 1, 2] and summary["holders"] == 5
    assert [r["trained"] for r in rows] == [5, 5, 5, 5]
    assert [r["zero_data_fallbacks"] for r in rows] == [0, 1, 1, 0]  # node 1 from round 2
    assert all(np.isfinite(r["acc_mean"]) and np.isfinite(r["consensus_distance"])
               for r in rows)
    sizes = json.loads((tmp_path / "clients.json").read_text())["sizes"]
    assert sizes == [0, 0, 0, 20, 20, 20, 20, 20]


def test_a_node_dying_mid_round_stalls_nobody(tmp_path):
    cfg = _cfg("topology.type=star", "faults.crash_clients=[0]", "p2p.on_failure=drop")
    summary = run(cfg, tmp_path / "crash")
    rows = _rows(tmp_path / "crash")
    assert summary["rounds_completed"] == 4 and summary["status"] == "completed"
    assert rows[0]["failures_train"] == 1 and rows[0]["alive"] == 7  # died in round 1
    assert rows[1]["present_start"] == 7 and rows[1]["messages_missing"] == 0
    assert rows[1]["n_isolated"] == 7  # the hub is gone; leaves keep learning alone
    assert summary["dropped_nodes"] == [0]
    assert summary["faults"]["failures"] == 1 and summary["faults"]["nodes_lost"] == 1
    # with on_failure=keep the node stays, fails every round and keeps its aggregated model
    run(_cfg("topology.type=star", "faults.crash_clients=[0]"), tmp_path / "keep")
    kept = _rows(tmp_path / "keep")
    assert [r["failures_train"] for r in kept] == [1, 1, 1, 1]
    assert [r["alive"] for r in kept] == [8] * 4


def test_a_worker_lost_mid_round_loses_its_nodes_only(tmp_path):
    cfg = _cfg("p2p.num_workers=2", "p2p.worker_exit.round=2", "p2p.worker_exit.worker=1")
    summary = run(cfg, tmp_path)
    rows = _rows(tmp_path)
    assert summary["rounds_completed"] == 4
    assert [r["lost_workers"] for r in rows] == [0, 1, 0, 0]
    assert [r["alive"] for r in rows] == [8, 4, 4, 4]  # worker 1 owned nodes 4..7
    assert summary["dropped_nodes"] == [4, 5, 6, 7]
    assert summary["faults"] == {"failures": 0, "rejected": 0, "late": 0, "dropped": 0,
                                 "workers_lost": 1, "nodes_lost": 4, "nodes": 8}
    from fedplat.cli import format_summary

    assert "  faults        0 client failures (0 rejected), 0 late, 0 dropped; 1 worker lost, " \
           "4 of 8 nodes lost\n" in format_summary(summary, tmp_path)


def test_snapshot_results_do_not_depend_on_how_nodes_are_spread(tmp_path):
    _, m1 = models_after(_cfg("p2p.num_workers=1"), tmp_path / "a")
    _, m3 = models_after(_cfg("p2p.num_workers=3"), tmp_path / "b")
    assert sorted(m1) == sorted(m3) == list(range(8))
    for v in m1:
        np.testing.assert_array_equal(m1[v], m3[v])
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert [r["acc_mean"] for r in a] == [r["acc_mean"] for r in b]
    # float32 sums over workers associate differently: equal up to rounding
    assert [r["consensus_distance"] for r in a] == pytest.approx(
        [r["consensus_distance"] for r in b], rel=1e-6)


def test_gauss_seidel_runs_end_to_end_on_one_worker(tmp_path):
    summary = run(_cfg("p2p.order=gauss_seidel", "p2p.num_workers=2"), tmp_path)
    assert summary["workers"] == 1 and summary["order"] == "gauss_seidel"
    assert summary["rounds_completed"] == 4


def test_batched_training_equals_the_sequential_path_up_to_rounding(tmp_path):
    _, seq = models_after(_cfg("p2p.batched=false", "client.momentum=0.5",
                               "client.weight_decay=0.001"), tmp_path / "seq")
    _, vec = models_after(_cfg("p2p.batched=true", "client.momentum=0.5",
                               "client.weight_decay=0.001"), tmp_path / "vec")
    for v in seq:
        np.testing.assert_allclose(vec[v], seq[v], rtol=1e-4, atol=1e-5)
    a, b = _rows(tmp_path / "seq"), _rows(tmp_path / "vec")
    assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in b], rel=1e-4)
    assert [r["acc_mean"] for r in a] == pytest.approx([r["acc_mean"] for r in b], abs=0.01)


def test_tiny_networks_and_a_network_that_empties(tmp_path):
    one = run(_cfg("num_clients=1", "topology.type=complete", "num_rounds=2"), tmp_path / "one")
    assert one["rounds_completed"] == 2 and one["final"]["accuracy"] is not None
    two = run(_cfg("num_clients=2", "topology.type=ring", "num_rounds=2"), tmp_path / "two")
    assert _rows(tmp_path / "two")[1]["messages_received"] == 2
    assert two["status"] == "completed"
    gone = run(_cfg("num_rounds=3", "disruption.allow_empty=true",
                    "disruption.events=[{round: 2, type: node_drop, select: random, "
                    "fraction: 1.0}]"), tmp_path / "gone")
    assert gone["status"] == "completed" and gone["rounds_completed"] == 1
    assert gone["reason"] == "no node left at round 2"

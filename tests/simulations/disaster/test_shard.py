"""A shard's round: aggregation as computed by hand, training, failures, exits, consensus."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from fedplat.data import DatasetInfo
from simulations.disaster.shard import (
    Block,
    RoundPlan,
    Shard,
    ShardSetup,
    WorkerExit,
    finite_or_nan,
    initial_vector,
)

INFO = DatasetInfo("digits", (1, 8, 8), 10, "image", 1797)
CLIENT = {"local_epochs": 1, "batch_size": 4, "optimizer": "sgd", "lr": 0.1, "momentum": 0.0,
          "weight_decay": 0.0, "eval_batch_size": 8}


def _settings(order="jacobi", **extra):
    return {"seed": 0, "client": dict(CLIENT), "model": {"name": "mlp", "hidden": [2]},
            "weights": "uniform", "zero_data_fallback": "uniform", "order": order,
            "node_shard": [0, 0, 0], **extra}


def _relay_shard(order="jacobi", **extra):
    """Three relays (no data) on the path 0-1-2 with scalar 'models' x = (3, 6, 12)."""
    setup = ShardSetup(0, [0, 1, 2], np.zeros(3, dtype=np.int64), {}, np.zeros((1, 1, 8, 8)),
                       np.zeros(1), INFO, _settings(order, **extra), None)
    shard = Shard(setup)
    shard.models = {0: torch.tensor([3.0]), 1: torch.tensor([6.0]), 2: torch.tensor([12.0])}
    return shard


def _plan(t, nodes=(0, 1, 2)):
    nbrs = {0: [1], 1: [0, 2], 2: [1]}
    return RoundPlan(t, list(nodes), {v: nbrs[v] for v in nodes}, {0: 1, 1: 2, 2: 1}, {},
                     False)


def _block(t, models):
    nodes = sorted(models)
    return Block(0, t, np.array(nodes, dtype=np.int64),
                 np.array([[models[v]] for v in nodes], dtype=np.float32))


def _values(shard):
    return [float(shard.models[v]) for v in sorted(shard.models)]


def test_live_semantics_differ_from_snapshot_as_computed_by_hand():
    # path 0-1-2 of relays (no training), uniform weights, x = (3, 6, 12)
    snap = _relay_shard("jacobi")
    _, block = snap.step(_plan(1), {})  # round 1: no messages yet
    assert _values(snap) == [3.0, 6.0, 12.0]
    snap.step(_plan(2), {0: block})
    assert _values(snap) == pytest.approx([4.5, 7.0, 9.0])
    live = _relay_shard("gauss_seidel")
    live.step(_plan(1), {})
    # node 0 has nobody's message; node 1 reads node 0's live model (not 2's: unsent);
    # node 2 reads node 1's model of this very round
    assert _values(live) == pytest.approx([3.0, 4.5, 8.25])
    live.step(_plan(2), {})
    assert float(live.models[0]) == pytest.approx((3.0 + 4.5) / 2)
    assert float(live.models[1]) == pytest.approx((3.75 + 4.5 + 8.25) / 3)


@pytest.mark.parametrize(("fallback", "expected"),
                         [("uniform", [4.5, 7.0, 9.0]), ("keep_own", [3.0, 6.0, 12.0])])
def test_data_size_weights_among_relays_use_the_zero_data_fallback(fallback, expected):
    shard = _relay_shard(weights="data_size", zero_data_fallback=fallback)
    report, _ = shard.step(_plan(2), {0: _block(1, {0: 3.0, 1: 6.0, 2: 12.0})})
    assert _values(shard) == pytest.approx(expected)
    assert report.fallbacks == 3 and report.received == 4 and report.missing == 0
    assert report.train_loss == {} and report.sent == [0, 1, 2]  # relays never train


def test_only_last_rounds_messages_count_and_missing_ones_are_counted():
    shard = _relay_shard()
    report, _ = shard.step(_plan(3), {0: _block(1, {0: 30.0, 1: 60.0, 2: 120.0})})  # stale
    assert _values(shard) == [3.0, 6.0, 12.0]
    assert (report.received, report.missing) == (0, 4)
    shard = _relay_shard()
    report, _ = shard.step(_plan(2), {0: _block(1, {0: 30.0})})  # only node 0's message
    assert _values(shard) == pytest.approx([3.0, (6.0 + 30.0) / 2, 12.0])
    assert (report.received, report.missing) == (1, 3)


def test_the_new_block_holds_the_sent_models_and_counts_its_bytes():
    shard = _relay_shard()
    report, block = shard.step(_plan(1, nodes=(0, 2)), {})
    assert report.sent == [0, 2] and block.round == 1 and block.shard_id == 0
    assert block.nodes.tolist() == [0, 2] and block.models.tolist() == [[3.0], [12.0]]
    assert block.nbytes == 2 * 1 * 4  # two float32 models of one parameter


def test_gauss_seidel_needs_every_neighbour_in_the_shard():
    shard = _relay_shard("gauss_seidel")
    plan = RoundPlan(1, [0, 1, 2], {0: [1], 1: [0, 2, 7], 2: [1]}, {0: 1, 1: 3, 2: 1, 7: 1})
    with pytest.raises(RuntimeError, match="gauss_seidel needs every node in one shard"):
        shard.step(plan, {})


def test_an_injected_worker_exit_stops_the_round_at_its_round_only():
    shard = _relay_shard(worker_exit={"round": 2, "worker": 0})
    shard.step(_plan(1), {})
    with pytest.raises(WorkerExit, match=r"worker 0 exited in round 2 \(p2p.worker_exit\)"):
        shard.step(_plan(2), {})


def test_consensus_sums_and_distances_per_label_by_hand():
    shard = _relay_shard()
    labels = {0: 0, 1: 0, 2: 1}
    sums = shard.consensus_sums(labels)
    assert {k: (c, s.tolist()) for k, (c, s) in sums.items()} == {0: (2, [9.0]), 1: (1, [12.0])}
    assert all(s.dtype == np.float64 for _, s in sums.values())
    dist = shard.consensus_distances(labels, {0: np.array([4.5]), 1: np.array([12.0])})
    assert dist == {0: pytest.approx(3.0), 1: 0.0}  # |3-4.5| + |6-4.5|; alone at its mean


# -- shards that hold data: training, failures, evaluation ----------------------------------


def _holders(batched=False, init=None, **extra):
    """Two data holders (6 random samples each), no links; a 2-unit MLP."""
    gen = np.random.default_rng(0)
    data = {v: (gen.standard_normal((6, 1, 8, 8)).astype(np.float32),
                gen.integers(0, 10, 6)) for v in (0, 1)}
    settings = _settings(batched=batched, node_shard=[0, 0], **extra)
    setup = ShardSetup(0, [0, 1], np.array([6, 6]), data,
                       gen.standard_normal((5, 1, 8, 8)).astype(np.float32),
                       gen.integers(0, 10, 5), INFO, settings, init)
    return Shard(setup)


def _alone(t, nodes=(0, 1), evaluate=False):
    return RoundPlan(t, list(nodes), {v: [] for v in nodes}, {v: 0 for v in nodes}, {},
                     evaluate)


def test_each_node_gets_its_own_seeded_initial_model_unless_one_is_common():
    a, b = _holders(), _holders()
    assert not torch.equal(a.models[0], a.models[1])
    assert torch.equal(a.models[0], b.models[0]) and torch.equal(a.models[1], b.models[1])
    common = initial_vector(a.model)
    shared = _holders(init=common)
    assert torch.equal(shared.models[0], shared.models[1])
    assert shared.models[0].numpy().tolist() == common.tolist()


@pytest.mark.parametrize("batched", [False, True])
def test_training_is_seeded_and_evaluation_reports_every_sent_node(batched):
    a, b = _holders(batched), _holders(batched)
    before = {v: a.models[v].clone() for v in (0, 1)}
    ra, _ = a.step(_alone(1, evaluate=True), {})
    rb, _ = b.step(_alone(1, evaluate=True), {})
    assert sorted(ra.train_loss) == [0, 1] and all(math.isfinite(x)
                                                    for x in ra.train_loss.values())
    for v in (0, 1):
        assert not torch.equal(a.models[v], before[v])  # trained
        assert torch.equal(a.models[v], b.models[v])  # same seeded batches
    assert ra.train_loss == rb.train_loss
    assert sorted(ra.accuracy) == [0, 1]
    for acc in ra.accuracy.values():  # a share of the 5 test samples
        assert 0.0 <= acc <= 1.0 and 5 * acc == pytest.approx(round(5 * acc))
    assert all(math.isfinite(x) and x > 0 for x in ra.loss.values())


@pytest.mark.parametrize("batched", [False, True])
def test_a_failing_node_keeps_its_model_then_gives_up_after_max_missed_rounds(batched):
    shard = _holders(batched, crash_clients=[1], on_failure="drop", max_missed_rounds=2)
    before = shard.models[1].clone()
    r1, _ = shard.step(_alone(1), {})
    assert r1.failed == {1: "RuntimeError: injected training failure (faults) of node 1"}
    assert r1.died == [] and r1.sent == [0, 1] and sorted(r1.train_loss) == [0]
    assert torch.equal(shard.models[1], before)  # its post-aggregation model (alone: itself)
    r2, _ = shard.step(_alone(2), {})
    assert r2.died == [1] and r2.sent == [0]
    r3, block = shard.step(_alone(3), {})
    assert r3.failed == {} and r3.sent == [0] and block.nodes.tolist() == [0]
    assert sorted(shard.get_models()) == [0]


def test_with_on_failure_keep_a_failing_node_stays():
    shard = _holders(crash_clients=[1], on_failure="keep", max_missed_rounds=1)
    for t in (1, 2, 3):
        report, _ = shard.step(_alone(t), {})
        assert sorted(report.failed) == [1] and report.died == [] and report.sent == [0, 1]


def test_initial_vector_flattens_parameters_and_refuses_buffers():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    vec = initial_vector(model)
    assert vec.dtype == np.float32 and vec.shape == (3 * 2 + 2 + 2 * 1 + 1,)
    assert vec[:6].tolist() == model[0].weight.detach().reshape(-1).tolist()
    with pytest.raises(ValueError, match="models with buffers"):
        initial_vector(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))


def test_finite_or_nan():
    assert finite_or_nan(0.25) == 0.25
    assert math.isnan(finite_or_nan(math.inf)) and math.isnan(finite_or_nan(-math.inf))
    assert math.isnan(finite_or_nan(math.nan))

"""FED-PUB server: similarity, normalisation, personalised aggregation, Q2/Q3, errors, runs."""

import json
import math

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from fedplat.core.records import from_record, to_record
from fedplat.errors import UserError
from strategies.fedpub import (
    FedPub,
    aggregation_weights,
    community_recovery,
    cosine_similarity,
    personalized_models,
)
from tests.helpers import make_cfg, run_inline

pytest.importorskip("pymetis")

SBM = ("dataset=sbm", "dataset.nodes_per_block=60", "partition=metis_disjoint", "num_clients=8",
       "client=graph", "strategy=fedpub", "model=masked_gcn", "model.hidden=[16,16]",
       "simulation.torch_threads=1")


def test_cosine_similarity_by_hand():
    s = cosine_similarity(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    assert s[0, 1] == pytest.approx(1 / math.sqrt(2)) and s[1, 0] == s[0, 1]
    assert np.allclose(np.diag(s), 1.0)
    assert s[0, 2] == 0.0  # a zero embedding is similar to nothing


def test_cosine_similarity_agrees_with_sklearn_but_for_a_zero_rows_diagonal():
    from sklearn.metrics.pairwise import cosine_similarity as sklearn_cosine

    e = np.random.default_rng(0).normal(size=(20, 64))
    e[1] = 0.0
    want = sklearn_cosine(e)
    assert want[1, 1] == 0.0  # sklearn: a zero row is similar to nothing, itself included
    np.fill_diagonal(want, 1.0)
    np.testing.assert_allclose(cosine_similarity(e), want, rtol=0, atol=1e-15)


def test_exp_weights_are_a_row_softmax_of_tau_s():
    s = np.array([[1.0, 0.5], [0.5, 1.0]])
    a = aggregation_weights(s, tau=2.0)
    e1, e2 = math.exp(2.0), math.exp(1.0)
    assert a[0].tolist() == pytest.approx([e1 / (e1 + e2), e2 / (e1 + e2)])
    assert np.allclose(a.sum(axis=1), 1.0)
    assert np.allclose(aggregation_weights(s, tau=1e-9), 0.5)  # tau -> 0: uniform
    assert np.allclose(aggregation_weights(np.ones((3, 3)), tau=10.0), 1 / 3)  # identical


def test_cosine_normalisation_and_its_guard():
    s = np.array([[1.0, 0.5, -0.5], [0.5, 1.0, 0.0], [-0.5, -0.9, 1.0]])
    a = aggregation_weights(s, tau=1.0, agg_norm="cosine")
    assert a[0].tolist() == pytest.approx([1.0, 0.5, -0.5])  # row sum 1
    assert a[1].tolist() == pytest.approx([0.5 / 1.5, 1 / 1.5, 0.0])
    assert a[2].tolist() == [0.0, 0.0, 1.0]  # row sum <= 0: keep the own model


def test_two_orthogonal_groups_with_large_tau_average_within_groups():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    a = aggregation_weights(cosine_similarity(emb), tau=100.0)
    states = [{"w": torch.tensor([float(v)])} for v in (1.0, 3.0, 10.0, 30.0)]
    out = personalized_models(states, a)
    assert [float(o["w"]) for o in out] == pytest.approx([2.0, 2.0, 20.0, 20.0], abs=1e-3)


def test_personalised_aggregation_is_linear():
    rng = np.random.default_rng(0)
    a = aggregation_weights(rng.uniform(-1, 1, (4, 4)), tau=3.0)
    states = [{"w": torch.full((2, 2), float(c)), "b": torch.tensor([float(-c)])}
              for c in (1, 2, 5, 7)]
    out = personalized_models(states, a)
    for i in range(4):
        want = float(a[i] @ np.array([1, 2, 5, 7]))
        assert torch.allclose(out[i]["w"], torch.full((2, 2), want))
        assert float(out[i]["b"]) == pytest.approx(-want, rel=1e-6)


def test_community_recovery_scores():
    s = np.array([[1, .9, .1, .2], [.9, 1, .2, .1], [.1, .2, 1, .8], [.2, .1, .8, 1]])
    r = community_recovery(s, [0, 0, 1, 1])
    assert r["within"] == pytest.approx(0.85) and r["across"] == pytest.approx(0.15)
    assert r["top1"] == 1.0 and r["ari"] == pytest.approx(1.0)
    wrong = community_recovery(s, [0, 1, 0, 1])
    assert wrong["top1"] == 0.0 and wrong["ari"] < 0.5


@pytest.mark.parametrize(("overrides", "message"), [
    (["strategy.tau=0"], "strategy.tau=0.0 must be > 0"),
    (["strategy.tau=-2"], "strategy.tau=-2.0 must be > 0"),
    (["strategy.agg_norm=max"], "strategy.agg_norm='max' is not valid"),
    (["model=gcn"], "strategy fedpub needs model=masked_gcn, not 'gcn'"),
])
def test_bad_fedpub_config_is_one_line(overrides, message):
    with pytest.raises(UserError) as info:
        make_cfg(*SBM, *overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_fedpub_needs_a_graph_dataset():
    with pytest.raises(UserError, match="strategy fedpub needs a graph dataset, not 'mnist1d'"):
        make_cfg("strategy=fedpub", "model=mlp")


def _reply(cid, value, n, emb, masks=False):
    arrays = {"conv1.lin.weight": torch.full((2, 2), float(value)),
              "conv1.bias": torch.full((2,), float(value))}
    if masks:
        arrays["conv1.mask"] = torch.full((2, 2), float(value))
    return RecordDict({"arrays": to_record(arrays),
                       "embedding": ArrayRecord({"embedding": torch.tensor(emb)}),
                       "metrics": MetricRecord({"num-examples": n})})


def _strategy(*overrides):
    s = FedPub(make_cfg(*SBM, *overrides))
    s.setup({})
    return s


@pytest.mark.parametrize("as_released", [False, True])
def test_global_average_weights_q2_and_masks_q3(as_released):
    s = _strategy(f"strategy.as_released={str(as_released).lower()}")
    assert any("mask" in k for k in s.global_state) == as_released  # Q3: masks only if released
    payload = s.configure_train(1, [0, 1])[0]
    assert any("mask" in k for k in from_record(payload["arrays"])) == as_released
    replies = {0: _reply(0, 1.0, 1, [1.0, 0.0], as_released),
               1: _reply(1, 4.0, 3, [0.0, 1.0], as_released)}
    row = s.aggregate_train(1, replies, {})
    w = float(s.global_state["conv1.bias"][0])
    assert w == pytest.approx(2.5 if as_released else (1 * 1 + 4 * 3) / 4)  # Q2
    assert row["similarity"] == [[1.0, 0.0], [0.0, 1.0]]
    # personalised model of client 0 = softmax(tau * S) row 0
    a = aggregation_weights(np.eye(2), 10.0)
    want = a[0, 0] * 1.0 + a[0, 1] * 4.0
    sent = from_record(s.configure_train(2, [0])[0]["arrays"])
    assert float(sent["conv1.bias"][0]) == pytest.approx(want, rel=1e-5)


def test_a_client_without_reply_keeps_its_personalised_model():
    s = _strategy()
    s.aggregate_train(1, {0: _reply(0, 1.0, 1, [1.0, 0.0]), 1: _reply(1, 3.0, 1, [1.0, 0.1]),
                          2: _reply(2, 9.0, 1, [0.0, 1.0])}, {})
    before = {c: {k: v.clone() for k, v in s.personal[c].items()} for c in (0, 1, 2)}
    row = s.aggregate_train(2, {0: _reply(0, 5.0, 1, [1.0, 0.0]),
                                2: _reply(2, 6.0, 1, [0.0, 1.0])}, {1: "crashed"})
    assert torch.equal(s.personal[1]["conv1.bias"], before[1]["conv1.bias"])
    assert not torch.equal(s.personal[0]["conv1.bias"], before[0]["conv1.bias"])
    assert row["similarity_clients"] == [0, 2] and len(row["similarity"]) == 2


def test_fedpub_run_on_sbm_logs_similarity_sparsity_and_writes_artifacts(tmp_path):
    summary, rows = run_inline(tmp_path, *SBM, "num_rounds=4", "strategy.tau=5")
    assert summary["status"] == "completed" and len(rows) == 4
    for row in rows:
        s = np.array(row["similarity"])
        assert s.shape == (8, 8) and np.allclose(np.diag(s), 1.0)
        assert 0.0 <= row["mask_sparsity_mean"] <= 1.0
        assert "num_evaluate_clients" not in row and 0 <= row["test_accuracy_mean"] <= 1
        # default mode: no mask crosses the network (bytes up = weights and biases only)
    assert (tmp_path / "similarity.png").is_file()
    hist = json.loads((tmp_path / "similarity.json").read_text())
    assert len(hist["rounds"]) == 4 and len(hist["rounds"][-1]["weights"]) == 8
    rec = json.loads((tmp_path / "community_recovery.json").read_text())
    assert rec["within"] > rec["across"]  # the planted communities show in S
    assert summary["strategy_summary"]["community_recovery"]["within"] == rec["within"]
    assert summary["best_mean"]["criterion"] == "val_accuracy_mean"


def test_masks_cost_bandwidth_only_as_released(tmp_path):
    _, paper = run_inline(tmp_path / "p", *SBM, "num_rounds=1")
    _, released = run_inline(tmp_path / "r", *SBM, "num_rounds=1", "strategy.as_released=true")
    assert released[0]["bytes_up_train"] > 1.8 * paper[0]["bytes_up_train"]


@pytest.mark.ray
def test_fedpub_on_ray_equals_inline(tmp_path):
    """Masks and Adam state live in Context.state on Ray too: 2 rounds, identical numbers."""
    from simulations.centralized import run

    args = (*SBM, "num_rounds=2", "num_clients=4")
    _, inline_rows = run_inline(tmp_path / "inline", *args)
    run(make_cfg(*args, "simulation.backend=ray", "simulation.num_cpus=1"), tmp_path / "ray")
    ray_rows = [json.loads(x) for x in (tmp_path / "ray" / "metrics.jsonl").read_text().split(
        "\n") if x]
    for a, b in zip(inline_rows, ray_rows, strict=True):
        assert a["similarity"] == b["similarity"]
        assert a["test_accuracy_mean"] == b["test_accuracy_mean"]

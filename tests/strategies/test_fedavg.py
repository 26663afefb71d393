"""FedAvg: the update by hand, one shared payload, (un)weighted averaging, graph runs."""

import pytest
import torch
from flwr.app import MetricRecord, RecordDict

from fedplat.core.records import from_record, to_record
from fedplat.core.strategy import ClientInfo
from strategies.fedavg import FedAvg, fedavg_update
from tests.helpers import check_graph_baseline_run, make_cfg


def test_fedavg_update_hand_computed():
    g = {"w": torch.tensor([0.0, 0.0])}
    clients = {0: {"w": torch.tensor([1.0, 2.0])}, 1: {"w": torch.tensor([3.0, 6.0])}}
    full = fedavg_update(g, clients, {0: 100, 1: 300})
    assert torch.allclose(full["w"], torch.tensor([2.5, 5.0]))  # weighted by samples
    half = fedavg_update(g, clients, {0: 100, 1: 300}, server_lr=0.5)
    assert torch.allclose(half["w"], torch.tensor([1.25, 2.5]))


def _strategy(n=3, *overrides):
    s = FedAvg(make_cfg(f"num_clients={n}", *overrides))
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(n)})
    return s


def test_strategy_sends_one_shared_global_record_and_aggregates():
    s = _strategy()
    payloads = s.configure_train(1, [0, 1, 2])
    assert payloads[0] is payloads[2]  # no per-client copies of the global model
    sent = from_record(payloads[0]["arrays"])
    assert all(torch.equal(sent[k], v) for k, v in s.global_state.items())
    replies = {}
    for cid, scale in ((0, 1.0), (2, 3.0)):  # client 1 failed
        state = {k: v + scale for k, v in sent.items()}
        replies[cid] = RecordDict({"arrays": to_record(state),
                                   "metrics": MetricRecord({"num-examples": 10})})
    metrics = s.aggregate_train(1, replies, {1: "crash"})
    for k, v in sent.items():
        assert torch.allclose(s.global_state[k], v + 2.0)
    assert metrics["update_norm"] == pytest.approx(2.0 * sum(v.numel() for v in sent.values())
                                                   ** 0.5, rel=1e-5)


def test_server_lr_must_be_positive():
    from fedplat.errors import UserError

    with pytest.raises(UserError, match=r"strategy\.server_lr=0"):
        make_cfg("strategy.server_lr=0")


def test_unweighted_option_averages_clients_equally():
    s = _strategy(3, "strategy.weighted=false")
    sent = from_record(s.configure_train(1, [0, 1])[0]["arrays"])
    replies = {cid: RecordDict({"arrays": to_record({k: v + shift for k, v in sent.items()}),
                                "metrics": MetricRecord({"num-examples": n})})
               for cid, shift, n in ((0, 0.0, 1), (1, 4.0, 3))}
    s.aggregate_train(1, replies, {})
    for k, v in sent.items():
        assert torch.allclose(s.global_state[k], v + 2.0)  # weighted would give v + 3.0


def test_graph_run_with_metrics_sent_after_local_training(tmp_path):
    pytest.importorskip("pymetis")
    check_graph_baseline_run(tmp_path, "fedavg")

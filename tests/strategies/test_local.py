"""Local: the server schedules but sends and keeps nothing, so the clients stay apart."""

import pytest
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from fedplat.core.strategy import ClientInfo
from fedplat.transport.wire import payload_bytes
from strategies.local import Local
from tests.helpers import check_graph_baseline_run, make_cfg


def _strategy(n=4):
    s = Local(make_cfg("strategy=local", f"num_clients={n}"))
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(n)})
    return s


def test_payloads_are_empty_and_one_per_sampled_client():
    s = _strategy()
    sent = s.configure_train(1, [0, 2, 3])
    assert list(sent) == [0, 2, 3]
    assert all(len(rd) == 0 and payload_bytes(rd) == 0 for rd in sent.values())
    assert all(len(rd) == 0 for rd in s.configure_evaluate(1, [1]).values())


def test_replies_change_nothing_on_the_server():
    s = _strategy()
    reply = RecordDict({"arrays": ArrayRecord({"w": torch.ones(3)}),
                        "metrics": MetricRecord({"num-examples": 5})})
    assert s.aggregate_train(1, {0: reply, 1: reply}, {2: "crash"}) == {}
    assert s.state_dict() == {}  # no model, no per-client table: nothing to checkpoint


def test_sampling_is_the_base_strategys():
    s = _strategy(10)
    assert s.sample_train(1) == list(range(10))  # conf/strategy/local.yaml: every client


def test_graph_run_with_metrics_sent_after_local_training(tmp_path):
    pytest.importorskip("pymetis")
    check_graph_baseline_run(tmp_path, "local")

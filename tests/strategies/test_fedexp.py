"""FedExP's global rate by hand, and its reference model (the current global model, P6)."""


import pytest
import torch
from flwr.app import MetricRecord, RecordDict

from fedplat.core.records import from_record, to_record
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from strategies.fedexp import FedExP, fedexp_rate
from tests.helpers import check_rate_logging_run, make_cfg


def test_fedexp_rate_hand_computed():
    w = {0: 0.5, 1: 0.5}
    same = {0: torch.tensor([1.0, 0.0]), 1: torch.tensor([1.0, 0.0])}
    assert fedexp_rate(same, w, torch.tensor([1.0, 0.0]), 0.0) == 1.0  # ratio 1/2 -> floor 1
    apart = {0: torch.tensor([1.0, 0.0]), 1: torch.tensor([-1.0, 0.2])}
    avg = torch.tensor([0.0, 0.1])
    # mean ||Delta_i||^2 = (1 + 1.04) / 2 = 1.02; ||Delta||^2 = 0.01
    assert fedexp_rate(apart, w, avg, 0.0) == pytest.approx(1.02 / 0.02)
    assert fedexp_rate(apart, w, avg, 0.001) == pytest.approx(1.02 / 0.022)
    assert fedexp_rate({0: torch.zeros(2)}, {0: 1.0}, torch.zeros(2), 0.0) == 1.0


def _reply(state):
    return RecordDict({"arrays": to_record(state), "metrics": MetricRecord({"num-examples": 5})})


def test_reference_is_the_current_global_model():
    s = FedExP(make_cfg("strategy=fedexp", "num_clients=2", "model=mlp", "model.hidden=[]",
                        "strategy.eps=0.001"))
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(2)})
    d = sum(v.numel() for v in s.global_state.values())
    sent = from_record(s.configure_train(1, [0])[0]["arrays"])
    m1 = s.aggregate_train(1, {0: _reply({k: v + 0.5 for k, v in sent.items()})}, {})
    assert m1["lr_global"] == 1.0
    x1 = s.vector(s.global_state).clone()
    sent = from_record(s.configure_train(2, [0, 1])[0]["arrays"])
    replies = {0: _reply({k: v + 0.01 for k, v in sent.items()}),
               1: _reply({k: v - 0.01 for k, v in sent.items()})}
    m2 = s.aggregate_train(2, replies, {})
    # against x_1: mean ||Delta_i||^2 = 1e-4 d, Delta = 0 -> 1e-4 d / (2 * 0.001); a stale x_0
    # reference (the released code's bug) would add ||x_1 - x_0||^2 = 0.25 d to the spread
    assert m2["lr_global"] == pytest.approx(1e-4 * d / 0.002, rel=1e-4)
    assert torch.allclose(s.vector(s.global_state), x1, atol=1e-6)


def test_eps_must_be_non_negative():
    with pytest.raises(UserError, match=r"strategy\.eps=-1"):
        make_cfg("strategy=fedexp", "strategy.eps=-1")


def test_runs_and_logs_rates(tmp_path):
    check_rate_logging_run(tmp_path, "fedexp")

"""Exponential decay of the global (Decay-G) or local (Decay-SL) rate."""


import pytest
import torch
from flwr.app import MetricRecord, RecordDict

from fedplat.core.records import from_record, to_record
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from strategies.decay import Decay, decayed
from tests.helpers import check_rate_logging_run, make_cfg


def test_decayed():
    assert decayed(2.0, 0.5, 1) == 2.0
    assert decayed(2.0, 0.5, 3) == 0.5


def _strategy(name, *overrides):
    s = Decay(make_cfg(f"strategy={name}", "num_clients=2", "model=mlp", "model.hidden=[]",
                       "client.lr=0.04", *overrides))
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(2)})
    return s


def _round(s, server_round):
    payload = s.configure_train(server_round, [0])[0]
    sent = from_record(payload["arrays"])
    reply = RecordDict({"arrays": to_record({k: v + 0.1 for k, v in sent.items()}),
                        "metrics": MetricRecord({"num-examples": 5})})
    return payload["config"]["lr"], s.aggregate_train(server_round, {0: reply}, {})


def test_decay_g_and_sl():
    g = _strategy("decay_g", "strategy.eta_g0=2.0", "strategy.gamma=0.5")
    x0 = g.vector(g.global_state).clone()
    rates = []
    for server_round in (1, 2, 3):
        lr, m = _round(g, server_round)
        assert lr == 0.04
        rates.append(m["lr_global"])
    assert rates == [2.0, 1.0, 0.5]
    assert torch.allclose(g.vector(g.global_state), x0 + 0.1 * 3.5, atol=1e-6)
    sl = _strategy("decay_sl", "strategy.gamma=0.5")
    sent = [(_round(sl, server_round)) for server_round in (1, 2, 3)]
    assert [lr for lr, _ in sent] == pytest.approx([0.04, 0.02, 0.01])
    assert all(m["lr_global"] == 1.0 for _, m in sent)


def test_gamma_range():
    with pytest.raises(UserError, match=r"strategy\.gamma=1\.5 is out of range"):
        make_cfg("strategy=decay_g", "strategy.gamma=1.5")


def test_runs_and_logs_rates(tmp_path):
    check_rate_logging_run(tmp_path, "decay_sl")

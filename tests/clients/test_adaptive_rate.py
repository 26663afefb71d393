"""FedHyper-CL on the client: the per-step rule by hand, then the client's training round."""

import math

import pytest
import torch
from flwr.app import ConfigRecord, RecordDict

import clients.adaptive_rate as fh
from clients.adaptive_rate import (
    AdaptiveRateClient,
    CLController,
    CLParams,
    cl_gamma,
    cl_multiplier,
)
from clients.fedavg import FedAvgClient
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.core.strategy import Strategy
from fedplat.data import load_federated
from tests.helpers import make_cfg


def test_cl_gamma_hand_computed():
    # x = 0.1 * 2 / 10 = 0.02, y = 0.05
    assert cl_gamma(2.0, 0.05, 10, 0.1, 1.1) == pytest.approx(1.07)
    assert cl_gamma(0.0, 0.5, 10, 0.1, 1.1) == 1.1  # capped at +10% per step
    assert cl_gamma(0.0, -3.0, 10, 0.1, 1.1) == pytest.approx(-2.0)  # no lower cap (P12)
    assert cl_gamma(0.0, 0.0, 10, 0.1, 1.1) == 1.0
    assert cl_gamma(2.0, -0.05, 10, 0.1, 1.1, hyper_lr=2.0) == pytest.approx(0.94)  # 1 + 2(-0.03)
    assert cl_gamma(math.nan, 0.0, 10, 0.1, 1.1) is None
    assert cl_gamma(0.0, math.inf, 10, 0.1, 1.1) is None


def test_cl_multiplier_bounds():
    assert cl_multiplier(1.0, 1.07, 0.1, 10) == (pytest.approx(1.07), 0, 0)
    assert cl_multiplier(0.5, -2.0, 0.1, 10) == (0.1, 1, 0)  # negative gamma: straight to floor
    assert cl_multiplier(9.5, 1.1, 0.1, 10) == (10.0, 0, 1)


def test_controller_sequence_by_hand():
    ctrl = CLController(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), num_sampled=2,
                        params=CLParams())
    # first batch of the epoch: step only, p stays Delta_{t-1} (P9)
    assert ctrl.observe(torch.tensor([0.1, 0.0]), first_of_epoch=True) == 1.0
    # s = [0.2, 0.1]: x = 0.1 * 0.2 / 2 = 0.01, y = <s, Delta_{t-1}> = 0.2 -> 1.21 -> cap 1.1
    assert ctrl.observe(torch.tensor([0.3, 0.1]), False) == pytest.approx(1.1)
    # s = [0, -0.1]: x = 0, y = <s, [0.2, 0.1]> = -0.01 -> mu = 1.1 * 0.99
    assert ctrl.observe(torch.tensor([0.3, 0.0]), False) == pytest.approx(1.089)
    # first batch of the next epoch: no update, p unchanged
    assert ctrl.observe(torch.tensor([0.5, 0.0]), True) == pytest.approx(1.089)
    # s = [0, 2]: y = <[0, 2], [0, -0.1]> = -0.2 -> mu = 1.089 * 0.8
    assert ctrl.observe(torch.tensor([0.5, 2.0]), False) == pytest.approx(0.8712)
    # s = [0, -22]: y = -44 -> gamma = -43 -> floor 0.1
    assert ctrl.observe(torch.tensor([0.5, -20.0]), False) == pytest.approx(0.1)
    assert (ctrl.updates, ctrl.floor_hits, ctrl.ceil_hits) == (4, 1, 0)
    assert (ctrl.mu_min, ctrl.mu_max) == (pytest.approx(0.1), pytest.approx(1.1))


def test_controller_round_one_zero_global_update_gives_gamma_one():
    ctrl = CLController(torch.zeros(3), torch.zeros(3), 10, CLParams())
    ctrl.observe(torch.tensor([1.0, 2.0, 3.0]), True)
    assert ctrl.observe(torch.tensor([2.0, 0.0, 1.0]), False) == 1.0  # x = 0, y = <s, 0> = 0


def test_controller_skips_non_finite():
    ctrl = CLController(torch.zeros(2), torch.ones(2), 10, CLParams())
    ctrl.observe(torch.tensor([0.1, 0.1]), True)
    assert ctrl.observe(torch.tensor([math.inf, 0.0]), False) == 1.0
    assert ctrl.nonfinite == 1 and ctrl.updates == 0
    assert torch.equal(ctrl.prev, torch.ones(2))  # p not poisoned


# -- the client --------------------------------------------------------------------------------


def _setup(*overrides):
    cfg = make_cfg("strategy=fedhyper", "strategy.variant=G+CL", "num_clients=20",
                   "model=mlp", "model.hidden=[8]", "client.local_epochs=2",
                   "client.batch_size=64", *overrides)
    data = load_federated(cfg).client(0)
    model = Strategy(cfg).initial_model()
    return cfg, data, model


def _payload(model, lr, cl, prev_scale=0.0):
    content = RecordDict({"arrays": to_record(model.state_dict()),
                          "config": ConfigRecord({"lr": lr, "num_sampled": 2, "cl": cl})})
    if cl:
        content["prev_delta"] = to_record({n: torch.full_like(p, prev_scale)
                                           for n, p in model.named_parameters()})
    return content


def _fit(cls, cfg, data, payload, store=None, server_round=1):
    client = cls(0, data, cfg, torch.device("cpu"))
    state = ClientState(store if store is not None else RecordDict(), 0)
    return client.train(payload, state, server_round)


def test_without_cl_it_trains_exactly_like_fedavg():
    cfg, data, model = _setup()
    ours = _fit(AdaptiveRateClient, cfg, data, _payload(model, 0.05, cl=False))
    ref = _fit(FedAvgClient, cfg, data, _payload(model, 0.05, cl=False))
    a, b = from_record(ours["arrays"]), from_record(ref["arrays"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    m = metrics_of(ours)
    assert m["lr_final"] == m["lr_initial"] == 0.05 and "cl_updates" not in m


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cl_counts_steps_and_stays_in_bounds(optimizer):
    cfg, data, model = _setup(f"client.optimizer={optimizer}", "client.momentum=0.5")
    batches = math.ceil(data.num_train / 64)
    m = metrics_of(_fit(AdaptiveRateClient, cfg, data,
                        _payload(model, 0.01, cl=True, prev_scale=1)))
    assert m["cl_updates"] + m["cl_nonfinite"] == 2 * (batches - 1)  # first batch per epoch skips
    assert 0.001 - 1e-12 <= m["lr_min"] <= m["lr_final"] <= m["lr_max"] <= 0.1 + 1e-12
    assert m["lr_initial"] == 0.01


def test_neutral_cl_leaves_training_unchanged_and_the_rate_reaches_the_optimizer(monkeypatch):
    cfg, data, model = _setup("client.local_epochs=3", "client.batch_size=16")
    plain = from_record(_fit(AdaptiveRateClient, cfg, data, _payload(model, 0.05, False))["arrays"])
    monkeypatch.setattr(fh, "cl_gamma", lambda *a: 1.0)
    same = _fit(AdaptiveRateClient, cfg, data, _payload(model, 0.05, True))
    assert all(torch.equal(plain[k], v) for k, v in from_record(same["arrays"]).items())
    monkeypatch.setattr(fh, "cl_gamma", lambda *a: 0.5)
    low = _fit(AdaptiveRateClient, cfg, data, _payload(model, 0.05, True))
    m = metrics_of(low)
    assert m["lr_final"] == pytest.approx(0.005) and m["cl_floor_hits"] > 0
    assert not all(torch.equal(plain[k], v) for k, v in from_record(low["arrays"]).items())


def test_multiplier_resets_each_round_unless_persisted(monkeypatch):
    monkeypatch.setattr(fh, "cl_gamma", lambda *a: 1.001)
    for persist in (False, True):
        cfg, data, model = _setup("client.batch_size=16",
                                  f"strategy.cl.persist={str(persist).lower()}")
        store = RecordDict()
        r1 = metrics_of(_fit(AdaptiveRateClient, cfg, data, _payload(model, 0.01, True), store, 1))
        r2 = metrics_of(_fit(AdaptiveRateClient, cfg, data, _payload(model, 0.01, True), store, 2))
        if persist:
            assert r2["lr_final"] > r1["lr_final"]
            assert ClientState(store, 0).get_values("cl")["mu"] == pytest.approx(
                r2["lr_final"] / 0.01)
        else:
            assert r2["lr_final"] == pytest.approx(r1["lr_final"])
            assert "cl" not in ClientState(store, 0)

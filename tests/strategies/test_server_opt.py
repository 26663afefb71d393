"""`ServerOpt`, the shared server half of FedHyper and its baselines: the average it forms, what
it sends, how it survives bad replies and steps, and the rates it logs."""

import math

import pytest
import torch
from flwr.app import MetricRecord, RecordDict
from torch import nn

from fedplat.core.records import from_record, to_record
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from strategies.server_opt import (
    RoundInput,
    ServerOpt,
    check_bool,
    check_bounds,
    client_rate_stats,
    plot_rates,
)
from tests.helpers import make_cfg

N = 4


class Scaled(ServerOpt):
    """x_{t+1} = x_t + scale * Delta_t; records what it was given."""

    scale = 2.0

    def server_step(self, inp: RoundInput) -> tuple[torch.Tensor, dict[str, float]]:
        self.seen = inp
        self.global_rate = self.scale
        return self.scale * inp.delta, {"scale": self.scale}


class NanStep(Scaled):
    def server_step(self, inp: RoundInput) -> tuple[torch.Tensor, dict[str, float]]:
        return torch.full_like(inp.delta, math.nan), {}


class WithPrevDelta(Scaled):
    sends_prev_delta = True


def _strategy(*overrides, cls=Scaled, model=None):
    s = cls(make_cfg("strategy=fedadagrad", f"num_clients={N}", "model=mlp", "model.hidden=[]",
                     "client.lr=0.05", *overrides))
    if model is not None:
        s.initial_model = lambda: model
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(N)})
    return s


def _reply(state, n=10, **metrics):
    return RecordDict({"arrays": to_record(state),
                       "metrics": MetricRecord({"num-examples": n, **metrics})})


def _round(s, server_round, shifts, n=None):
    """Every client c returns the global model + shifts[c] on every entry."""
    payloads = s.configure_train(server_round, sorted(shifts))
    sent = from_record(next(iter(payloads.values()))["arrays"])
    replies = {c: _reply({k: v + shift for k, v in sent.items()}, (n or {}).get(c, 10))
               for c, shift in shifts.items()}
    return payloads, s.aggregate_train(server_round, replies, {})


def test_vector_and_unflatten_are_inverse_over_the_trainable_parameters():
    s = _strategy()
    assert s.trainable == ["net.1.weight", "net.1.bias"]  # Linear(40, 10)
    vec = s.vector(s.global_state)
    assert vec.shape == (410,) and vec.dtype == torch.float32
    back = s.unflatten(vec)
    assert all(torch.equal(back[k], s.global_state[k]) for k in s.trainable)
    assert back["net.1.weight"].shape == (10, 40)


def test_one_shared_payload_with_the_rate_and_the_cohort_size():
    s = _strategy()
    payloads = s.configure_train(1, [0, 2, 3])
    assert payloads[0] is payloads[3] and set(payloads[0].keys()) == {"arrays", "config"}
    config = payloads[0]["config"]
    assert (config["lr"], config["num_sampled"], config["cl"]) == (0.05, 3, False)
    sent = from_record(payloads[0]["arrays"])
    assert all(torch.equal(sent[k], v) for k, v in s.global_state.items())
    evaluate = s.configure_evaluate(1, [1])[1]
    assert set(evaluate.keys()) == {"arrays"}


def test_the_previous_raw_update_is_sent_when_asked():
    s = _strategy(cls=WithPrevDelta)
    first = s.configure_train(1, [0])[0]
    assert first["config"]["cl"] is True
    assert all(float(v.abs().sum()) == 0 for v in from_record(first["prev_delta"]).values())
    s.aggregate_train(1, {0: _reply({k: v + 0.01 for k, v in
                                     from_record(first["arrays"]).items()})}, {})
    prev = from_record(s.configure_train(2, [0])[0]["prev_delta"])
    assert set(prev) == set(s.trainable)
    # the raw Delta_1 (0.01 everywhere), not the scaled step (0.02)
    assert all(torch.allclose(v, torch.full_like(v, 0.01)) for v in prev.values())


def test_step_on_the_raw_average_and_round_metrics():
    s = _strategy()
    x0 = s.vector(s.global_state).clone()
    _, m = _round(s, 1, {0: 0.0, 1: 0.02})
    assert torch.allclose(s.seen.delta, torch.full_like(x0, 0.01))
    assert set(s.seen.client_deltas) == {0, 1} and s.seen.weights == {0: 0.5, 1: 0.5}
    assert torch.allclose(s.vector(s.global_state), x0 + 0.02)
    assert torch.allclose(s.prev_delta, torch.full_like(x0, 0.01))
    assert m["delta_norm"] == pytest.approx(0.01 * math.sqrt(410), rel=1e-5)
    assert m["update_norm"] == pytest.approx(0.02 * math.sqrt(410), rel=1e-5)
    assert (m["lr_local"], m["lr_global"], m["scale"], m["nonfinite_clients"]) == (
        0.05, 2.0, 2.0, 0.0)
    assert s.summary() == {"lr_global_last": 2.0, "lr_local_last": 0.05}


def test_weighted_and_unweighted_average():
    un = _strategy()
    x0 = un.vector(un.global_state).clone()
    _round(un, 1, {0: 0.0, 1: 0.04}, n={0: 1, 1: 3})
    assert torch.allclose(un.seen.delta, torch.full_like(x0, 0.02))  # plain mean by default
    w = _strategy("strategy.weighted_avg=true")
    _round(w, 1, {0: 0.0, 1: 0.04}, n={0: 1, 1: 3})
    assert torch.allclose(w.seen.delta, torch.full_like(x0, 0.03))
    assert w.seen.weights == {0: 0.25, 1: 0.75}


class _WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.bn(self.lin(x))


def test_buffers_are_averaged_and_left_out_of_the_rule():
    torch.manual_seed(0)
    s = _strategy(model=_WithBuffers())
    assert s.trainable == ["lin.weight", "lin.bias", "bn.weight", "bn.bias"]
    g0 = {k: v.clone() for k, v in s.global_state.items()}
    sent = from_record(s.configure_train(1, [0, 1])[0]["arrays"])
    replies = {}
    for c, shift in ((0, 1.0), (1, 3.0)):
        state = {k: (v + shift if v.is_floating_point() else v + int(shift))
                 for k, v in sent.items()}
        replies[c] = _reply(state)
    s.aggregate_train(1, replies, {})
    new = s.global_state
    assert torch.allclose(new["lin.weight"], g0["lin.weight"] + 2.0 * 2.0)  # scale * Delta
    assert torch.allclose(new["bn.running_mean"], g0["bn.running_mean"] + 2.0)  # plain mean
    assert torch.allclose(new["bn.running_var"], g0["bn.running_var"] + 2.0)
    assert int(new["bn.num_batches_tracked"]) == int(g0["bn.num_batches_tracked"]) + 2
    assert new["bn.num_batches_tracked"].dtype == torch.long


def test_non_finite_client_is_ignored_and_counted():
    s = _strategy()
    x0 = s.vector(s.global_state).clone()
    sent = from_record(s.configure_train(1, [0, 1])[0]["arrays"])
    good = {k: v + 0.01 for k, v in sent.items()}
    poisoned = {k: torch.full_like(v, math.nan) for k, v in sent.items()}
    m = s.aggregate_train(1, {0: _reply(good), 1: _reply(poisoned)}, {})
    assert m["nonfinite_clients"] == 1 and set(s.seen.client_deltas) == {0}
    assert torch.allclose(s.vector(s.global_state), x0 + 0.02)


def test_no_usable_update_leaves_the_model_unchanged(caplog):
    s = _strategy()
    before = {k: v.clone() for k, v in s.global_state.items()}
    sent = from_record(s.configure_train(1, [0])[0]["arrays"])
    with caplog.at_level("WARNING", logger="fedplat"):
        m = s.aggregate_train(1, {0: _reply({k: v * math.inf for k, v in sent.items()})}, {})
    assert m == {"nonfinite_clients": 1.0}
    assert all(torch.equal(before[k], v) for k, v in s.global_state.items())
    assert s.prev_delta is None and "no usable client update" in caplog.text


def test_non_finite_server_step_falls_back_to_the_plain_average():
    s = _strategy(cls=NanStep)
    x0 = s.vector(s.global_state).clone()
    _, m = _round(s, 1, {0: 0.01, 1: 0.03})
    assert m["nonfinite_step"] == 1.0
    assert torch.allclose(s.vector(s.global_state), x0 + 0.02)
    assert math.isfinite(m["update_norm"])


def test_client_rate_statistics_in_round_metrics():
    replies = {c: RecordDict({"metrics": MetricRecord(
        {"num-examples": 5, "lr_final": final, "lr_min": lo, "lr_max": hi,
         "cl_floor_hits": c, "cl_nonfinite": 0})})
        for c, (final, lo, hi) in enumerate(((0.02, 0.01, 0.02), (0.005, 0.001, 0.01),
                                             (0.01, 0.01, 0.03)))}
    m = client_rate_stats(replies)
    assert m["lr_client_mean"] == pytest.approx(0.035 / 3)
    assert (m["lr_client_min"], m["lr_client_max"]) == (0.005, 0.02)
    assert (m["lr_client_step_min"], m["lr_client_step_max"]) == (0.001, 0.03)
    assert m["cl_floor_hits_total"] == 3 and m["cl_nonfinite_total"] == 0
    assert "cl_updates_total" not in m
    assert client_rate_stats({0: RecordDict({"metrics": MetricRecord({"num-examples": 1})})}) \
        == {}


def test_rates_from_the_replies_reach_the_round_metrics():
    s = _strategy()
    sent = from_record(s.configure_train(1, [0, 1])[0]["arrays"])
    m = s.aggregate_train(1, {c: _reply(sent, lr_final=r) for c, r in ((0, 0.02), (1, 0.04))},
                          {})
    assert m["lr_client_mean"] == pytest.approx(0.03) and m["lr_client_max"] == 0.04


def test_config_checks_name_the_keys():
    cfg = make_cfg("strategy=fedadagrad")
    assert check_bool(cfg, "strategy.weighted_avg") is False
    cfg.strategy.weighted_avg = 1
    with pytest.raises(UserError, match=r"^strategy\.weighted_avg=1 must be true or false$"):
        check_bool(cfg, "strategy.weighted_avg")
    check_bounds(0.1, 0.1, "a", "b")
    with pytest.raises(UserError, match=r"^x\.lo=2 is above x\.hi=1; "):
        check_bounds(2.0, 1.0, "x.lo", "x.hi")


def test_rates_png_is_written(tmp_path):
    rows = [{"round": r, "lr_global": 1.0 + r / 10, "lr_local": 0.05, "lr_client_mean": 0.04,
             "lr_client_min": 0.03, "lr_client_max": 0.05} for r in range(1, 4)]
    s = _strategy()
    s.write_artifacts(tmp_path, rows)
    assert (tmp_path / "rates.png").read_bytes()[:4] == b"\x89PNG"
    plot_rates([{"round": 1}], tmp_path / "empty.png")  # nothing to draw: still a file
    assert (tmp_path / "empty.png").stat().st_size > 0

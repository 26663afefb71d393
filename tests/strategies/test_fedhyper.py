"""FedHyper server rules: hand-computed values on tiny vectors, then the strategy's rounds."""

import math
import os

import pytest
import torch
from flwr.app import MetricRecord, RecordDict

from fedplat.cli import main
from fedplat.core.records import from_record, to_record
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from strategies.fedhyper import (
    FedHyper,
    Variant,
    dot,
    g_step,
    gm_step,
    sl_rate,
    sl_window,
    update_hyper,
)
from tests.helpers import make_cfg

# -- pure rules -------------------------------------------------------------------------------


def test_variant_parsing():
    assert Variant.parse("G") == Variant("G", False, False)
    assert Variant.parse("gm") == Variant("GM", False, False)
    assert Variant.parse("FULL") == Variant("GM", False, True)
    assert Variant.parse("G+CL") == Variant("G", False, True)
    assert Variant.parse("CL+SL").name == "SL+CL"
    with pytest.raises(UserError, match=r"strategy.variant='X' is not valid \(choose from: G"):
        Variant.parse("X")
    with pytest.raises(UserError, match="combines G and GM"):
        Variant.parse("G+GM")
    with pytest.raises(UserError, match="repeats"):
        Variant.parse("CL+CL")


def test_dot_is_a_plain_inner_product():
    assert dot(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, -5.0, 6.0])) == 12.0
    big = torch.full((4,), 3e38)  # float32 products would overflow; float64 does not
    assert math.isfinite(dot(big, big))


def test_update_hyper_sign_and_clip():
    # agreeing consecutive updates raise the rate, opposing ones lower it (spec P3)
    assert update_hyper(0.0, 0.5, lo=-0.8, hi=4) == (0.5, True)
    assert update_hyper(0.0, -0.3, lo=-0.8, hi=4) == (-0.3, True)
    assert update_hyper(0.2, 0.25, beta=2.0) == (0.7, True)
    # the clipped value carries over
    assert update_hyper(3.9, 0.5, lo=-0.8, hi=4) == (4.0, True)
    assert update_hyper(-0.7, -0.5, lo=-0.8, hi=4) == (-0.8, True)
    assert update_hyper(0.0, -0.5, lo=-0.2, hi=4) == (-0.2, True)
    # unclipped (SL)
    assert update_hyper(1.0, 7.5) == (8.5, True)


def test_update_hyper_skips_non_finite():
    for h in (math.nan, math.inf, -math.inf):
        assert update_hyper(0.3, h, lo=-0.8, hi=4) == (0.3, False)
    assert update_hyper(0.3, 10.0, beta=1e308) == (0.3, False)  # overflow of a + beta h


def test_update_hyper_normalized_is_sigmoid():
    a, ok = update_hyper(0.0, 0.0, normalized=True)
    assert ok and a == pytest.approx(0.5)
    a, _ = update_hyper(1.0, 10.0, normalized=True)
    assert a == pytest.approx(1.0 + 1.0 / (1.0 + math.exp(-1.0)))
    a, _ = update_hyper(0.0, -1e6, normalized=True)  # no overflow in exp
    assert a == pytest.approx(0.0)


def test_g_and_gm_steps_hand_computed():
    d = torch.tensor([1.0, -2.0])
    assert torch.equal(g_step(d, 0.5), torch.tensor([1.5, -3.0]))
    step, mom = gm_step(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), 0.5, 0.9)
    assert torch.allclose(step, torch.tensor([1.5, 0.9]))  # 1.5 * delta + 0.45 * m
    assert torch.allclose(mom, torch.tensor([1.0, 1.8]))
    # momentum term scaled by a, not 1 + a (P11): a < 0 subtracts momentum, a = 0 is FedAvg
    step, _ = gm_step(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), -0.2, 0.9)
    assert torch.allclose(step, torch.tensor([0.8, -0.36]))
    step, _ = gm_step(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), 0.0, 0.9)
    assert torch.equal(step, torch.tensor([1.0, 0.0]))


def test_sl_rate_and_window():
    assert sl_rate(0.01, 0.5, 0.001, 0.1) == pytest.approx(0.015)
    assert sl_rate(0.01, 20.0, 0.001, 0.1) == 0.1
    assert sl_rate(0.01, -1.5, 0.001, 0.1) == 0.001
    assert sl_window(0.05, "absolute", 0.001, 0.1, 10) == (0.001, 0.1)
    lo, hi = sl_window(0.05, "relative", 0.001, 0.1, 10)
    assert (lo, hi) == (pytest.approx(0.005), pytest.approx(0.5))


# -- the strategy, driven with synthetic client replies ---------------------------------------

N = 4


def _strategy(*overrides, model=None):
    s = FedHyper(make_cfg("strategy=fedhyper", f"num_clients={N}", "model=mlp",
                          "model.hidden=[]", *overrides))
    if model is not None:
        s.initial_model = lambda: model
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(N)})
    return s


def _reply(state, n=10):
    return RecordDict({"arrays": to_record(state), "metrics": MetricRecord({"num-examples": n})})


def _round(s, server_round, shifts, n=None):
    """Every client c returns the global model + shifts[c] on every entry."""
    payloads = s.configure_train(server_round, sorted(shifts))
    sent = from_record(next(iter(payloads.values()))["arrays"])
    replies = {c: _reply({k: v + shift for k, v in sent.items()}, (n or {}).get(c, 10))
               for c, shift in shifts.items()}
    return payloads, s.aggregate_train(server_round, replies, {})


def _numel(s):
    return sum(v.numel() for k, v in s.global_state.items() if k in s.trainable)


def test_g_rounds_hand_computed():
    s = _strategy("strategy.variant=G")
    d = _numel(s)  # 410 for Linear(40, 10)
    x0 = s.vector(s.global_state).clone()
    _, m1 = _round(s, 1, {0: 0.0, 1: 0.02})  # unweighted mean: Delta_1 = 0.01
    assert m1["lr_global"] == 1.0 and "hypergrad" not in m1
    assert torch.allclose(s.vector(s.global_state), x0 + 0.01)
    _, m2 = _round(s, 2, {0: 0.02, 2: 0.02})  # Delta_2 = 0.02, agrees with Delta_1
    h2 = 0.01 * 0.02 * d
    assert m2["hypergrad"] == pytest.approx(h2, rel=1e-5)
    assert m2["lr_global"] == pytest.approx(1 + h2, rel=1e-5)
    assert torch.allclose(s.vector(s.global_state), x0 + 0.01 + (1 + h2) * 0.02, atol=1e-6)
    _, m3 = _round(s, 3, {1: -0.05, 3: -0.05})  # opposes: the rate goes down
    h3 = 0.02 * -0.05 * d
    assert m3["lr_global"] == pytest.approx(1 + h2 + h3, rel=1e-5) and m3["lr_global"] < 1
    _, m4 = _round(s, 4, {0: -1.0})  # large agreement: a clipped at 4 (rate 5)
    assert m4["lr_global"] == pytest.approx(5.0)
    assert m4["hypergrad_skipped"] == 0


def test_g_starts_from_eta_g0_and_sends_the_raw_delta():
    s = _strategy("strategy.variant=G+CL", "strategy.eta_g0=2.0")
    x0 = s.vector(s.global_state).clone()
    payloads, m1 = _round(s, 1, {0: 0.01})
    prev = from_record(payloads[0]["prev_delta"])
    assert set(prev) == set(s.trainable)
    assert all(float(v.abs().sum()) == 0 for v in prev.values())  # round 1: zeros
    assert payloads[0]["config"]["cl"] is True and payloads[0]["config"]["num_sampled"] == 1
    assert m1["lr_global"] == 2.0
    assert torch.allclose(s.vector(s.global_state), x0 + 0.02)  # eta_g0 * Delta_1
    payloads, _ = _round(s, 2, {0: 0.03})
    prev = s.vector(from_record(payloads[0]["prev_delta"]))
    assert torch.allclose(prev, torch.full_like(prev, 0.01))  # raw Delta_1, not 2 * Delta_1 (P8)


def test_gm_rounds_hand_computed():
    s = _strategy("strategy.variant=GM")
    d = _numel(s)
    x0 = s.vector(s.global_state).clone()
    _, m1 = _round(s, 1, {0: 0.01})
    assert m1["lr_global"] == 1.0
    assert torch.allclose(s.vector(s.global_state), x0 + 0.01)  # round 1 plain FedAvg
    _, m2 = _round(s, 2, {0: 0.02})
    a = 0.01 * 0.02 * d  # <m_1, Delta_2>, m_1 = Delta_1
    assert m2["lr_global"] == pytest.approx(1 + a, rel=1e-5)
    expect = x0 + 0.01 + (1 + a) * 0.02 + 0.9 * a * 0.01
    assert torch.allclose(s.vector(s.global_state), expect, atol=1e-6)
    _, m3 = _round(s, 3, {0: -0.5})  # strong opposition: a clipped at -0.2
    assert m3["lr_global"] == pytest.approx(0.8)
    m2_vec = 0.02 + 0.9 * 0.01
    expect = expect + 0.8 * -0.5 + 0.9 * -0.2 * m2_vec
    assert torch.allclose(s.vector(s.global_state), expect, atol=1e-5)


def test_sl_keeps_its_rate_across_rounds_unless_reset():
    for reset, expect_adapted in ((False, True), (True, False)):
        s = _strategy("strategy.variant=SL", "client.lr=0.01",
                      f"strategy.sl_reset_each_round={str(reset).lower()}")
        d = _numel(s)
        p1, _ = _round(s, 1, {0: 0.01})
        _, m2 = _round(s, 2, {0: 0.02})
        p3, m3 = _round(s, 3, {0: 0.01})
        assert p1[0]["config"]["lr"] == 0.01
        assert m2["lr_global"] == 1.0  # SL leaves the global rate alone
        a_sl = 0.01 * 0.02 * d
        assert m2["hypergrad_sl"] == pytest.approx(a_sl, rel=1e-5)
        sent = p3[0]["config"]["lr"]
        if expect_adapted:
            assert sent == pytest.approx(0.01 * (1 + a_sl), rel=1e-5)
            assert m3["lr_local"] == sent
        else:
            assert sent == 0.01  # released code: the adjustment is discarded (P1)


def test_non_finite_hypergradient_is_skipped_and_counted(caplog):
    s = _strategy("strategy.variant=G+SL", "strategy.hyper_lr=1e308")
    _round(s, 1, {0: 0.01})
    with caplog.at_level("WARNING", logger="fedplat"):
        _, m2 = _round(s, 2, {0: 1.0})  # h = 4.1, beta h = 4.1e308 overflows
    assert m2["hypergrad_skipped"] == 2  # global and SL both overflowed a + beta h
    assert m2["lr_global"] == 1.0 and math.isfinite(m2["update_norm"])
    assert all(torch.isfinite(v).all() for v in s.global_state.values())
    assert "non-finite global hypergradient" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.variant=X"], "strategy.variant='X' is not valid"),
        (["strategy.variant=G+GM"], "combines G and GM"),
        (["strategy.a_clip_g_lo=5"], "strategy.a_clip_g_lo=5 is above strategy.a_clip_g_hi=4"),
        (["strategy.a_clip_gm_lo=-1"], "allows a global rate 1 + a <= 0"),
        (["strategy.eta_g0=0"], "the initial global rate must be > 0"),
        (["strategy.eta_g0=-1"], "the initial global rate must be > 0"),
        (["strategy.variant=GM", "strategy.eta_g0=0.5"], "outside the GM rate range [0.8, 5]"),
        (["client.lr=0"], "client.lr=0 is out of range"),
        (["client.lr=-0.01"], "client.lr=-0.01 is out of range"),
        (["strategy.sl.lr_lo=0.5"], "strategy.sl.lr_lo=0.5 is above strategy.sl.lr_hi=0.1"),
        (["strategy.variant=SL", "client.lr=0.5"], "outside the SL window"),
        (["strategy.cl.mult_lo=20"], "strategy.cl.mult_lo=20 is above strategy.cl.mult_hi=10"),
        (["strategy.cl.mult_lo=0"], "strategy.cl.mult_lo=0 is out of range"),
        (["strategy.sl.bounds=other"], "strategy.sl.bounds='other' is not valid"),
        (["strategy.cl.hyper_lr=-1"], "strategy.cl.hyper_lr=-1 is out of range"),
        (["strategy.hyper_lr=-1"], "strategy.hyper_lr=-1 is out of range"),
    ],
)
def test_bad_config_is_one_line(overrides, message):
    with pytest.raises(UserError) as info:
        make_cfg("strategy=fedhyper", *overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_bounds_exit_2_on_the_command_line(capsys, monkeypatch):
    monkeypatch.chdir(os.environ.get("TMPDIR", "/tmp"))
    with pytest.raises(SystemExit) as info:
        main(["strategy=fedhyper", "strategy.a_clip_g_lo=5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fedplat: error: ") and err.count("\n") == 1


def test_inline_run_logs_rates_and_draws_them(tmp_path):
    from tests.helpers import run_inline

    summary, rows = run_inline(
        tmp_path, "strategy=fedhyper", "strategy.variant=FULL", "num_clients=6",
        "strategy.fraction_train=0.5", "num_rounds=3", "model=mlp", "model.hidden=[16]",
        "client.local_epochs=1", "client.batch_size=32", "client.optimizer=sgd",
        "client.lr=0.05", "client.momentum=0.5")
    assert summary["status"] == "completed" and len(rows) == 3
    for r in rows:
        assert r["num_train_clients"] == 3
        for key in ("lr_global", "lr_local", "lr_client_mean", "lr_client_min", "lr_client_max",
                    "cl_updates_total", "hypergrad_skipped", "test_accuracy"):
            assert key in r, key
        assert 0.8 <= r["lr_global"] <= 5.0
        assert 0.005 <= r["lr_client_min"] <= r["lr_client_mean"] <= r["lr_client_max"] <= 0.5
    assert rows[0]["lr_global"] == 1.0 and "hypergrad" in rows[1]
    # Delta_{t-1} doubles the downlink of a training message (counted by the server)
    per_train = rows[0]["bytes_down_train"] / 3
    per_eval = rows[0]["bytes_down_evaluate"] / 6
    assert 1.9 < per_train / per_eval < 2.1
    assert (tmp_path / "rates.png").stat().st_size > 0

"""FedHyper-Adam: FedAdam whose server rate follows FedHyper's global hypergradient."""


import pytest
import torch

from fedplat.errors import UserError
from strategies.fedadam import FedAdam, repo_fedadam_step
from strategies.fedhyper_adam import FedHyperAdam
from tests.helpers import check_rate_logging_run, make_cfg, server_opt_round, server_opt_strategy


def test_fedhyper_adam_scales_the_rate_by_the_hypergradient():
    plain = server_opt_strategy(FedAdam, "fedadam")
    hyper = server_opt_strategy(FedHyperAdam, "fedhyper_adam")
    d = sum(v.numel() for v in hyper.global_state.values())
    m1, h1 = server_opt_round(plain, 1, 0.01), server_opt_round(hyper, 1, 0.01)
    assert m1["lr_global"] == h1["lr_global"] == 0.1  # round 1: no hypergradient yet
    assert torch.allclose(plain.vector(plain.global_state), hyper.vector(hyper.global_state))
    server_opt_round(plain, 2, 0.02)
    h2 = server_opt_round(hyper, 2, 0.02)
    a = 0.01 * 0.02 * d  # <Delta_1, Delta_2> on the raw updates
    assert h2["hypergrad"] == pytest.approx(a, rel=1e-5)
    assert h2["lr_global"] == pytest.approx(0.1 * (1 + a), rel=1e-5)
    h3 = server_opt_round(hyper, 3, -1.0)  # strong opposition: clipped at a = -0.2
    assert h3["rate_factor"] == pytest.approx(0.8)
    assert h3["hypergrad_skipped"] == 0.0


def test_fedhyper_adam_repo_rule_scales_the_pseudo_gradient():
    s = server_opt_strategy(FedHyperAdam, "fedhyper_adam", "strategy.repo_rule=true")
    x0 = s.vector(s.global_state).clone()
    server_opt_round(s, 1, 0.01)
    step, _, _ = repo_fedadam_step(torch.full_like(x0, 0.01), torch.zeros_like(x0),
                                   torch.zeros_like(x0))
    assert torch.allclose(s.vector(s.global_state), x0 + step, atol=1e-6)


def test_non_finite_hypergradient_leaves_the_rate_factor(caplog):
    s = server_opt_strategy(FedHyperAdam, "fedhyper_adam", "strategy.hyper_lr=1e308")
    server_opt_round(s, 1, 0.01)
    with caplog.at_level("WARNING", logger="fedplat"):
        m = server_opt_round(s, 2, 5.0)  # beta * h = 1e308 * 8.15 overflows
    assert m["hypergrad_skipped"] == 1.0 and m["rate_factor"] == 1.0
    assert "non-finite hypergradient" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.a_clip_lo=1"], "must enclose 0"),
        (["strategy.a_clip_lo=2", "strategy.a_clip_hi=1"],
         "strategy.a_clip_lo=2 is above strategy.a_clip_hi=1"),
        (["strategy.a_clip_lo=-1"], "allows a server rate eta * (1 + a) <= 0"),
        (["strategy.weighted_avg=3"], "must be true or false"),
        (["strategy.hyper_lr=-1"], "strategy.hyper_lr=-1 is out of range"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(UserError) as info:
        make_cfg("strategy=fedhyper_adam", *overrides)
    assert message in str(info.value)


def test_runs_and_logs_rates(tmp_path):
    rows = check_rate_logging_run(tmp_path, "fedhyper_adam")
    assert rows[0]["rate_factor"] == 1.0 and "hypergrad" in rows[1]

"""FedAdagrad: equal to Flower's Message-API strategy on the same replies; the released code's
variant by hand; a run from the config."""

import math

import pytest
import torch
from flwr.serverapp.strategy import FedAdagrad as FlowerFedAdagrad

from fedplat.errors import UserError
from strategies.fedadagrad import FedAdagrad, fedadagrad_step, repo_fedadagrad_step
from tests.helpers import (
    compare_with_flower,
    make_cfg,
    run_inline,
    server_opt_round,
    server_opt_strategy,
)


def test_fedadagrad_equals_flower():
    ours = server_opt_strategy(FedAdagrad, "fedadagrad", "strategy.eta=0.05",
                               "strategy.tau=0.01")
    flower = FlowerFedAdagrad(eta=0.05, tau=0.01)
    compare_with_flower(ours, flower)


def test_step_hand_computed():
    d = torch.tensor([0.1, -0.2])
    step, v = fedadagrad_step(d, torch.tensor([0.0, 0.05]), eta=0.1, tau=0.01)
    assert torch.allclose(v, torch.tensor([0.01, 0.09]))  # v += Delta^2
    assert torch.allclose(step, torch.tensor([0.1 * 0.1 / 0.11, 0.1 * -0.2 / 0.31]))


def test_repo_rule_hand_computed():
    d = torch.tensor([1.0, -2.0])
    step, v = repo_fedadagrad_step(d, torch.zeros(2))
    assert torch.allclose(v, torch.tensor([0.01, 0.04]))
    assert torch.allclose(step, torch.tensor([0.1 / math.sqrt(0.0416), -0.2 / math.sqrt(0.0716)]))


def test_accumulator_grows_and_shrinks_the_step():
    s = server_opt_strategy(FedAdagrad, "fedadagrad", "strategy.eta=0.1", "strategy.tau=0.001")
    assert s.v is None
    x0 = s.vector(s.global_state).clone()
    m1 = server_opt_round(s, 1, 0.01)
    assert torch.allclose(s.v, torch.full_like(x0, 1e-4))
    step1 = 0.1 * 0.01 / (0.01 + 0.001)
    assert torch.allclose(s.vector(s.global_state), x0 + step1, atol=1e-6)
    assert m1["lr_global"] == 0.1
    x1 = s.vector(s.global_state).clone()
    server_opt_round(s, 2, 0.01)
    step2 = 0.1 * 0.01 / (math.sqrt(2e-4) + 0.001)
    assert step2 < step1
    assert torch.allclose(s.vector(s.global_state), x1 + step2, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.tau=-1"], "strategy.tau=-1 is out of range"),
        (["strategy.eta=0"], "strategy.eta=0 is out of range"),
        (["strategy.repo_rule=1"], "strategy.repo_rule=1 must be true or false"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        make_cfg("strategy=fedadagrad", *overrides)


def test_runs_and_logs_rates(tmp_path):
    summary, rows = run_inline(
        tmp_path, "strategy=fedadagrad", "num_clients=4", "strategy.fraction_train=0.5",
        "strategy.fraction_evaluate=0.5", "num_rounds=2", "model=mlp", "model.hidden=[8]",
        "client.local_epochs=1", "client.batch_size=64", "client.lr=0.05")
    assert summary["status"] == "completed" and len(rows) == 2
    for r in rows:
        assert r["lr_global"] == 0.1 and r["lr_client_mean"] == r["lr_local"] == 0.05
        assert math.isfinite(r["test_accuracy"])
    assert (tmp_path / "rates.png").is_file()

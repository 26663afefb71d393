"""FedAdam: equal to Flower's Message-API strategy on the same replies; the released code's
variant by hand."""

import math

import pytest
import torch
from flwr.serverapp.strategy import FedAdam as FlowerFedAdam

from fedplat.errors import UserError
from strategies.fedadam import FedAdam, fedadam_step, repo_fedadam_step
from tests.helpers import compare_with_flower, make_cfg, server_opt_round, server_opt_strategy


def test_fedadam_equals_flower():
    ours = server_opt_strategy(FedAdam, "fedadam", "strategy.eta=0.05", "strategy.tau=0.01")
    flower = FlowerFedAdam(eta=0.05, beta_1=0.9, beta_2=0.99, tau=0.01)
    compare_with_flower(ours, flower)


def test_fedadam_step_hand_computed():
    d = torch.tensor([0.1, -0.2])
    step, m, v, eta_norm = fedadam_step(d, torch.zeros(2), torch.zeros(2), 1, 0.1, 0.9, 0.99,
                                        1e-3)
    assert torch.allclose(m, torch.tensor([0.01, -0.02]))
    assert torch.allclose(v, torch.tensor([1e-4, 4e-4]))
    assert eta_norm == pytest.approx(0.1 * math.sqrt(1 - 0.99 ** 2) / (1 - 0.9 ** 2))
    assert torch.allclose(step, eta_norm * torch.tensor([0.01 / 0.011, -0.02 / 0.021]))


def test_repo_rule_hand_computed():
    d = torch.tensor([1.0, -2.0])
    step, m, v = repo_fedadam_step(d, torch.zeros(2), torch.zeros(2))
    # g = [0.1, -0.2]; m = 0.1 g = [0.01, -0.02]; v = 0.01 m^2 = [1e-6, 4e-6]
    assert torch.allclose(m, torch.tensor([0.01, -0.02]))
    assert torch.allclose(v, torch.tensor([1e-6, 4e-6]))
    expect = torch.tensor([0.1 / math.sqrt(1e-4 + 0.0316), -0.2 / math.sqrt(4e-4 + 0.0316)])
    assert torch.allclose(step, expect)
    _, m2, _ = repo_fedadam_step(d, torch.zeros(2), torch.zeros(2), scale=2.0)
    assert torch.allclose(m2, 2 * m)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.eta=0"], "strategy.eta=0 is out of range"),
        (["strategy.beta_2=1"], "strategy.beta_2=1 is out of range"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(".", r"\.")):
        make_cfg("strategy=fedadam", *overrides)


def test_arrays_keep_their_dtype():
    s = server_opt_strategy(FedAdam, "fedadam")
    server_opt_round(s, 1, 0.01)
    assert all(v.dtype == torch.float32 for v in s.global_state.values())

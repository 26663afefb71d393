"""FedAdam, FedAdagrad and FedHyper-Adam: equal to Flower's Message-API strategies on the same
replies; the released code's variants by hand."""

import math

import numpy as np
import pytest
import torch
from flwr.app import Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdagrad as FlowerFedAdagrad
from flwr.serverapp.strategy import FedAdam as FlowerFedAdam

from fedplat.errors import UserError
from fedplat.records import from_record, to_record
from fedplat.strategy import ClientInfo
from strategies.fedadagrad import FedAdagrad, repo_fedadagrad_step
from strategies.fedadam import FedAdam, fedadam_step, repo_fedadam_step
from strategies.fedhyper_adam import FedHyperAdam
from tests.helpers import make_cfg

N = 3
SHIFTS = [  # per round: client -> (shift of every entry, num-examples)
    {0: (0.01, 10), 1: (0.03, 30)},
    {1: (0.02, 30), 2: (-0.01, 20)},
    {0: (-0.02, 10), 2: (0.05, 20)},
]


def _ours(cls, name, *overrides):
    s = cls(make_cfg(f"strategy={name}", f"num_clients={N}", "model=mlp", "model.hidden=[3]",
                     "strategy.weighted_avg=true", *overrides))
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(N)})
    return s


def _reply_content(state, n):
    return RecordDict({"arrays": to_record(state), "metrics": MetricRecord({"num-examples": n})})


def _compare_with_flower(ours, flower):
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id = 1, 1  # Message() needs a task identity
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    current = {k: v.numpy().copy() for k, v in ours.global_state.items()}
    for rnd, shifts in enumerate(SHIFTS, start=1):
        flower.current_arrays = current
        payloads = ours.configure_train(rnd, sorted(shifts))
        sent = from_record(next(iter(payloads.values()))["arrays"])
        replies = {c: _reply_content({k: v + d for k, v in sent.items()}, n)
                   for c, (d, n) in shifts.items()}
        ours.aggregate_train(rnd, replies, {})
        msgs = [Message(_reply_content({k: torch.from_numpy(v + np.float32(d))
                                        for k, v in current.items()}, n),
                        dst_node_id=1, message_type=MessageType.TRAIN)
                for c, (d, n) in sorted(shifts.items())]
        arrays, _ = flower.aggregate_train(rnd, msgs)
        current = {k: a.numpy().astype(np.float32) for k, a in arrays.items()}
        for k, v in current.items():
            assert np.allclose(ours.global_state[k].numpy(), v, atol=1e-6), (rnd, k)


def test_fedadam_equals_flower():
    ours = _ours(FedAdam, "fedadam", "strategy.eta=0.05", "strategy.tau=0.01")
    flower = FlowerFedAdam(eta=0.05, beta_1=0.9, beta_2=0.99, tau=0.01)
    _compare_with_flower(ours, flower)


def test_fedadagrad_equals_flower():
    ours = _ours(FedAdagrad, "fedadagrad", "strategy.eta=0.05", "strategy.tau=0.01")
    flower = FlowerFedAdagrad(eta=0.05, tau=0.01)
    _compare_with_flower(ours, flower)


def test_fedadam_step_hand_computed():
    d = torch.tensor([0.1, -0.2])
    step, m, v, eta_norm = fedadam_step(d, torch.zeros(2), torch.zeros(2), 1, 0.1, 0.9, 0.99,
                                        1e-3)
    assert torch.allclose(m, torch.tensor([0.01, -0.02]))
    assert torch.allclose(v, torch.tensor([1e-4, 4e-4]))
    assert eta_norm == pytest.approx(0.1 * math.sqrt(1 - 0.99 ** 2) / (1 - 0.9 ** 2))
    assert torch.allclose(step, eta_norm * torch.tensor([0.01 / 0.011, -0.02 / 0.021]))


def test_repo_rules_hand_computed():
    d = torch.tensor([1.0, -2.0])
    step, m, v = repo_fedadam_step(d, torch.zeros(2), torch.zeros(2))
    # g = [0.1, -0.2]; m = 0.1 g = [0.01, -0.02]; v = 0.01 m^2 = [1e-6, 4e-6]
    assert torch.allclose(m, torch.tensor([0.01, -0.02]))
    assert torch.allclose(v, torch.tensor([1e-6, 4e-6]))
    expect = torch.tensor([0.1 / math.sqrt(1e-4 + 0.0316), -0.2 / math.sqrt(4e-4 + 0.0316)])
    assert torch.allclose(step, expect)
    _, m2, _ = repo_fedadam_step(d, torch.zeros(2), torch.zeros(2), scale=2.0)
    assert torch.allclose(m2, 2 * m)
    step, v = repo_fedadagrad_step(d, torch.zeros(2))
    assert torch.allclose(v, torch.tensor([0.01, 0.04]))
    assert torch.allclose(step, torch.tensor([0.1 / math.sqrt(0.0416), -0.2 / math.sqrt(0.0716)]))


def _round(s, rnd, shift):
    sent = from_record(s.configure_train(rnd, [0])[0]["arrays"])
    return s.aggregate_train(rnd, {0: _reply_content({k: v + shift for k, v in sent.items()},
                                                     10)}, {})


def test_fedhyper_adam_scales_the_rate_by_the_hypergradient():
    plain = _ours(FedAdam, "fedadam")
    hyper = _ours(FedHyperAdam, "fedhyper_adam")
    d = sum(v.numel() for v in hyper.global_state.values())
    m1, h1 = _round(plain, 1, 0.01), _round(hyper, 1, 0.01)
    assert m1["lr_global"] == h1["lr_global"] == 0.1  # round 1: no hypergradient yet
    assert torch.allclose(plain.vector(plain.global_state), hyper.vector(hyper.global_state))
    _round(plain, 2, 0.02)
    h2 = _round(hyper, 2, 0.02)
    a = 0.01 * 0.02 * d  # <Delta_1, Delta_2> on the raw updates
    assert h2["hypergrad"] == pytest.approx(a, rel=1e-5)
    assert h2["lr_global"] == pytest.approx(0.1 * (1 + a), rel=1e-5)
    h3 = _round(hyper, 3, -1.0)  # strong opposition: clipped at a = -0.2
    assert h3["rate_factor"] == pytest.approx(0.8)


def test_fedhyper_adam_repo_rule_scales_the_pseudo_gradient():
    s = _ours(FedHyperAdam, "fedhyper_adam", "strategy.repo_rule=true")
    x0 = s.vector(s.global_state).clone()
    _round(s, 1, 0.01)
    step, _, _ = repo_fedadam_step(torch.full_like(x0, 0.01), torch.zeros_like(x0),
                                   torch.zeros_like(x0))
    assert torch.allclose(s.vector(s.global_state), x0 + step, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy=fedadam", "strategy.eta=0"], "strategy.eta=0 is out of range"),
        (["strategy=fedadam", "strategy.beta_2=1"], "strategy.beta_2=1 is out of range"),
        (["strategy=fedadagrad", "strategy.tau=-1"], "strategy.tau=-1 is out of range"),
        (["strategy=fedhyper_adam", "strategy.a_clip_lo=1"], "must enclose 0"),
        (["strategy=fedhyper_adam", "strategy.a_clip_lo=2", "strategy.a_clip_hi=1"],
         "strategy.a_clip_lo=2 is above strategy.a_clip_hi=1"),
        (["strategy=fedhyper_adam", "strategy.weighted_avg=3"], "must be true or false"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(".", r"\.")):
        make_cfg(*overrides)


def test_arrays_keep_their_dtype():
    s = _ours(FedAdam, "fedadam")
    _round(s, 1, 0.01)
    assert all(v.dtype == torch.float32 for v in s.global_state.values())

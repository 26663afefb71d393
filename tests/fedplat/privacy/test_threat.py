"""The building blocks of threat models: distances, unrolled SGD and the replay, options, and
what a capture says about the batch, checked against closed forms and torch.optim.SGD."""

import math
from pathlib import Path

import pytest
import torch
from flwr.app import ConfigRecord, MetricRecord, RecordDict
from torch import nn
from torch.nn import functional as F

from fedplat.core.records import to_record
from fedplat.errors import UserError
from fedplat.privacy.capture import Capture, CapturedExchange
from fedplat.privacy.threat import (
    SGDSpec,
    ThreatModel,
    UnrolledSGD,
    arrays,
    bias_scores,
    clip_factor,
    num_images,
    one_step_per_epoch,
    replay_sgd,
    soft_cross_entropy,
    upload_distance,
)


def _t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_upload_distance_cosine_and_relative_l2_over_all_entries_together():
    obs = {"a": _t(3.0, 0.0), "b": _t(4.0)}
    assert float(upload_distance({"a": _t(6.0, 0.0), "b": _t(8.0)}, obs, "cosine")) == \
        pytest.approx(0.0, abs=1e-12)
    assert float(upload_distance({"a": _t(0.0, 1.0), "b": _t(0.0)}, obs, "cosine")) == \
        pytest.approx(1.0)
    # the entries count together: (3*3 + 4*(-4)) / (5 * 5) = -7/25
    assert float(upload_distance({"a": _t(3.0, 0.0), "b": _t(-4.0)}, obs, "cosine")) == \
        pytest.approx(1 + 7 / 25)
    # l2 relative to |obs|^2 = 25
    assert float(upload_distance({"a": _t(0.0, 0.0), "b": _t(0.0)}, obs, "l2")) == 1.0
    assert float(upload_distance({"a": _t(3.0, 1.0), "b": _t(6.0)}, obs, "l2")) == \
        pytest.approx(5 / 25)


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot_labels():
    assert float(soft_cross_entropy(torch.zeros(2, 4), torch.eye(4)[:2])) == \
        pytest.approx(math.log(4))
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(y, 3).float()),
                               F.cross_entropy(logits, y))


def test_clip_factor_is_clip_grad_norms_scale():
    grads = [_t(3.0), _t(4.0)]
    assert float(clip_factor(grads, 1.0)) == pytest.approx(1 / (5 + 1e-6))
    assert float(clip_factor(grads, 10.0)) == 1.0
    assert clip_factor(grads, None) == 1.0


@pytest.mark.parametrize("spec", [SGDSpec(0.1), SGDSpec(0.1, 0.9, 0.01),
                                  SGDSpec(0.2, 0.5, 0.0, 0.3)])
def test_unrolled_sgd_equals_torch_sgd(spec):
    gen = torch.Generator().manual_seed(1)
    start = [torch.randn(3, 2, generator=gen), torch.randn(2, generator=gen)]
    grads = [[torch.randn(3, 2, generator=gen), torch.randn(2, generator=gen)] for _ in range(3)]
    params = [nn.Parameter(p.clone()) for p in start]
    opt = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                          weight_decay=spec.weight_decay)
    unrolled, current = UnrolledSGD(spec), [p.clone() for p in start]
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = gi.clone()
        if spec.clip is not None:
            torch.nn.utils.clip_grad_norm_(params, spec.clip)
        opt.step()
        current = unrolled.step(current, g)
    for p, q in zip(params, current):
        torch.testing.assert_close(q, p.detach())


def test_replay_sgd_of_a_linear_layer_from_zero_has_the_closed_form_and_keeps_the_graph():
    """One step from W = 0, b = 0 on one sample: W1 = -lr (1/C - e_y) x^T, b1 = -lr (1/C - e_y)."""
    target = nn.Linear(3, 4)
    zero = {"weight": torch.zeros(4, 3), "bias": torch.zeros(4)}
    x = torch.tensor([[1.0, -2.0, 0.5]], requires_grad=True)
    y = F.one_hot(torch.tensor([2]), 4).float()
    final, head = replay_sgd(target, zero, {}, x, y, 1, SGDSpec(0.5))
    d = torch.full((4,), 0.25)
    d[2] -= 1
    torch.testing.assert_close(final["bias"], -0.5 * d)
    torch.testing.assert_close(final["weight"], -0.5 * torch.outer(d, x[0]))
    assert head == {}
    final["weight"].sum().backward()  # the result is differentiable in x
    torch.testing.assert_close(x.grad, -0.5 * d.sum() * torch.ones(1, 3))


def test_replay_sgd_steps_a_head_with_its_own_optimiser():
    body = nn.Linear(2, 2)
    target = nn.Sequential(body)
    w = {"0.weight": torch.eye(2), "0.bias": torch.zeros(2)}
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    final, head = replay_sgd(target, {"0.weight": w["0.weight"]}, {},
                             x, y, 2, SGDSpec(0.1), head={"0.bias": w["0.bias"]},
                             head_spec=SGDSpec(1.0))
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1},
                           {"params": [model.bias], "lr": 1.0}])
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), torch.tensor([1])).backward()
        opt.step()
    torch.testing.assert_close(final["0.weight"].detach(), model.weight.detach())
    torch.testing.assert_close(head["0.bias"].detach(), model.bias.detach())


class _Options(ThreatModel):
    name = "options"
    OPTIONS = {"flag": (False, ""), "steps": (1, ""), "scale": (0.5, ""), "mode": ("a", "")}


def test_options_take_the_type_of_their_default():
    assert _Options().options == {"flag": False, "steps": 1, "scale": 0.5, "mode": "a"}
    got = _Options({"flag": "yes", "steps": "3", "scale": "2e-1", "mode": "b"}).options
    assert got == {"flag": True, "steps": 3, "scale": 0.2, "mode": "b"}
    for bad, message in [({"flag": "maybe"}, "must be true or false"),
                         ({"steps": "2.5"}, "must be an integer"),
                         ({"scale": "x"}, "must be a number"),
                         ({"other": "1"}, r"no option 'other' \(options: flag, steps")]:
        with pytest.raises(UserError, match=message):
            _Options(bad)
    with pytest.raises(NotImplementedError):
        _Options().build(None, None, torch.Generator())


def _capture(num_samples, metrics):
    reply = RecordDict({"metrics": MetricRecord(metrics)}) if metrics is not None else None
    sent = RecordDict({"arrays": to_record({"w": torch.ones(2)}),
                       "config": ConfigRecord({"lr": 0.1})})
    return Capture(Path("unused"), 1, 0, num_samples,
                   {"train": CapturedExchange("train", "train", "", sent, reply)})


def test_num_images_prefers_the_servers_choice_then_the_reply():
    assert num_images(_capture(4, {"num-examples": 99})) == 4
    assert num_images(_capture(0, {"num-examples": 12}), per_epoch_divisor=3) == 4
    with pytest.raises(UserError, match="no num-examples"):
        num_images(_capture(0, {}))
    with pytest.raises(UserError, match="no num-examples"):
        num_images(_capture(0, None))


def test_arrays_of_a_message_and_their_absence():
    cap = _capture(1, {})
    torch.testing.assert_close(arrays(cap.main.sent)["w"], torch.ones(2))
    with pytest.raises(UserError, match="no 'arrays' record"):
        arrays(cap.main.reply)
    with pytest.raises(UserError, match="no 'arrays' record"):
        arrays(None)
    with pytest.raises(UserError, match="no main training exchange"):
        _ = Capture(Path("unused"), 1, 0, 0).main


def test_one_step_per_epoch_and_bias_scores():
    one_step_per_epoch(4, 4, "client.batch_size")
    with pytest.raises(UserError, match=r"5 samples with client.batch_size=4.*num_samples <= 4"):
        one_step_per_epoch(5, 4, "client.batch_size")
    torch.testing.assert_close(bias_scores(torch.tensor([0.2, -0.05]), 0.5),
                               torch.tensor([-0.4, 0.1]))

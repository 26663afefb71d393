import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from fedplat.training import batches, evaluate, make_optimizer, train


def _toy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    return nn.Linear(5, 2), x, y


def test_training_reduces_loss_and_counts_samples():
    model, x, y = _toy()
    before = evaluate(model, x, y).loss
    opt = make_optimizer(model.parameters(), OmegaConf.create(
        {"optimizer": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0}))
    res = train(model, x, y, opt, epochs=5, batch_size=16,
                generator=torch.Generator().manual_seed(1))
    assert res.num_examples == 320 and res.steps == 20
    assert evaluate(model, x, y).loss < before


def test_batches_cover_each_sample_once():
    got = torch.cat(batches(10, 3, torch.Generator().manual_seed(0)))
    assert sorted(got.tolist()) == list(range(10))


def test_non_finite_loss_raises():
    model, x, y = _toy()
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        train(model, x, y, opt, epochs=1, batch_size=8, generator=torch.Generator())


def test_evaluate_empty_split_is_nan():
    model, x, y = _toy()
    res = evaluate(model, x[:0], y[:0])
    assert res.num_examples == 0 and math.isnan(res.accuracy)


def test_after_step_sees_every_step_and_can_change_the_rate():
    model, x, y = _toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def hook(epoch, batch):
        calls.append((epoch, batch, opt.param_groups[0]["lr"]))
        opt.param_groups[0]["lr"] *= 0.5  # the next step uses the new rate

    res = train(model, x, y, opt, epochs=2, batch_size=30, generator=torch.Generator(),
                after_step=hook)
    assert res.steps == 6
    assert [(e, b) for e, b, _ in calls] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [lr for _, _, lr in calls] == pytest.approx([0.1 * 0.5 ** i for i in range(6)])

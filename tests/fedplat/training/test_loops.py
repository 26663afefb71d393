"""Local training, evaluation and metrics (loss, accuracy, weighted F1 over a whole split)."""

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from fedplat.training.loops import (
    batches,
    confusion_matrix,
    evaluate,
    make_optimizer,
    train,
    weighted_f1,
)


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


def test_weighted_f1_by_hand():
    # true: 0 0 0 1 ; pred: 0 0 1 1 -> F1_0 = 2*2/(3+2) = 0.8, F1_1 = 2*1/(1+2) = 2/3
    cm = confusion_matrix(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1]), 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert weighted_f1(cm) == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4)
    assert math.isnan(weighted_f1(torch.zeros(3, 3)))


def test_weighted_f1_matches_sklearn_with_absent_classes():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 4, 50)  # class 4 and 5 never true
        p = rng.integers(0, 6, 50)
        cm = confusion_matrix(torch.from_numpy(y), torch.from_numpy(p), 6)
        assert weighted_f1(cm) == pytest.approx(f1_score(y, p, average="weighted"))


def test_evaluate_f1_is_over_the_whole_split_not_per_batch():
    x = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    model = torch.nn.Identity()
    whole = evaluate(model, x, y, batch_size=4).f1
    batched = evaluate(model, x, y, batch_size=1).f1
    assert whole == batched == pytest.approx((2 * 0.8 + 2 * 2 / 3) / 4)


# -- mixed precision (client.amp) -------------------------------------------------------------


def _train_toy(amp=None, epochs=3):
    model, x, y = _toy()
    opt = make_optimizer(model.parameters(), OmegaConf.create(
        {"optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.0}))
    kwargs = {} if amp is None else {"amp": amp}
    res = train(model, x, y, opt, epochs=epochs, batch_size=16,
                generator=torch.Generator().manual_seed(1), **kwargs)
    return res, model.state_dict()


def test_amp_none_is_the_float32_loop_bit_for_bit():
    default, w_default = _train_toy()
    none, w_none = _train_toy("none")
    assert default == none
    assert all(torch.equal(w_default[k], w_none[k]) for k in w_default)


def test_bf16_autocast_trains_close_to_float32_on_cpu():
    full, w_full = _train_toy("none")
    half, w_half = _train_toy("bf16")
    assert math.isfinite(half.loss) and half.steps == full.steps == 12
    assert half.loss != full.loss  # it did run in bfloat16
    assert half.loss == pytest.approx(full.loss, rel=0.05)
    for k in w_full:
        assert w_half[k].dtype == torch.float32  # parameters stay float32
        assert torch.allclose(w_half[k], w_full[k], atol=0.05)


def test_fp16_needs_cuda_and_unknown_precisions_are_refused():
    with pytest.raises(ValueError, match=r"client\.amp=fp16 needs a CUDA device"):
        _train_toy("fp16")
    with pytest.raises(ValueError, match=r"client\.amp=fp8: expected none, bf16 or fp16"):
        _train_toy("fp8")


def test_a_loss_scaler_step_unscales_before_clipping():
    """The fp16 path's step (scale, backward, unscale, clip, step), run with a CPU scaler."""
    from fedplat.training.loops import _step

    model, x, y = _toy()
    twin, _, _ = _toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_twin = torch.optim.SGD(twin.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    loss = nn.functional.cross_entropy(model(x), y)
    _step(model, opt, loss, None, 0.01, 0, scaler)
    _step(twin, opt_twin, nn.functional.cross_entropy(twin(x), y), None, 0.01, 0)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6)  # same clipped update as without scaling

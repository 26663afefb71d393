"""Batched (vmap) training equals sequential torch.optim.SGD training per client."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from fedplat.core import ops
from fedplat.training import batched
from fedplat.training.loops import make_optimizer, train


def _clients(sizes, features=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        x = torch.randn(n, features, generator=g)
        y = torch.randint(0, classes, (n,), generator=g)
        out.append((x, y))
    return out


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize(("momentum", "weight_decay", "epochs"), [(0.0, 0.0, 1), (0.9, 1e-3, 3)])
def test_batched_sgd_matches_sequential(momentum, weight_decay, epochs):
    data = _clients([37, 8, 64, 1])  # uneven sizes: short last batches, early finishers
    model = _model()
    start = ops.clone(dict(model.named_parameters()))
    starts = [{k: v + 0.01 * i for k, v in start.items()} for i in range(len(data))]
    cfg = OmegaConf.create({"optimizer": "sgd", "lr": 0.1, "momentum": momentum,
                            "weight_decay": weight_decay})
    expected, exp_res = [], []
    for i, (x, y) in enumerate(data):
        m = _model()
        m.load_state_dict(starts[i])
        res = train(m, x, y, make_optimizer(m.parameters(), cfg), epochs=epochs, batch_size=10,
                    generator=torch.Generator().manual_seed(100 + i))
        expected.append(ops.clone(m.state_dict()))
        exp_res.append(res)
    got, res, finite = batched.train_sgd(
        _model(), starts,
        [batched.ClientBatchData(x, y, torch.Generator().manual_seed(100 + i))
         for i, (x, y) in enumerate(data)],
        epochs=epochs, batch_size=10, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    assert finite == [True] * len(data)
    for e, g, er, r in zip(expected, got, exp_res, res):
        for k in e:
            assert torch.allclose(e[k], g[k], atol=1e-5, rtol=1e-5), k
        assert (er.num_examples, er.steps) == (r.num_examples, r.steps)
        assert r.loss == pytest.approx(er.loss, rel=1e-5)


def test_models_with_buffers_are_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    assert not batched.supports_batching(model)
    with pytest.raises(ValueError, match="without buffers"):
        batched.train_sgd(model, [{}], [], epochs=1, batch_size=2, lr=0.1)


def test_stack_unstack_round_trip():
    states = [{"w": torch.full((2, 3), float(i))} for i in range(4)]
    stacked = batched.stack(states)
    assert stacked["w"].shape == (4, 2, 3)
    rows = batched.unstack(stacked)
    assert all(torch.equal(a["w"], b["w"]) for a, b in zip(states, rows))
    rows[1]["w"].add_(10.0)  # rows do not overlap: the other clients keep their values
    assert [float(r["w"][0, 0]) for r in rows] == [0.0, 11.0, 2.0, 3.0]


def test_a_diverging_client_is_flagged_and_keeps_its_start_values():
    data = _clients([20, 20])
    model = _model()
    start = ops.clone(dict(model.named_parameters()))
    bad = {k: v.clone() for k, v in start.items()}
    bad["0.weight"][0, 0] = float("nan")
    got, res, finite = batched.train_sgd(
        _model(), [start, bad],
        [batched.ClientBatchData(x, y, torch.Generator().manual_seed(i))
         for i, (x, y) in enumerate(data)], epochs=1, batch_size=8, lr=0.1)
    assert finite == [True, False]
    assert res[1].loss != res[1].loss  # NaN
    assert torch.isnan(got[1]["0.weight"][0, 0]) and torch.equal(got[1]["2.bias"], bad["2.bias"])
    assert not torch.equal(got[0]["2.bias"], start["2.bias"])


def test_flatten_unflatten_and_evaluate_many():
    model = _model()
    flat = torch.stack([torch.cat([p.detach().reshape(-1) for p in model.parameters()])] * 3)
    stacked = batched.unflatten(model, flat)
    assert stacked["0.weight"].shape == (3, 16, 6)
    assert torch.equal(batched.flatten(stacked), flat)
    x, y = _clients([30])[0]
    acc, loss = batched.evaluate_many(model, stacked, x, y, batch_size=7)
    from fedplat.training.loops import evaluate

    ref = evaluate(model, x, y)
    assert torch.allclose(acc, torch.full((3,), ref.accuracy, dtype=torch.float64))
    assert torch.allclose(loss, torch.full((3,), ref.loss, dtype=torch.float64), rtol=1e-5)


def test_batched_bf16_follows_sequential_bf16_and_refuses_fp16():
    data = _clients([37, 20])
    model = _model()
    start = ops.clone(dict(model.named_parameters()))
    cfg = OmegaConf.create({"optimizer": "sgd", "lr": 0.1, "momentum": 0.0,
                            "weight_decay": 0.0})
    expected = []
    for i, (x, y) in enumerate(data):
        m = _model()
        m.load_state_dict(start)
        train(m, x, y, make_optimizer(m.parameters(), cfg), epochs=2, batch_size=10,
              generator=torch.Generator().manual_seed(100 + i), amp="bf16")
        expected.append(ops.clone(m.state_dict()))
    feed = [batched.ClientBatchData(x, y, torch.Generator().manual_seed(100 + i))
            for i, (x, y) in enumerate(data)]
    got, res, finite = batched.train_sgd(_model(), [start, start], feed, epochs=2,
                                         batch_size=10, lr=0.1, amp="bf16")
    assert finite == [True, True] and all(r.loss == r.loss for r in res)
    for e, g in zip(expected, got):
        for k in e:
            assert g[k].dtype == torch.float32
            assert torch.allclose(e[k], g[k], atol=2e-2)
    with pytest.raises(ValueError, match="no fp16 loss scaling"):
        batched.train_sgd(_model(), [start], feed[:1], epochs=1, batch_size=10, lr=0.1,
                          amp="fp16")


def test_evaluate_splits_gives_each_split_what_evaluate_gives_it():
    from fedplat.training.loops import evaluate

    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 3))
    model.train()  # evaluate_splits puts it in eval mode, as evaluate does
    splits = _clients([37, 0, 8, 1, 64])
    got = batched.evaluate_splits(model, splits, batch_size=7, rows=20)  # several passes
    assert not model.training
    for (x, y), res in zip(splits, got):
        ref = evaluate(model, x, y, 7)
        assert (res.correct, res.num_examples) == (ref.correct, ref.num_examples)
        if ref.confusion is None:
            assert res.confusion is None and len(y) == 0
            continue
        assert torch.equal(res.confusion, ref.confusion)
        assert abs(res.loss_sum - ref.loss_sum) <= 1e-5 * max(1.0, abs(ref.loss_sum))
        assert res.f1 == pytest.approx(ref.f1, abs=1e-12)
    assert batched.evaluate_splits(model, [_clients([0])[0]])[0].num_examples == 0

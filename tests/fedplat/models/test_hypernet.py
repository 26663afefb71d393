"""Hypernetwork machinery: generated weights keep the gradient path to the hypernetwork."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedplat.errors import UserError
from fedplat.models.hypernet import (
    HyperNetwork,
    TargetSpec,
    auto_embed_dim,
    check_size_limit,
    check_sizes,
    check_target,
    clip_by_global_norm,
    functional_forward,
    head_names,
    hypernet_size,
    vjp,
)
from fedplat.models.nets import MLP, HyperFLCNN, LeNet


def _tiny(dtype=torch.float64):
    torch.manual_seed(0)
    target = MLP(3, [4], 2).to(dtype)
    spec = TargetSpec.of(target)
    hnet = HyperNetwork(spec, embed_dim=2, hidden=5, n_hidden=1).to(dtype)
    emb = nn.Parameter(torch.randn(2, dtype=dtype))
    x = torch.randn(6, 3, dtype=dtype)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    return target, hnet, emb, x, y


def _loss(target, hnet, emb, x, y):
    return F.cross_entropy(functional_forward(target, hnet(emb), x), y)


def test_client_loss_gradients_reach_hypernetwork_and_embedding_and_match_finite_differences():
    target, hnet, emb, x, y = _tiny()
    params = [*hnet.parameters(), emb]
    grads = torch.autograd.grad(_loss(target, hnet, emb, x, y), params)
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(float(g.abs().sum()) > 0 for g in grads), "a parameter got no gradient"
    eps = 1e-6
    gen = torch.Generator().manual_seed(1)
    for p, g in zip(params, grads):
        flat = p.data.view(-1)
        for i in torch.randperm(flat.numel(), generator=gen)[:4].tolist():
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + eps
                up = float(_loss(target, hnet, emb, x, y))
                flat[i] = old - eps
                down = float(_loss(target, hnet, emb, x, y))
                flat[i] = old
            fd = (up - down) / (2 * eps)
            assert abs(fd - float(g.view(-1)[i])) < 1e-7 + 1e-5 * abs(fd)


def test_target_module_weights_are_not_used_when_generated_ones_are_given():
    target, hnet, emb, x, _ = _tiny()
    generated = hnet(emb)
    out = functional_forward(target, generated, x)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(1.0)
    assert torch.equal(out, functional_forward(target, generated, x))
    assert not torch.allclose(out, target(x))


def test_vjp_equals_backprop_of_the_inner_product():
    _, hnet, emb, _, _ = _tiny()
    theta = hnet(emb)
    delta = {k: torch.randn_like(v) for k, v in theta.items()}
    params = [*hnet.parameters(), emb]
    manual = vjp(theta, delta, params, retain_graph=True)
    inner = sum((theta[k] * delta[k]).sum() for k in theta)
    direct = torch.autograd.grad(inner, params)
    for a, b in zip(manual, direct):
        torch.testing.assert_close(a, b)


def test_vjp_fills_zeros_for_parameters_outside_the_graph():
    _, hnet, emb, _, _ = _tiny()
    unused = nn.Parameter(torch.ones(3, dtype=torch.float64))
    theta = hnet(emb)
    grads = vjp(theta, {k: torch.ones_like(v) for k, v in theta.items()}, [emb, unused])
    assert torch.equal(grads[1], torch.zeros(3, dtype=torch.float64))


def test_shapes_names_and_sizes_match_the_papers():
    lenet = LeNet((3, 32, 32), 10)
    assert sum(p.numel() for p in lenet.parameters()) == 121_182  # pFedHN's CNNTarget
    assert head_names(lenet) == ["fc3.weight", "fc3.bias"]
    fmnist = HyperFLCNN((1, 28, 28), 10)
    body = TargetSpec.of(fmnist, exclude=head_names(fmnist))
    assert body.names == ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                          "fc1.weight", "fc1.bias")
    assert body.numel == 115_776  # HyperFL spec, FMNIST
    assert hypernet_size(body, 64, 128, 0) == 14_943_424  # HyperFL: uploaded parameters
    cifar = TargetSpec.of(HyperFLCNN((3, 32, 32), 10), exclude=["fc2.weight", "fc2.bias"])
    assert cifar.numel == 106_400 and hypernet_size(cifar, 64, 128, 0) == 13_733_920
    hnet = HyperNetwork(body, 64, 128, 0, relu_out=True)
    assert sum(p.numel() for p in hnet.parameters()) == hypernet_size(body, 64, 128, 0)
    out = hnet(torch.zeros(64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        n: tuple(s) for n, s in zip(body.names, body.shapes)}
    assert isinstance(hnet.trunk[-1], nn.ReLU)
    deep = HyperNetwork(TargetSpec.of(lenet), 13, 100, 3)
    assert isinstance(deep.trunk[-1], nn.Linear) and len(deep.trunk) == 7  # pFedHN trunk
    assert auto_embed_dim(50) == 13 and auto_embed_dim(100) == 26 and auto_embed_dim(10) == 3


def test_clip_by_global_norm_matches_torch():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    ps = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))]
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    nn.utils.clip_grad_norm_(ps, 1.0)
    for c, p in zip(clipped, ps):
        torch.testing.assert_close(c, p.grad)
    same, _ = clip_by_global_norm(grads, 10.0)
    assert all(torch.equal(a, b) for a, b in zip(same, grads))


def test_targets_a_hypernetwork_cannot_generate_are_user_errors():
    with pytest.raises(UserError, match=r"buffers .*BatchNorm"):
        check_target(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), "bn")
    with pytest.raises(UserError, match="single layer"):
        check_target(nn.Linear(2, 2), "linear", exclude_head=True)
    with pytest.raises(UserError, match="max_params"):
        check_size_limit(TargetSpec.of(LeNet((3, 32, 32), 10)), 13, 100, 3, 1_000_000, "lenet",
                         "strategy.hypernet")
    for key, value in (("embed_dim", 0), ("hidden", -3), ("n_hidden", -1)):
        sizes = {"embed_dim": 4, "hidden": 8, "n_hidden": 1, key: value}
        with pytest.raises(UserError, match=rf"strategy.hypernet.{key}={value} must be"):
            check_sizes(sizes["embed_dim"], sizes["hidden"], sizes["n_hidden"],
                        "strategy.hypernet")


def test_paper_targets_are_selectable_and_reject_inputs_they_cannot_take():
    from tests.helpers import make_cfg

    assert make_cfg("dataset=fashion_mnist", "model=lenet").model.n_kernels == 16 \
        if _has_fashion() else True
    for name in ("lenet", "hyperfl_cnn"):
        with pytest.raises(UserError, match=rf"model '{name}' cannot take the 1x8x8 inputs"):
            make_cfg("dataset=digits", f"model={name}")
        with pytest.raises(UserError, match=rf"model '{name}' cannot take vector data"):
            make_cfg("dataset=mnist1d", f"model={name}")


def _has_fashion() -> bool:
    from fedplat.data.datasets.fashion_mnist import DEBIAN_FASHION_DIR

    return DEBIAN_FASHION_DIR.is_dir()

"""Train and evaluate many nodes' models at once (torch.func.vmap over stacked parameters).

A P2P network has many small models that each take a few minibatch steps per round; trained
one after another, the per-step Python and dispatch overhead dominates. Here the nodes of a
shard that hold the same number of samples train together: their flat parameter vectors are
stacked into a (k, P) tensor, `functional_call` is vmapped over nodes, and one backward pass
gives every node its own gradient (the summed loss separates by node). Each node keeps its own
batch order (the same seeded permutations as the sequential path), so the updates are the
sequential ones up to floating-point rounding (tested). SGD (momentum, weight decay) only;
other optimizers use the sequential path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F


def _shapes(model: nn.Module) -> list[tuple[str, torch.Size, int]]:
    return [(name, p.shape, p.numel()) for name, p in model.named_parameters()]


def unflatten(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """(k, P) stacked vectors -> {name: (k, *shape)} views, in the model's parameter order."""
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, shape, n in _shapes(model):
        out[name] = flat[:, offset:offset + n].reshape(flat.shape[0], *shape)
        offset += n
    return out


def _logits(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return vmap(lambda p, xb: functional_call(model, p, (xb,)))(params, x)


def train_sgd(model: nn.Module, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
              generators: Sequence[torch.Generator], *, epochs: int, batch_size: int,
              lr: float, momentum: float = 0.0, weight_decay: float = 0.0
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`epochs` of minibatch SGD for k nodes at once.

    flat: (k, P) start vectors; x: (k, n, ...) and y: (k, n) each node's data (same n);
    generators[i]: node i's batch-order generator. Returns the new (k, P) vectors, each node's
    mean training loss over the samples it saw, and a mask of nodes whose loss stayed finite
    (the others' vectors are returned unchanged).
    """
    k, n = y.shape[0], y.shape[1]
    # one leaf tensor per parameter (slicing one flat leaf would make every backward pass
    # write whole (k, P) gradients per slice)
    params = {name: t.detach().clone().requires_grad_(True)
              for name, t in unflatten(model, flat).items()}
    leaves = list(params.values())
    bufs: list[torch.Tensor] | None = None
    total = torch.zeros(k, dtype=torch.float64)
    seen = 0
    finite = torch.ones(k, dtype=torch.bool)
    rows = torch.arange(k)[:, None]
    for _ in range(epochs):
        perms = torch.stack([torch.randperm(n, generator=g) for g in generators])
        for start in range(0, n, batch_size):
            idx = perms[:, start:start + batch_size]  # (k, b)
            xb, yb = x[rows, idx], y[rows, idx]
            logits = _logits(model, params, xb)  # (k, b, C)
            losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                     reduction="none").reshape(k, -1).mean(dim=1)
            ok = torch.isfinite(losses.detach())
            finite &= ok
            grads = list(torch.autograd.grad(torch.where(ok, losses, 0.0).sum(), leaves))
            with torch.no_grad():
                if weight_decay:
                    grads = [g + weight_decay * p for g, p in zip(grads, leaves)]
                if momentum:
                    if bufs is None:
                        bufs = [g.clone() for g in grads]
                    else:
                        for b, g in zip(bufs, grads):
                            b.mul_(momentum).add_(g)
                    grads = bufs
                for p, g in zip(leaves, grads):
                    p.add_(g, alpha=-lr)
            total += losses.detach().to(torch.float64) * idx.shape[1]
            seen += idx.shape[1]
    out = torch.cat([p.detach().reshape(k, -1) for p in leaves], dim=1)
    out[~finite] = flat[~finite]
    mean = total / max(seen, 1)
    mean[~finite] = math.nan
    return out, mean, finite


@torch.no_grad()
def evaluate_many(model: nn.Module, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and mean cross-entropy of k stacked models on one shared test set."""
    k = flat.shape[0]
    params = unflatten(model, flat)
    correct = torch.zeros(k, dtype=torch.int64)
    loss_sum = torch.zeros(k, dtype=torch.float64)
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = vmap(lambda p, xs: functional_call(model, p, (xs,)),
                      in_dims=(0, None))(params, xb)  # (k, b, C)
        correct += (logits.argmax(dim=2) == yb[None]).sum(dim=1)
        loss_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                    yb.repeat(k), reduction="none").reshape(k, -1).sum(
            dim=1).to(torch.float64)
    n = max(len(y), 1)
    return correct.to(torch.float64) / n, loss_sum / n

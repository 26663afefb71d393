"""Train many clients' copies of one architecture at once with `torch.func` (issue: throughput).

Small FL models leave a CPU core mostly idle: one client's minibatch step is a few tiny matrix
products. Stacking the parameters of C clients along a leading dimension and `vmap`-ing the
per-client gradient turns C small steps into one batched step.

The result equals sequential training (`fedplat.training.train` with `torch.optim.SGD`) up to
floating-point reassociation:

* each client draws its batch order from its own generator exactly as the sequential loop does
  (one `randperm` per epoch), so batch contents match;
* clients with fewer batches simply stop stepping (masked updates); short last batches are padded
  and masked, and each client's loss is the mean over its real samples;
* SGD follows PyTorch's rule: g += wd * p; buf = momentum * buf + g (buf starts at g);
  p -= lr * buf.

Only models without buffers (no BatchNorm running statistics) and without randomness in the
forward pass (no dropout) qualify; `supports_batching` says whether a model does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

from fedplat.training import TrainResult

Params = dict[str, torch.Tensor]


def supports_batching(model: nn.Module) -> bool:
    """True for models whose forward pass depends on parameters alone (no buffers/dropout)."""
    has_buffers = any(True for _ in model.buffers())
    has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    return not has_buffers and not has_dropout


def stack(states: Sequence[dict[str, torch.Tensor]]) -> Params:
    """{name: tensor} per client -> {name: (C, *shape) tensor}."""
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}


def unstack(stacked: Params) -> list[Params]:
    """Inverse of `stack`."""
    n = next(iter(stacked.values())).shape[0]
    return [{k: v[i].clone() for k, v in stacked.items()} for i in range(n)]


@dataclass(frozen=True)
class ClientBatchData:
    """One client's training tensors and its batch-order generator."""

    x: torch.Tensor
    y: torch.Tensor
    generator: torch.Generator


def _schedules(data: Sequence[ClientBatchData], epochs: int,
               batch_size: int) -> list[list[torch.Tensor]]:
    """Each client's sequence of index batches over all epochs (as the sequential loop draws)."""
    out = []
    for d in data:
        seq: list[torch.Tensor] = []
        for _ in range(epochs):
            seq.extend(torch.randperm(len(d.y), generator=d.generator).split(batch_size))
        out.append(seq)
    return out


def train_sgd(
    model: nn.Module,
    start: Sequence[Params],
    data: Sequence[ClientBatchData],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> tuple[list[Params], list[TrainResult]]:
    """Train one copy of `model` per client from `start[i]` on `data[i]`, all at once.

    Returns the trained parameters and a TrainResult per client (mean loss over samples seen,
    samples, steps), as `fedplat.training.train` would for each client alone.
    """
    if not supports_batching(model):
        raise ValueError("batched training needs a model without buffers or dropout")
    if len(start) != len(data) or not data:
        raise ValueError("need one start state per client and at least one client")
    device = next(model.parameters()).device
    names = [n for n, _ in model.named_parameters()]
    params = stack([{n: s[n].to(device) for n in names} for s in start])
    buf = {n: torch.zeros_like(p) for n, p in params.items()}
    schedules = _schedules(data, epochs, batch_size)
    steps = [len(s) for s in schedules]
    feat_shape = data[0].x.shape[1:]
    clients = len(data)

    def loss_fn(p: Params, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, p, (x,))
        per_sample = F.cross_entropy(logits, y, reduction="none")
        return (per_sample * m).sum() / m.sum().clamp(min=1.0)

    step_fn = vmap(grad_and_value(loss_fn), randomness="error")
    # Gather every step's batches with one indexing op: pad each client's data to the largest
    # client, and precompute (steps, clients, batch) index and mask tensors.
    longest = max(len(d.y) for d in data)
    x_all = torch.zeros((clients, longest, *feat_shape), dtype=data[0].x.dtype, device=device)
    y_all = torch.zeros((clients, longest), dtype=torch.long, device=device)
    for i, d in enumerate(data):
        x_all[i, :len(d.y)] = d.x.to(device)
        y_all[i, :len(d.y)] = d.y.to(device)
    total = max(steps)
    index = torch.zeros((total, clients, batch_size), dtype=torch.long)
    mask = torch.zeros((total, clients, batch_size), dtype=torch.float32)
    for i, seq in enumerate(schedules):
        for t, idx in enumerate(seq):
            index[t, i, :len(idx)] = idx
            mask[t, i, :len(idx)] = 1.0
    index, mask = index.to(device), mask.to(device)
    rows = torch.arange(clients, device=device)[:, None]
    loss_sum = torch.zeros(clients, dtype=torch.float64)
    seen = torch.zeros(clients, dtype=torch.long)
    model.train()
    for t in range(total):
        xb, yb, mb = x_all[rows, index[t]], y_all[rows, index[t]], mask[t]
        active = torch.tensor([t < n for n in steps])
        grads, losses = step_fn(params, xb, yb, mb)
        if not torch.isfinite(losses[active]).all():
            bad = [i for i in range(clients) if active[i] and not torch.isfinite(losses[i])]
            raise FloatingPointError(f"non-finite training loss for clients {bad} at step {t}; "
                                     "lower client.lr")
        act = active.to(device)
        counts = mb.sum(dim=1)
        loss_sum += (losses.detach() * counts).to(torch.float64).cpu() * active
        seen += counts.long().cpu() * active
        with torch.no_grad():
            for n in names:
                shape = (clients,) + (1,) * (params[n].dim() - 1)
                a = act.view(shape)
                g = grads[n]
                if weight_decay:
                    g = g + weight_decay * params[n]
                if momentum:
                    new_buf = momentum * buf[n] + g
                    buf[n] = torch.where(a, new_buf, buf[n])
                    g = buf[n]
                params[n] = torch.where(a, params[n] - lr * g, params[n])
    results = [TrainResult(float(loss_sum[i] / seen[i]) if seen[i] else math.nan,
                           int(seen[i]), steps[i]) for i in range(clients)]
    return unstack({k: v.detach() for k, v in params.items()}), results

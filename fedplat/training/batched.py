"""Train many copies of one architecture at once (stacked parameters, `torch.func.vmap`).

Small FL models leave a CPU core mostly idle: one client's minibatch step is a few tiny matrix
products, and Python/dispatch overhead dominates. Stacking the parameters of k clients (or
peer-to-peer nodes) along a leading dimension and vmapping the forward pass turns k small steps
into one batched step; one backward pass over the sum of the per-client mean losses gives every
client its own gradient (the sum separates by client).

The result equals sequential training (`fedplat.training.loops.train` with `torch.optim.SGD`) up to
floating-point reassociation (tested):

* each client draws its batch order from its own generator exactly as the sequential loop does
  (one `randperm` per epoch), so batch contents match;
* clients may hold different numbers of samples: short last batches are padded and masked, each
  client's loss is the mean over its real samples, and a client whose batches are used up stops
  stepping (masked update);
* SGD follows PyTorch's rule: g += wd * p; buf = momentum * buf + g (buf starts at g);
  p -= lr * buf.

Only models without buffers (no BatchNorm running statistics), without randomness in the
forward pass (no dropout) and without recurrent layers (torch.func has no batching rule for the
LSTM/GRU kernels) qualify: see `supports_batching`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from fedplat.training.loops import EvalResult, TrainResult, autocast, eval_result

Params = dict[str, torch.Tensor]


def supports_batching(model: nn.Module) -> bool:
    """True for models vmap can run on stacked parameters.

    The forward pass must depend on the parameters alone (no buffers, no dropout), and hold no
    recurrent layer (`aten::lstm` has no batching rule in torch.func).
    """
    has_buffers = any(True for _ in model.buffers())
    has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    recurrent = any(isinstance(m, nn.RNNBase) for m in model.modules())
    return not has_buffers and not has_dropout and not recurrent


def stack(states: Sequence[Params]) -> Params:
    """{name: tensor} per client -> {name: (k, *shape) tensor}."""
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}


def unstack(stacked: Params) -> list[Params]:
    """Inverse of `stack`: each client's tensors are views of its row (no copy).

    Rows do not overlap, so one client's tensors can be changed without touching another's;
    at hundreds of clients per call, copying them cost as much as a training epoch.
    """
    n = next(iter(stacked.values())).shape[0]
    return [{k: v[i] for k, v in stacked.items()} for i in range(n)]


def unflatten(model: nn.Module, flat: torch.Tensor) -> Params:
    """(k, P) stacked parameter vectors -> {name: (k, *shape)} views, in parameter order."""
    out: Params = {}
    offset = 0
    for name, p in model.named_parameters():
        n = p.numel()
        out[name] = flat[:, offset:offset + n].reshape(flat.shape[0], *p.shape)
        offset += n
    return out


def flatten(stacked: Params) -> torch.Tensor:
    """Inverse of `unflatten`: {name: (k, *shape)} -> (k, P)."""
    k = next(iter(stacked.values())).shape[0]
    return torch.cat([v.reshape(k, -1) for v in stacked.values()], dim=1)


def _forward(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    return vmap(lambda p, xb: functional_call(model, p, (xb,)), randomness="error")(params, x)


def train_sgd_stacked(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    counts: Sequence[int],
    generators: Sequence[torch.Generator],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    amp: str = "none",
) -> tuple[Params, torch.Tensor, torch.Tensor]:
    """Minibatch SGD for k stacked models at once.

    params: {name: (k, *shape)}; x: (k, n_max, ...) and y: (k, n_max) each client's data padded
    to the largest client; counts[i]: client i's real samples; generators[i]: its batch order.
    Returns the trained stacked parameters, each client's mean training loss over the samples
    it saw, and a mask of clients whose loss stayed finite (the others keep their start values
    and get a NaN loss). Everything runs on `x`'s device (the generators draw on the CPU, as
    the sequential loop's do); `amp` is `client.amp` (`bf16`: forward passes under autocast).
    """
    if not supports_batching(model):
        raise ValueError("batched training needs a model without buffers or dropout")
    k = len(counts)
    device = x.device
    if amp == "fp16":
        raise ValueError("batched training has no fp16 loss scaling; train one client at a time")
    mixed = autocast(device, amp)
    start = {n: p.detach() for n, p in params.items()}
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    bufs: dict[str, torch.Tensor] = {}
    # Per epoch, row i holds client i's permutation (as the sequential loop draws it) padded to
    # the largest client; column chunks of `batch_size` are then client i's batches in order.
    # A client with fewer samples idles (masked, no update) in the trailing chunks of an epoch,
    # which changes when it steps but not what it computes.
    n_max = int(x.shape[1])
    chunks = math.ceil(n_max / batch_size) if n_max else 0
    width = chunks * batch_size
    valid = torch.arange(width)[None, :] < torch.as_tensor(list(counts))[:, None]  # (k, width)
    perms = torch.zeros((epochs, k, width), dtype=torch.long)
    for e in range(epochs):
        for i, (c, gen) in enumerate(zip(counts, generators)):
            perms[e, i, :c] = torch.randperm(int(c), generator=gen)
    index = perms.reshape(epochs, k, chunks, batch_size).permute(0, 2, 1, 3).reshape(
        epochs * chunks, k, batch_size).to(device)
    mask = valid.float().reshape(k, chunks, batch_size).permute(1, 0, 2).repeat(
        epochs, 1, 1).to(device)
    total_steps = epochs * chunks
    rows = torch.arange(k, device=device)[:, None]
    loss_sum = torch.zeros(k, dtype=torch.float64)
    seen = torch.zeros(k, dtype=torch.float64)
    finite = torch.ones(k, dtype=torch.bool)
    for t in range(total_steps):
        m = mask[t]
        n_real = m.sum(dim=1)
        active = n_real > 0
        with mixed:
            logits = _forward(model, leaves, x[rows, index[t]])  # (k, b, classes)
            per_sample = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                         y[rows, index[t]].reshape(-1), reduction="none")
        losses = (per_sample.reshape(k, -1) * m).sum(dim=1) / n_real.clamp(min=1.0)
        ok = torch.isfinite(losses.detach())
        finite &= ok.cpu() | ~active.cpu()
        use = active & ok & finite.to(device)
        all_in = bool(use.all())
        objective = losses.sum() if all_in else torch.where(use, losses, 0.0).sum()
        grads = torch.autograd.grad(objective, list(leaves.values()))
        with torch.no_grad():
            for (name, p), g in zip(leaves.items(), grads):
                if weight_decay:
                    g = g.add(p, alpha=weight_decay)
                if all_in:  # every client steps: plain in-place SGD (the common case)
                    if momentum:
                        buf = bufs.get(name)
                        if buf is None:
                            bufs[name] = buf = g.clone()
                        else:
                            buf.mul_(momentum).add_(g)
                        g = buf
                    p.sub_(g, alpha=lr)
                    continue
                u = use.view((k,) + (1,) * (p.dim() - 1))
                if momentum:
                    buf = bufs.get(name)
                    buf = g.clone() if buf is None else torch.where(u, momentum * buf + g, buf)
                    bufs[name] = buf
                    g = buf
                p.copy_(torch.where(u, p - lr * g, p))
            used = use.to(torch.float64).cpu()
            loss_sum += (losses.detach() * n_real).to(torch.float64).cpu() * used
            seen += n_real.to(torch.float64).cpu() * used
    out = {n: torch.where(finite.to(device).view((k,) + (1,) * (p.dim() - 1)), p.detach(),
                          start[n]) for n, p in leaves.items()}
    mean = torch.where(seen > 0, loss_sum / seen.clamp(min=1.0), torch.nan)
    mean[~finite] = math.nan
    return out, mean, finite


@dataclass(frozen=True)
class ClientBatchData:
    """One client's training tensors and its batch-order generator."""

    x: torch.Tensor
    y: torch.Tensor
    generator: torch.Generator


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
    amp: str = "none",
) -> tuple[list[Params], list[TrainResult], list[bool]]:
    """Train one copy of `model` per client from `start[i]` on `data[i]`, all at once.

    Returns each client's trained parameters, a TrainResult per client (as
    `fedplat.training.loops.train` would report for it alone) and whether its loss stayed finite.
    """
    if not supports_batching(model):
        raise ValueError("batched training needs a model without buffers or dropout")
    if len(start) != len(data) or not data:
        raise ValueError("need one start state per client and at least one client")
    device = next(model.parameters()).device
    names = [n for n, _ in model.named_parameters()]
    counts = [len(d.y) for d in data]
    longest = max(counts)
    x = torch.zeros((len(data), longest, *data[0].x.shape[1:]), dtype=data[0].x.dtype,
                    device=device)
    y = torch.zeros((len(data), longest), dtype=torch.long, device=device)
    for i, d in enumerate(data):
        x[i, :counts[i]] = d.x.to(device)
        y[i, :counts[i]] = d.y.to(device)
    params = stack([{n: s[n].to(device) for n in names} for s in start])
    out, losses, finite = train_sgd_stacked(
        model, params, x, y, counts, [d.generator for d in data], epochs=epochs,
        batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, amp=amp)
    per_step = [math.ceil(c / batch_size) * epochs for c in counts]
    results = [TrainResult(float(losses[i]), counts[i] * epochs, per_step[i])
               for i in range(len(data))]
    return unstack(out), results, [bool(f) for f in finite]


@torch.no_grad()
def evaluate_many(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor,
                  batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and mean cross-entropy of k stacked models on one shared test set."""
    k = next(iter(params.values())).shape[0]
    correct = torch.zeros(k, dtype=torch.int64)
    loss_sum = torch.zeros(k, dtype=torch.float64)
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = vmap(lambda p, xs: functional_call(model, p, (xs,)),
                      in_dims=(0, None))(params, xb)  # (k, b, classes)
        correct += (logits.argmax(dim=2) == yb[None]).sum(dim=1).cpu()
        loss_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.repeat(k),
                                    reduction="none").reshape(k, -1).sum(dim=1).double().cpu()
    n = max(len(y), 1)
    return correct.to(torch.float64) / n, loss_sum / n


@torch.no_grad()
def evaluate_splits(model: nn.Module, splits: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    batch_size: int = 256, rows: int = 8192) -> list[EvalResult]:
    """`fedplat.training.loops.evaluate` of one model on each of several (x, y) splits.

    The splits (clients' test or validation data, all on the model's device) are concatenated
    and go through the model in forward passes of up to `rows` rows, instead of one pass per
    split and batch: a node's clients of a small model then cost one forward pass, not one model
    call per client. Each split's loss, accuracy and confusion matrix are reduced from its own
    rows, batch by batch as `evaluate` does (`loops.eval_result`); the logits equal those of
    separate passes up to floating-point reassociation (a matrix product's rounding depends on
    how many rows it multiplies). The model is put in eval mode (dropout off, BatchNorm on its
    running statistics), so any architecture qualifies.
    """
    model.eval()
    total = sum(len(y) for _, y in splits)
    if total == 0:
        return [eval_result(y, [], batch_size) for _, y in splits]
    x_all = torch.cat([x for x, y in splits if len(y)])
    logits = torch.cat([model(x_all[start:start + rows]) for start in range(0, total, rows)])
    out = []
    offset = 0
    for _, y in splits:
        n = len(y)
        mine = logits[offset:offset + n]
        offset += n
        out.append(eval_result(y, (mine[start:start + batch_size]
                                   for start in range(0, n, batch_size)), batch_size))
    return out

"""Local training and evaluation loops shared by clients.

Batches are drawn by index from tensors already in memory (no DataLoader: for the small models of
FL studies its per-batch overhead dominates). The batch order comes from a seeded generator, so
a client's update is a function of (weights, data, seed, round, client id).

Mixed precision (`client.amp`): `bf16` or `fp16` runs each training batch's forward pass and
loss under `torch.autocast` (the parameters, their gradients and the optimizer stay float32);
`fp16` also scales the loss (`torch.amp.GradScaler`) so small gradients survive, and needs a
CUDA device. `none` (the default) runs exactly the float32 code. Evaluation is float32 always.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

Amp = Literal["none", "bf16", "fp16"]
#: The autocast dtype of each `client.amp` value but `none`.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[object]:
    """The context a training batch's forward pass and loss run in for `client.amp`.

    `fp16` on a device other than CUDA raises ValueError (CPUs lack fast float16 kernels and
    the loss scaling it needs is CUDA's; `bf16` is the mixed precision of CPUs).
    """
    if amp == "none":
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"client.amp={amp}: expected none, bf16 or fp16")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"client.amp=fp16 needs a CUDA device, and this client runs on "
                         f"{device}; use client.amp=bf16 (or none)")
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler | None:
    """The loss scaler `fp16` training needs on CUDA (None otherwise)."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


@dataclass(frozen=True)
class TrainResult:
    """Mean training loss over all samples seen, sample count and optimizer steps."""

    loss: float
    num_examples: int
    steps: int


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted class.

    sklearn's `confusion_matrix` gives the same counts; this one `bincount` takes the batch's
    torch tensors as they are, once per evaluation batch, with no conversion to NumPy.
    """
    flat = y_true.long().cpu() * num_classes + y_pred.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def weighted_f1(confusion: torch.Tensor) -> float:
    """Support-weighted mean of per-class F1 over a whole split (sklearn's 'weighted').

    F1_c = 2 TP_c / (support_c + predicted_c), 0 when both are 0; classes absent from the
    split weigh nothing. Computed from the confusion matrix of the whole split, so it is not
    the mean of per-batch F1 scores (which SemiPFL's released code reports). nan when empty.

    Not `sklearn.metrics.f1_score`, which gives the same number (tested on fixed labels) but
    needs every label and prediction of the split at once: evaluation here sums per-batch
    confusion matrices (and the batched path those of several clients in one pass), so the
    labels are never gathered; the confusion matrix is also what other metrics can share.
    """
    c = confusion.double()
    support = c.sum(dim=1)
    total = float(support.sum())
    if total == 0:
        return math.nan
    tp = torch.diagonal(c)
    denom = support + c.sum(dim=0)
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1e-12), torch.zeros_like(tp))
    return float((f1 * support).sum() / total)


@dataclass(frozen=True)
class EvalResult:
    """Summed loss and correct predictions over `num_examples` samples."""

    loss_sum: float
    correct: int
    num_examples: int
    #: Confusion matrix of the whole split (None when not computed).
    confusion: torch.Tensor | None = None

    @property
    def f1(self) -> float:
        """Weighted F1 over the whole split (nan without samples or confusion matrix)."""
        return weighted_f1(self.confusion) if self.confusion is not None else math.nan

    @property
    def loss(self) -> float:
        """Mean loss (nan when there are no samples)."""
        return self.loss_sum / self.num_examples if self.num_examples else math.nan

    @property
    def accuracy(self) -> float:
        """Fraction correct (nan when there are no samples)."""
        return self.correct / self.num_examples if self.num_examples else math.nan


def make_optimizer(params: Iterable[torch.nn.Parameter], client_cfg: DictConfig,
                   lr: float | None = None) -> torch.optim.Optimizer:
    """The optimizer named by `client.optimizer` (sgd with momentum/weight decay, or adam)."""
    rate = float(client_cfg.lr if lr is None else lr)
    if client_cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=rate, weight_decay=float(client_cfg.weight_decay))
    return torch.optim.SGD(params, lr=rate, momentum=float(client_cfg.momentum),
                           weight_decay=float(client_cfg.weight_decay))


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch of index batches (the last one may be smaller)."""
    perm = torch.randperm(n, generator=generator)
    return list(perm.split(batch_size))


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
          extra_loss: Callable[[nn.Module], torch.Tensor] | None, max_grad_norm: float | None,
          step: int, scaler: torch.amp.GradScaler | None = None) -> None:
    """Add the regulariser, refuse a non-finite loss, backpropagate, clip, step.

    With a `scaler` (fp16), the scaled loss is backpropagated, the gradients are unscaled
    before clipping, and the scaler skips a step whose gradients overflowed.
    """
    full = loss + extra_loss(model) if extra_loss is not None else loss
    if not torch.isfinite(full):
        raise FloatingPointError(f"non-finite training loss {full.item()} at step {step}; "
                                 "lower client.lr")
    if scaler is None:
        full.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        return
    scaler.scale(full).backward()
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    max_grad_norm: float | None = None,
    after_step: Callable[[int, int], None] | None = None,
    amp: str = "none",
) -> TrainResult:
    """Run `epochs` passes of minibatch training; raise on a non-finite loss.

    `extra_loss(model)` is added to every batch loss (proximal terms, regularisers).
    `after_step(epoch, batch)` runs after every optimizer step (0-based indices), for rules
    that watch the parameters move or change the optimizer's learning rate between steps
    (per-step learning-rate schedules such as FedHyper's client-side hypergradient).
    A NaN/inf loss raises `FloatingPointError`, so the client's reply becomes an error reply and
    the server never aggregates a poisoned update. `amp` is `client.amp` (module docstring).
    """
    model.train()
    mixed = autocast(x.device, amp)
    scaler = grad_scaler(x.device, amp)
    total, seen, steps = 0.0, 0, 0
    for epoch in range(epochs):
        for batch, idx in enumerate(batches(len(y), batch_size, generator)):
            idx = idx.to(x.device)
            optimizer.zero_grad(set_to_none=True)
            with mixed:
                loss = F.cross_entropy(model(x[idx]), y[idx])
            _step(model, optimizer, loss, extra_loss, max_grad_norm, steps, scaler)
            if after_step is not None:
                after_step(epoch, batch)
            total += loss.item() * len(idx)
            seen += len(idx)
            steps += 1
    return TrainResult(total / seen if seen else math.nan, seen, steps)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 256) -> EvalResult:
    """Cross-entropy, accuracy and the confusion matrix over (x, y)."""
    model.eval()
    return eval_result(y, (model(x[start:start + batch_size])
                           for start in range(0, len(y), batch_size)), batch_size)


@torch.no_grad()
def eval_result(y: torch.Tensor, logits_batches: Iterable[torch.Tensor],
                batch_size: int) -> EvalResult:
    """`evaluate`'s result from the logits of each batch of `batch_size` rows of (x, y).

    Shared by `evaluate` and the evaluation of many clients from one forward pass
    (`fedplat.training.batched.evaluate_splits`), so both reduce the same way.
    """
    loss_sum, correct = 0.0, 0
    confusion: torch.Tensor | None = None
    for start, logits in zip(range(0, len(y), batch_size), logits_batches):
        yb = y[start:start + batch_size]
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        pred = logits.argmax(dim=1)
        correct += int((pred == yb).sum())
        cm = confusion_matrix(yb, pred, logits.shape[1])
        confusion = cm if confusion is None else confusion + cm
    return EvalResult(loss_sum, correct, len(y), confusion)


# --- graphs: the whole (sub)graph is one batch --------------------------------------------------


def train_graph(
    model: nn.Module,
    x: torch.Tensor,
    edge_index: torch.Tensor,
    y: torch.Tensor,
    train_idx: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    max_grad_norm: float | None = None,
    amp: str = "none",
) -> TrainResult:
    """`epochs` full-batch steps of node classification (cross-entropy on the train nodes).

    One epoch is one optimizer step over the whole subgraph (FED-PUB's protocol). `extra_loss`
    and the non-finite check behave as in `train`. The reported loss is the mean cross-entropy
    over the steps (regularisers excluded).
    """
    model.train()
    mixed = autocast(x.device, amp)
    scaler = grad_scaler(x.device, amp)
    total, steps = 0.0, 0
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        with mixed:
            loss = F.cross_entropy(model(x, edge_index)[train_idx], y[train_idx])
        _step(model, optimizer, loss, extra_loss, max_grad_norm, steps, scaler)
        total += loss.item()
        steps += 1
    return TrainResult(total / steps if steps else math.nan, len(train_idx), steps)


@torch.no_grad()
def evaluate_graph(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor,
                   y: torch.Tensor, *node_sets: torch.Tensor) -> list[EvalResult]:
    """Cross-entropy and accuracy on each node set, from one eval-mode forward pass."""
    model.eval()
    logits = model(x, edge_index)
    out = []
    for idx in node_sets:
        if len(idx) == 0:
            out.append(EvalResult(0.0, 0, 0))
            continue
        lg, yy = logits[idx], y[idx]
        out.append(EvalResult(float(F.cross_entropy(lg, yy, reduction="sum")),
                              int((lg.argmax(dim=1) == yy).sum()), len(idx)))
    return out

"""Gradient-inversion attacks on an `AttackProblem`: Inverting Gradients and DLG.

* `ig`, Inverting Gradients (Geiping et al., NeurIPS 2020): minimise 1 - cos(simulated upload,
  observed upload) + tv * TV(x) with Adam on the *signed* gradient of x, the step size divided
  by 10 at 3/8, 5/8 and 7/8 of the iterations, x projected onto the valid input box after
  every step; several restarts from random images, the best by final mismatch kept. Labels
  are inferred from a visible classifier-bias update when there is one (iDLG), else optimised
  jointly as soft labels.
* `dlg`, Deep Leakage from Gradients (Zhu et al., NeurIPS 2019): squared L2 mismatch, no prior,
  L-BFGS on x and soft labels (labels inferred when possible, as in iDLG).

Unknown client-private quantities of the threat model (`problem.unknowns`) are optimised
jointly with x from the threat model's initial guesses. Everything runs on the attacker's own
seeded generator: an attack is reproducible.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from fedplat.errors import UserError
from fedplat.privacy.threat import AttackProblem, Knowledge

ATTACKS = ("ig", "dlg")


@dataclass(frozen=True)
class AttackConfig:
    """Attack settings (the attack budget)."""

    attack: str = "ig"
    iterations: int = 2000
    restarts: int = 1
    lr: float = 0.1
    tv: float = 1e-4
    labels: str = "auto"  # auto (infer when a bias update is visible) | infer | optimise
    seed: int = 0

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise UserError(f"unknown attack '{self.attack}' (choose from: {', '.join(ATTACKS)})")
        if self.labels not in ("auto", "infer", "optimise"):
            raise UserError(f"labels={self.labels!r} is not valid (choose from: auto, infer, "
                            "optimise)")
        if self.iterations < 1 or self.restarts < 1:
            raise UserError("iterations and restarts must be at least 1")
        if not (self.lr > 0 and self.tv >= 0):
            raise UserError("lr must be positive and tv non-negative")


@dataclass
class Reconstruction:
    """The attack's output: images, labels, final mismatch, and bookkeeping."""

    x: torch.Tensor
    labels: torch.Tensor
    labels_inferred: bool
    distance: float
    restart_distances: list[float] = field(default_factory=list)
    seconds: float = 0.0
    unknowns: dict[str, torch.Tensor] = field(default_factory=dict)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (IG's TV prior).

    Along the last axis only for vector inputs (B, L). Two differentiable lines in IG's exact
    form (means over the batch); an image library for them (kornia's `total_variation`, per
    image) would be a new dependency of the attack for no gain.
    """
    dx = (x[..., 1:] - x[..., :-1]).abs().mean()
    if x.dim() < 4:
        return dx
    return dx + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()


def infer_labels(scores: torch.Tensor, count: int) -> torch.Tensor:
    """`count` labels from per-class evidence (negative = present), sorted.

    Every class with negative evidence is taken once (most negative first, at most `count`);
    remaining slots go to those classes in proportion to their evidence (largest remainder).
    One image: the most negative class, which is exact for one SGD step (iDLG).
    """
    order = torch.argsort(scores)
    present = [int(c) for c in order if scores[c] < 0][:count] or [int(order[0])]
    labels = list(present)
    rest = count - len(labels)
    if rest > 0:
        weight = torch.tensor([-float(scores[c]) for c in present]).clamp(min=1e-12)
        share = weight / weight.sum() * rest
        extra = share.floor().long()
        left = rest - int(extra.sum())
        for i in torch.argsort(share - extra, descending=True)[:left]:
            extra[i] += 1
        for c, k in zip(present, extra.tolist()):
            labels += [c] * k
    return torch.tensor(sorted(labels), dtype=torch.long)


def _box(knowledge: Knowledge, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    view = (1, -1) + (1,) * (len(shape) - 2)
    return knowledge.low.reshape(view), knowledge.high.reshape(view)


def invert(problem: AttackProblem, knowledge: Knowledge, config: AttackConfig,
           progress: Callable[[int, int, float], None] | None = None) -> Reconstruction:
    """Run the configured attack; return the best reconstruction over restarts."""
    t0 = time.perf_counter()
    info = knowledge.info
    b, c = problem.num_images, info.num_classes
    gen = torch.Generator().manual_seed(config.seed)
    use_scores = problem.label_scores is not None and config.labels != "optimise"
    if config.labels == "infer" and problem.label_scores is None:
        raise UserError("labels=infer: this threat model sees no classifier-bias update to "
                        "infer labels from; use labels=optimise or auto")
    fixed_y = None
    if use_scores:
        assert problem.label_scores is not None
        fixed_y = infer_labels(problem.label_scores, b)
    best: Reconstruction | None = None
    distances = []
    for restart in range(config.restarts):
        x = torch.randn((b, *info.input_shape), generator=gen)
        low, high = _box(knowledge, x.shape)
        x = torch.max(torch.min(x, high), low).requires_grad_(True)
        y_logits = (torch.randn((b, c), generator=gen) if fixed_y is None else None)
        unknowns = {k: v.detach().clone().requires_grad_(True)
                    for k, v in problem.unknowns.items()}
        extra = [t for t in [y_logits] if t is not None]
        for t in extra:
            t.requires_grad_(True)
        params = [x, *extra, *unknowns.values()]

        def labels_of(y_logits: torch.Tensor | None = y_logits) -> torch.Tensor:
            if fixed_y is not None:
                return F.one_hot(fixed_y, c).float()
            assert y_logits is not None
            return torch.softmax(y_logits, dim=1)

        if config.attack == "ig":
            dist = _run_ig(problem, config, x, labels_of, unknowns, params, low, high,
                           restart, progress)
        else:
            dist = _run_dlg(problem, config, x, labels_of, unknowns, params, restart, progress)
        distances.append(dist)
        labels = fixed_y if fixed_y is not None else labels_of().argmax(dim=1).detach()
        if best is None or dist < best.distance:
            best = Reconstruction(x.detach().clone(), labels.detach().clone(), fixed_y is not None,
                                  dist, unknowns={k: v.detach().clone()
                                                  for k, v in unknowns.items()})
    assert best is not None
    best.restart_distances = distances
    best.seconds = time.perf_counter() - t0
    return best


def _set_grads(loss: torch.Tensor, params: list[torch.Tensor]) -> None:
    """Gradients of `loss` for the attack's variables only.

    `backward()` would also fill leaves created inside a replay (the sent weights), paying for
    paths the attack does not need (for HyperFL, passes over a 15 M-entry matrix).
    """
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, grads):
        p.grad = torch.zeros_like(p) if g is None else g


def _run_ig(problem: AttackProblem, config: AttackConfig, x: torch.Tensor,
            labels_of: Callable[[], torch.Tensor], unknowns: dict[str, torch.Tensor],
            params: list[torch.Tensor], low: torch.Tensor, high: torch.Tensor, restart: int,
            progress: Callable[[int, int, float], None] | None) -> float:
    n = config.iterations
    opt = torch.optim.Adam(params, lr=config.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[int(n * 3 / 8), int(n * 5 / 8), int(n * 7 / 8)], gamma=0.1)
    dist = math.inf
    for it in range(n):
        opt.zero_grad(set_to_none=True)
        d = problem.distance(x, labels_of(), unknowns, "cosine")
        loss = d + config.tv * total_variation(x) if config.tv else d
        _set_grads(loss, params)
        assert x.grad is not None
        x.grad.sign_()
        opt.step()
        sched.step()
        with torch.no_grad():
            x.copy_(torch.max(torch.min(x, high), low))
        dist = float(d.detach())
        if progress is not None and (it % 100 == 0 or it == n - 1):
            progress(restart, it, dist)
    return float(problem.distance(x, labels_of(), unknowns, "cosine").detach())


def _run_dlg(problem: AttackProblem, config: AttackConfig, x: torch.Tensor,
             labels_of: Callable[[], torch.Tensor], unknowns: dict[str, torch.Tensor],
             params: list[torch.Tensor], restart: int,
             progress: Callable[[int, int, float], None] | None) -> float:
    opt = torch.optim.LBFGS(params, lr=config.lr, max_iter=1, history_size=100,
                            tolerance_grad=0.0, tolerance_change=0.0)  # no line search, as DLG
    dist = math.inf

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        d = problem.distance(x, labels_of(), unknowns, "l2")
        _set_grads(d, params)
        return d

    for it in range(config.iterations):
        d = opt.step(closure)
        dist = float(d.detach())
        if not math.isfinite(dist):
            break
        if progress is not None and (it % 100 == 0 or it == config.iterations - 1):
            progress(restart, it, dist)
    return float(problem.distance(x, labels_of(), unknowns, "l2").detach())

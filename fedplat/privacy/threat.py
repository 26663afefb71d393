"""Threat models: what the client sent + what the attacker knows -> a differentiable model of it.

A gradient-inversion attack needs to answer one question for any candidate private batch
(x, y): *what would this client have uploaded?* A `ThreatModel` (the one a strategy declares
in `Strategy.threat_model`) builds that answer from a `Capture` (the real messages of one
client in one round: what the server sent, what the client replied) and `Knowledge` (what the
attacker is assumed to know besides: the run's public protocol, i.e. its config, model
structure, local optimiser and step counts, and the dataset's normalisation constants). The
result is an `AttackProblem`:

* `observed`: the client's real upload, as tensors;
* `simulate(x, y, unknowns)`: the upload the client would have sent for batch (x, y), computed
  by replaying its local training with autograd kept (`create_graph`), so the mismatch with
  `observed` can be minimised over x;
* `unknowns`: client-private quantities the attacker does not know (HyperFL's embedding and
  classifier, pFedHN-PC's head) and must guess, optimised jointly with x;
* `label_scores`: per-class evidence from the update of a visible classifier bias (negative =
  class present), from which labels are inferred (iDLG); None when no such update is visible.

The attack (fedplat.privacy.inversion) only ever sees an `AttackProblem`: one interface for
FedAvg, pFedHN, HyperFL and any other strategy that gets a threat model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from fedplat.core.records import from_record, metrics_of
from fedplat.data.datasets import DatasetInfo
from fedplat.errors import UserError
from fedplat.privacy.capture import Capture

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Knowledge:
    """What the attacker knows besides the captured messages.

    `cfg` is the run's resolved config (the protocol is public: model structure, local
    optimiser, step counts, batch size); `low`/`high` are the per-channel bounds of a valid
    (standardised) input, i.e. the dataset's public normalisation constants applied to the
    pixel range [0, 1].
    """

    cfg: DictConfig
    info: DatasetInfo
    low: torch.Tensor
    high: torch.Tensor


@dataclass
class AttackProblem:
    """A differentiable model of one client's upload (see module doc)."""

    num_images: int
    observed: Tensors
    simulate: Callable[[torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]], Tensors]
    unknowns: Tensors = field(default_factory=dict)
    label_scores: torch.Tensor | None = None
    assumptions: list[str] = field(default_factory=list)
    #: Optional exact shortcut for the cosine/L2 mismatch (HyperFL: the hypernetwork update is
    #: too large to materialise every iteration). Same value as the generic computation.
    mismatch: Callable[[torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor], str],
                       torch.Tensor] | None = None

    def distance(self, x: torch.Tensor, y: torch.Tensor, unknowns: Mapping[str, torch.Tensor],
                 kind: str = "cosine") -> torch.Tensor:
        """Mismatch between the simulated and the observed upload (`cosine` or `l2`)."""
        if self.mismatch is not None:
            return self.mismatch(x, y, unknowns, kind)
        return upload_distance(self.simulate(x, y, unknowns), self.observed, kind)


def upload_distance(sim: Mapping[str, torch.Tensor], obs: Mapping[str, torch.Tensor],
                    kind: str) -> torch.Tensor:
    """Mismatch of two uploads over all entries together.

    `cosine`: 1 - cosine similarity (Inverting Gradients); `l2`: squared distance (DLG),
    relative to the observed update's squared norm (uploads are lr-scaled gradients, tiny in
    absolute terms, which stalls L-BFGS's tolerances).
    """
    names = sorted(obs)
    zero = torch.zeros(())  # sum()'s start: the same additions, in order, as from 0
    o2 = sum((obs[n].pow(2).sum() for n in names), zero)
    if kind == "l2":
        return sum((((sim[n] - obs[n]) ** 2).sum() for n in names), zero) / o2
    dot = sum(((sim[n] * obs[n]).sum() for n in names), zero)
    s2 = sum((sim[n].pow(2).sum() for n in names), zero)
    return 1.0 - dot / (torch.sqrt(s2) * torch.sqrt(o2) + 1e-12)


class ThreatModel:
    """Base class: turn a capture into an `AttackProblem`.

    A strategy names its subclass in `Strategy.threat_model`; `fedplat-attack
    --threat-model pkg.mod.Class` picks any other.

    `options` are the threat model's own settings (`fedplat-attack --option key=value`).
    """

    name = "base"
    #: option name -> (default, help)
    OPTIONS: dict[str, tuple[Any, str]] = {}

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options: dict[str, Any] = {k: d for k, (d, _) in self.OPTIONS.items()}
        for key, value in (options or {}).items():
            if key not in self.OPTIONS:
                known = ", ".join(self.OPTIONS) or "none"
                raise UserError(f"threat model '{self.name}' has no option '{key}' "
                                f"(options: {known})")
            default = self.OPTIONS[key][0]
            self.options[key] = _parse_like(value, default, key)

    def build(self, capture: Capture, knowledge: Knowledge,
              generator: torch.Generator) -> AttackProblem:
        """The attack problem for this capture (`generator`: the attacker's guesses)."""
        raise NotImplementedError


def _parse_like(value: str, default: Any, key: str) -> Any:
    if isinstance(default, bool):
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise UserError(f"option {key}={value!r} must be true or false")
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise UserError(f"option {key}={value!r} must be an integer") from None
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise UserError(f"option {key}={value!r} must be a number") from None
    return value


# --------------------------------------------------------------------------------------------
# Helpers shared by threat models


def soft_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against label distributions `y` (B x C).

    Equals F.cross_entropy for one-hot rows, and lets an attacker optimise labels it does not
    know (DLG).
    """
    return -(y * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def clip_factor(grads: Sequence[torch.Tensor], max_norm: float | None) -> torch.Tensor | float:
    """torch.nn.utils.clip_grad_norm_'s scale: min(1, max_norm / (norm + 1e-6))."""
    if max_norm is None:
        return 1.0
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))  # type: ignore[arg-type]
    return torch.clamp(max_norm / (norm + 1e-6), max=1.0)


@dataclass(frozen=True)
class SGDSpec:
    """torch.optim.SGD settings (no dampening, no Nesterov) plus optional gradient clipping."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    clip: float | None = None


class UnrolledSGD:
    """torch.optim.SGD on a list of tensors, differentiable (new tensors every step).

    d = clip(g) + wd p;  buf = d (first step) else momentum buf + d;  p <- p - lr buf.
    """

    def __init__(self, spec: SGDSpec, buffers: Sequence[torch.Tensor | None] | None = None
                 ) -> None:
        self.spec = spec
        self.buf: list[torch.Tensor | None] | None = list(buffers) if buffers else None

    def step(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]
             ) -> list[torch.Tensor]:
        """New parameters after one step."""
        s = self.spec
        scale = clip_factor(grads, s.clip)
        out: list[torch.Tensor] = []
        bufs: list[torch.Tensor | None] = []
        for i, (p, g) in enumerate(zip(params, grads)):
            d = g * scale + s.weight_decay * p if s.weight_decay else g * scale
            if s.momentum:
                prev = self.buf[i] if self.buf is not None else None
                d = d if prev is None else s.momentum * prev + d
                bufs.append(d)
            out.append(p - s.lr * d)
        if s.momentum:
            self.buf = bufs
        return out


def _graph_input(t: torch.Tensor) -> torch.Tensor:
    """`t` itself if it is part of a graph, else a leaf that requires grad.

    Either way the replay can be differentiated against it; the values are unchanged.
    """
    return t if t.requires_grad else t.detach().requires_grad_(True)


def replay_sgd(target: nn.Module, trainable: Mapping[str, torch.Tensor],
               fixed: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, steps: int,
               spec: SGDSpec, head: Mapping[str, torch.Tensor] | None = None,
               head_spec: SGDSpec | None = None) -> tuple[Tensors, Tensors]:
    """`steps` full-batch SGD steps of `target` on (x, y), keeping the graph.

    `trainable` tensors are stepped by `spec` (clipped together when spec.clip is set); a
    `head`, if given, is stepped alongside by its own optimiser `head_spec` (unclipped), as
    pFedHN-PC's private head. Returns the final (trainable, head).
    """
    names = list(trainable)
    params = [_graph_input(trainable[n]) for n in names]
    hnames = list(head or {})
    hparams = [_graph_input(head[n]) for n in hnames] if head else []
    opt, hopt = UnrolledSGD(spec), UnrolledSGD(head_spec or spec)
    for _ in range(steps):
        current = {**fixed, **dict(zip(names, params)), **dict(zip(hnames, hparams))}
        loss = soft_cross_entropy(torch.func.functional_call(target, current, (x,)), y)
        grads = torch.autograd.grad(loss, params + hparams, create_graph=True)
        new = opt.step(params, grads[:len(params)])
        if hparams:
            hparams = hopt.step(hparams, grads[len(params):])
        params = new
    return dict(zip(names, params)), dict(zip(hnames, hparams))


def arrays(content: Any, key: str = "arrays") -> Tensors:
    """The tensors of a captured RecordDict's ArrayRecord `key` (an error if absent)."""
    if content is None or key not in content:
        raise UserError(f"the captured message has no '{key}' record to attack")
    return from_record(content[key])


def num_images(capture: Capture, per_epoch_divisor: int = 1) -> int:
    """How many images the captured client trained on.

    The server chose it (`capture.num_samples`, it asked for the attack batch); without one,
    the reply's `num-examples` divided by `per_epoch_divisor` (for clients that count every
    sample of every epoch).
    """
    if capture.num_samples > 0:
        return capture.num_samples
    reply = capture.main.reply
    n = metrics_of(reply).get("num-examples") if reply is not None else None
    if n is None:
        raise UserError("the captured reply has no num-examples metric")
    return int(n) // max(per_epoch_divisor, 1)


def one_step_per_epoch(n: int, batch_size: int, what: str) -> None:
    """Gradient inversion here replays full-batch steps: the batch must hold all n samples."""
    if n > batch_size:
        raise UserError(f"the captured client trained on {n} samples with {what}={batch_size}: "
                        "several batches per epoch in an unknown order; capture with "
                        f"capture.num_samples <= {batch_size}")


def bias_scores(observed_bias_change: torch.Tensor, lr: float) -> torch.Tensor:
    """Per-class label evidence from a classifier bias change (negative = present).

    One SGD step on cross-entropy moves the bias by -lr * mean(softmax - onehot): the only
    entries whose gradient is negative are the batch's labels (iDLG). Weight decay and later
    steps perturb this little.
    """
    return -observed_bias_change / lr

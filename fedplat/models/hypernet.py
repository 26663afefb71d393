"""Hypernetworks: networks whose output is the weights of another network (the target).

The target is an ordinary `nn.Module` from the model registry. A `TargetSpec` names the target
tensors a hypernetwork generates (all of them, or all but the classifier head); a
`HyperNetwork` maps an embedding vector to one tensor per name; `functional_forward` runs the
target with those tensors through `torch.func.functional_call`. Nothing is copied into the
module, so the autograd graph runs from the loss through the generated tensors into the
hypernetwork and the embedding (copying with `load_state_dict` silently cuts it: HyperFL's
released code works around that by hand, pFedHN's keeps the generated tensors for a manual
vector-Jacobian product). Both styles are supported: backpropagate a loss directly, or push a
given target-space vector back with `vjp`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fedplat.data.datasets import DatasetInfo
from fedplat.errors import UserError

#: Default ceiling on hypernetwork parameters (one fp32 copy = 4 bytes each). Beyond it a run
#: would not fit a machine or a Flower message; the check names the knob.
DEFAULT_MAX_PARAMS = 200_000_000


@dataclass(frozen=True)
class TargetSpec:
    """Names and shapes of the target tensors a hypernetwork generates (in the target's order)."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, target: nn.Module, exclude: Iterable[str] = ()) -> TargetSpec:
        """Every parameter of `target` except those named in `exclude`."""
        skip = set(exclude)
        items = [(n, p.shape) for n, p in target.named_parameters() if n not in skip]
        return cls(tuple(n for n, _ in items), tuple(s for _, s in items))

    @property
    def numel(self) -> int:
        """Number of generated scalars."""
        return sum(math.prod(s) for s in self.shapes)


def head_names(target: nn.Module) -> list[str]:
    """Parameter names of the target's last parametrised layer (its classifier head).

    Layers are taken in registration order, which for every fedplat model (and for the
    papers' CNNs: LeNet's fc3, HyperFL's fc2) is the order of the forward pass.
    """
    last: list[str] = []
    for mod_name, module in target.named_modules():
        own = [n for n, _ in module.named_parameters(recurse=False)]
        if own:
            last = [f"{mod_name}.{n}" if mod_name else n for n in own]
    return last


@functools.lru_cache(maxsize=16)
def _skeleton(model_json: str, info_json: str) -> nn.Module:
    from fedplat.models import build_model

    info = json.loads(info_json)
    info["input_shape"] = tuple(info["input_shape"])
    with torch.device("meta"):
        model = build_model(OmegaConf.create(json.loads(model_json)), DatasetInfo(**info))
    return model.eval()


def skeleton(model_cfg: DictConfig, info: DatasetInfo) -> nn.Module:
    """The configured model's structure on the meta device: no memory, no initialisation.

    A function for `functional_forward` when every tensor is supplied (generated weights plus
    a private head), cached per process, so a client does not build and initialise a model
    for every message.
    """
    return _skeleton(json.dumps(OmegaConf.to_container(model_cfg, resolve=True),
                                sort_keys=True), json.dumps(asdict(info), sort_keys=True))


def auto_embed_dim(num_clients: int) -> int:
    """The automatic embedding size of pFedHN and PeFLL: int(1 + N / 4)."""
    return int(1 + num_clients / 4)


class HyperNetwork(nn.Module):
    """Embedding v -> MLP trunk -> one linear head per target tensor, reshaped.

    Trunk: Linear(d, hidden), then `n_hidden` x [ReLU, Linear(hidden, hidden)], then a ReLU only
    if `relu_out`. pFedHN/PeFLL: n_hidden=3, relu_out=False (the heads see the last Linear's
    output). HyperFL: n_hidden=0, relu_out=True (exactly one hidden layer). Heads have no output
    activation. All layers use PyTorch's default initialisation.
    """

    def __init__(self, spec: TargetSpec, embed_dim: int, hidden: int, n_hidden: int,
                 relu_out: bool = False) -> None:
        super().__init__()
        if embed_dim <= 0 or hidden <= 0 or n_hidden < 0:
            raise ValueError(f"bad hypernetwork sizes: embed_dim={embed_dim}, hidden={hidden}, "
                             f"n_hidden={n_hidden}")
        self.spec = spec
        layers: list[nn.Module] = [nn.Linear(embed_dim, hidden)]
        for _ in range(n_hidden):
            layers += [nn.ReLU(), nn.Linear(hidden, hidden)]
        if relu_out:
            layers.append(nn.ReLU())
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(hidden, math.prod(s)) for s in spec.shapes)

    def forward(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Target tensors for one embedding vector `v` of shape (d,)."""
        features = self.trunk(v)
        return {name: head(features).reshape(shape)
                for name, shape, head in zip(self.spec.names, self.spec.shapes, self.heads)}

    def forward_many(self, vs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Target tensors for k embeddings `vs` (k, d) in one batched pass: {name: (k, *shape)}.

        Equals stacking `forward(vs[i])` (the same linear layers on a batch), but a round that
        serves many clients pays one trunk and one matrix product per head instead of k.
        """
        features = self.trunk(vs)
        k = vs.shape[0]
        return {name: head(features).reshape(k, *shape)
                for name, shape, head in zip(self.spec.names, self.spec.shapes, self.heads)}


def hypernet_size(spec: TargetSpec, embed_dim: int, hidden: int, n_hidden: int) -> int:
    """Parameter count of `HyperNetwork(spec, embed_dim, hidden, n_hidden)` without building it."""
    trunk = embed_dim * hidden + hidden + n_hidden * (hidden * hidden + hidden)
    heads = sum((hidden + 1) * math.prod(s) for s in spec.shapes)
    return trunk + heads


def functional_forward(target: nn.Module, params: Mapping[str, torch.Tensor],
                       x: torch.Tensor) -> torch.Tensor:
    """`target(x)` computed with `params` in place of the module's own tensors.

    Tensors not in `params` are the module's own. Gradients flow into whatever produced
    `params` (a hypernetwork, an embedding), which is the point.
    """
    return torch.func.functional_call(target, dict(params), (x,))


def vjp(outputs: Mapping[str, torch.Tensor], cotangents: Mapping[str, torch.Tensor],
        inputs: Sequence[torch.Tensor], retain_graph: bool = False) -> list[torch.Tensor]:
    """(d outputs / d inputs)^T . cotangents, with zeros for inputs outside the graph.

    pFedHN's server step: `outputs` are the generated tensors theta_i, `cotangents` the client's
    delta theta_i, `inputs` the hypernetwork (and embedding) parameters.
    """
    names = list(outputs)
    grads = torch.autograd.grad([outputs[n] for n in names],
                                list(inputs),
                                grad_outputs=[cotangents[n].to(outputs[n]) for n in names],
                                allow_unused=True, retain_graph=retain_graph)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(inputs, grads)]


def global_norm(tensors: Iterable[torch.Tensor]) -> float:
    """Euclidean norm of all tensors together."""
    total = sum(float(t.detach().double().pow(2).sum()) for t in tensors)
    return math.sqrt(total)


def clip_by_global_norm(grads: Sequence[torch.Tensor], max_norm: float
                        ) -> tuple[list[torch.Tensor], float]:
    """Scale `grads` together so their joint norm is at most `max_norm`; return (grads, norm).

    Same rule as `torch.nn.utils.clip_grad_norm_` (factor max_norm / (norm + 1e-6), only when
    below 1), as a pure function over a gradient list.
    """
    norm = global_norm(grads)
    factor = max_norm / (norm + 1e-6)
    if factor >= 1.0:
        return list(grads), norm
    return [g * factor for g in grads], norm


def check_target(target: nn.Module, model_name: str, *, exclude_head: bool = False) -> None:
    """Raise `UserError` if a hypernetwork cannot generate `target`'s weights.

    Buffers (BatchNorm running statistics) are state a generated network would not have; a
    target with `exclude_head` needs at least two parametrised layers (a body to generate and a
    head to keep).
    """
    buffers = [n for n, _ in target.named_buffers()]
    if buffers:
        raise UserError(f"model '{model_name}' has buffers ({', '.join(buffers[:3])}) that a "
                        "hypernetwork cannot generate; choose a model without BatchNorm "
                        "(e.g. model=lenet or model=mlp)")
    names = [n for n, _ in target.named_parameters()]
    if not names:
        raise UserError(f"model '{model_name}' has no parameters to generate")
    if exclude_head and len(head_names(target)) == len(names):
        raise UserError(f"model '{model_name}' has a single layer: nothing is left to generate "
                        "once its classifier head is kept private; choose a deeper model")


def check_sizes(embed_dim: int, hidden: int, n_hidden: int, prefix: str) -> None:
    """Hypernetwork sizes must be positive (n_hidden may be 0); one line naming the key."""
    for key, value, low in (("embed_dim", embed_dim, 1), ("hidden", hidden, 1),
                            ("n_hidden", n_hidden, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{prefix}.{key}={value!r} must be an integer >= {low}")


def check_size_limit(spec: TargetSpec, embed_dim: int, hidden: int, n_hidden: int,
                     max_params: int, model_name: str, prefix: str) -> int:
    """Raise `UserError` when the hypernetwork for `spec` would exceed `max_params`."""
    size = hypernet_size(spec, embed_dim, hidden, n_hidden)
    if size > max_params:
        raise UserError(f"a hypernetwork generating model '{model_name}' ({spec.numel:,} target "
                        f"weights) would have {size:,} parameters, above "
                        f"{prefix}.max_params={max_params:,}; choose a smaller target model "
                        f"(e.g. model=lenet) or a smaller {prefix}.hidden")
    return size


class GeneratedModel(nn.Module):
    """A target network running on given tensors, usable wherever a model is expected.

    `GeneratedModel(target, params)(x)` is `functional_forward(target, params, x)`: evaluation
    loops that call `model(x)` (fedplat.training.loops.evaluate) work on generated weights without
    copying them into the target. `logit_mask`, if given, is applied to the logits (e.g. to
    hide classes a client does not hold; see `mask_logits`).
    """

    def __init__(self, target: nn.Module, params: Mapping[str, torch.Tensor],
                 logit_mask: torch.Tensor | None = None, mask_mode: str = "none") -> None:
        super().__init__()
        self.target = target
        self.params = dict(params)
        self.logit_mask = logit_mask
        self.mask_mode = mask_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the target with the given tensors (masked if a mask was given)."""
        logits = functional_forward(self.target, self.params, x)
        if self.logit_mask is None:
            return logits
        return mask_logits(logits, self.logit_mask, self.mask_mode)


#: Logit given to masked classes in `neg_inf` mode: never predicted, finite loss.
MASKED_LOGIT = -1e9


def mask_logits(logits: torch.Tensor, present: torch.Tensor, mode: str) -> torch.Tensor:
    """Hide classes a client does not hold (`present` is a 0/1 or bool vector over classes).

    `neg_inf`: absent classes get a logit of -1e9 and are never predicted. `multiply`: logits
    are multiplied by the 0/1 indicator (PeFLL's released code), so an absent class gets logit 0
    and still wins when every present class scores below 0. `none`: unchanged.
    """
    if mode == "none":
        return logits
    keep = present.to(logits.device).bool()
    if mode == "multiply":
        return logits * keep.to(logits.dtype)
    if mode == "neg_inf":
        return logits.masked_fill(~keep, MASKED_LOGIT)
    raise ValueError(f"unknown mask mode {mode!r}")

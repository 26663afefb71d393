"""State-dict arithmetic shared by strategies: pure functions over {name: tensor} mappings.

Aggregation iterates clients in sorted id order, so floating-point sums (and therefore results)
do not depend on the order in which replies arrived.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

State = dict[str, torch.Tensor]


def weighted_average(states: Mapping[int, Mapping[str, torch.Tensor]],
                     weights: Mapping[int, float]) -> State:
    """Sum_k w_k * state_k / sum_k w_k, accumulated in float64, cast back to each dtype.

    Integer entries (e.g. BatchNorm's num_batches_tracked) are rounded back to integers.
    """
    if not states:
        raise ValueError("weighted_average needs at least one state")
    total = float(sum(weights[k] for k in states))
    if total <= 0:
        raise ValueError(f"weighted_average: total weight {total} must be positive")
    keys = sorted(states)
    first = states[keys[0]]
    out: State = {}
    for name, ref in first.items():
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for k in keys:
            acc += states[k][name].detach().to(torch.float64) * (weights[k] / total)
        out[name] = acc.round().to(ref.dtype) if not ref.is_floating_point() else acc.to(ref.dtype)
    return out


def subtract(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> State:
    """A - b, entry by entry."""
    return {k: a[k] - b[k] for k in a}


def add_scaled(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
               scale: float) -> State:
    """A + scale * b (integer entries are taken from a + b rounded)."""
    out: State = {}
    for k, v in a.items():
        if v.is_floating_point():
            out[k] = v + scale * b[k]
        else:
            out[k] = (v.to(torch.float64) + scale * b[k].to(torch.float64)).round().to(v.dtype)
    return out


def flatten(state: Mapping[str, torch.Tensor], keys: list[str] | None = None) -> torch.Tensor:
    """Concatenate entries (all, or `keys` in that order) into one float vector."""
    names = keys if keys is not None else list(state)
    if not names:
        return torch.zeros(0)
    return torch.cat([state[k].detach().reshape(-1).to(torch.float32) for k in names])


def norm(state: Mapping[str, torch.Tensor]) -> float:
    """Euclidean norm of all floating-point entries together."""
    floats = [k for k, v in state.items() if v.is_floating_point()]
    return float(flatten(state, floats).norm()) if floats else 0.0


def clone(state: Mapping[str, torch.Tensor]) -> State:
    """Detached CPU copies of every entry."""
    return {k: v.detach().cpu().clone() for k, v in state.items()}

"""`partition=dirichlet`: label skew, each class split over clients with Dir(alpha) proportions.

The semantics of flwr-datasets' DirichletPartitioner (a minimum share size, resampling), kept
here so the default install needs no Hugging Face `datasets`/pyarrow stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedplat.data.partitioners.base import Partitioner, pooled
from fedplat.errors import UserError


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    alpha: float,
    min_size: int = 10,
    max_retries: int = 100,
) -> list[np.ndarray]:
    """Split each class over clients with proportions drawn from Dir(alpha).

    Resamples the whole split while some client has fewer than `min_size` samples, at most
    `max_retries` times; then gives up with a message naming the knobs to turn (it never loops
    forever, unlike a plain `while` loop).
    """
    classes = np.unique(labels)
    by_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    smallest = 0
    for _ in range(max_retries + 1):
        shares: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = by_class[c]
            props = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
            for k, part in enumerate(np.split(idx, cuts)):
                shares[k].append(part)
        parts = [np.sort(np.concatenate(s)) for s in shares]
        smallest = min(len(p) for p in parts)
        if smallest >= min_size:
            return parts
    raise UserError(
        f"dirichlet partition: after {max_retries} retries some client still holds only "
        f"{smallest} samples (< partition.min_size={min_size}); raise partition.alpha, lower "
        "partition.min_size or use fewer clients"
    )


def check(params: dict[str, Any], num_clients: int, num_classes: int, n: int) -> None:
    """Check alpha > 0, min_size and max_retries integers >= 0, min_size fitting every client."""
    alpha = params["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
        raise UserError(f"partition.alpha={alpha!r} must be > 0 (smaller = more label skew)")
    for key in ("min_size", "max_retries"):
        v = params[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"partition.{key}={v!r} must be an integer >= 0")
    if params["min_size"] * num_clients > n:
        raise UserError(f"partition.min_size={params['min_size']} x {num_clients} clients "
                        f"exceeds the {n} samples; lower partition.min_size")


PARTITIONER = Partitioner("dirichlet", pooled(dirichlet), ("alpha", "min_size", "max_retries"),
                          check)

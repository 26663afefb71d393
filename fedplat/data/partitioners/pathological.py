"""`partition=pathological`: each client holds exactly k classes (flwr-datasets' Pathological)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedplat.data.partitioners.base import Partitioner, pooled
from fedplat.errors import UserError


def pathological(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, classes_per_client: int
) -> list[np.ndarray]:
    """Each client holds exactly `classes_per_client` classes.

    Classes are dealt round-robin over a shuffled class order, so every class is held by
    about `num_clients * k / C` clients; each class's samples are split evenly among its holders.
    With `num_clients * k < C` some classes are held by nobody and their samples stay unused.
    """
    classes = np.unique(labels)
    k = classes_per_client
    if k > len(classes):
        raise UserError(f"partition.classes_per_client={k} exceeds the {len(classes)} classes")
    order = rng.permutation(classes)
    assignment = [
        [order[(i * k + j) % len(classes)] for j in range(k)] for i in range(num_clients)
    ]
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for i, cls in enumerate(assignment):
        for c in cls:
            holders[int(c)].append(i)
    shares: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c, owners in holders.items():
        if not owners:
            continue
        idx = rng.permutation(np.flatnonzero(labels == c))
        for owner, part in zip(owners, np.array_split(idx, len(owners))):
            shares[owner].append(part)
    return [np.sort(np.concatenate(s)) for s in shares]


def check(params: dict[str, Any], num_clients: int, num_classes: int, n: int) -> None:
    """classes_per_client is an integer in [1, num_classes]."""
    k = params["classes_per_client"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_classes:
        raise UserError(f"partition.classes_per_client={k!r} must be an integer in "
                        f"[1, {num_classes}]")


PARTITIONER = Partitioner("pathological", pooled(pathological), ("classes_per_client",), check)

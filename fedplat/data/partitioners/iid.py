"""`partition=iid`: uniformly random, near-equal shares (flwr-datasets' IidPartitioner)."""

from __future__ import annotations

import numpy as np

from fedplat.data.partitioners.base import Partitioner, no_check, pooled


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, then cut into `num_clients` near-equal blocks."""
    perm = rng.permutation(len(labels))
    return [np.sort(block) for block in np.array_split(perm, num_clients)]


PARTITIONER = Partitioner("iid", pooled(iid), (), no_check)

"""`partition=shards`: McMahan et al. (2017), label-sorted shards dealt to clients."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedplat.data.partitioners.base import Partitioner, pooled
from fedplat.errors import UserError


def shards(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, shards_per_client: int
) -> list[np.ndarray]:
    """McMahan et al.: sort by label, cut into equal shards, deal `shards_per_client` each."""
    num_shards = num_clients * shards_per_client
    if num_shards > len(labels):
        raise UserError(f"shards partition needs {num_shards} shards but there are only "
                        f"{len(labels)} samples; lower partition.shards_per_client or clients")
    shuffled = rng.permutation(len(labels))  # ties within a class in random order
    sorted_idx = shuffled[np.argsort(labels[shuffled], kind="stable")]
    pieces = np.array_split(sorted_idx, num_shards)
    deal = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in deal]


def check(params: dict[str, Any], num_clients: int, num_classes: int, n: int) -> None:
    """shards_per_client is an integer >= 1 and the shards fit the samples."""
    s = params["shards_per_client"]
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
        raise UserError(f"partition.shards_per_client={s!r} must be an integer >= 1")
    if s * num_clients > n:
        raise UserError(f"partition.shards_per_client={s} x {num_clients} clients exceeds the "
                        f"{n} samples")


PARTITIONER = Partitioner("shards", pooled(shards), ("shards_per_client",), check)

"""`partition=natural`: one share per natural owner (user or subject) of the samples."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedplat.data.partitioners.base import Partitioner, SampleData, Share, check_fraction
from fedplat.errors import UserError


def natural(y_train: np.ndarray, y_test: np.ndarray, num_clients: int,
            rng: np.random.Generator, *, g_train: np.ndarray, g_test: np.ndarray,
            val_fraction: float) -> list[Share]:
    """One share per natural owner (user/subject), owners in ascending id order.

    Share k holds the k-th owner's samples of the training part (a random `val_fraction` of
    them as validation) and of the test part, so every user is split within itself. Labels
    are not used.
    """
    owners = np.unique(np.concatenate([g_train, g_test]))
    if num_clients > len(owners):
        raise UserError(f"partition 'natural': the dataset has {len(owners)} users, fewer "
                        f"than the {num_clients} requested; lower num_clients")
    out = []
    for g in owners[:num_clients]:
        tr = rng.permutation(np.flatnonzero(g_train == g))
        n_val = round(val_fraction * len(tr))
        out.append((np.sort(tr[n_val:]), np.sort(tr[:n_val]), np.flatnonzero(g_test == g)))
    return out


def partition(data: SampleData, num_shares: int, rng: np.random.Generator,
              **params: Any) -> list[Share]:
    """`natural` on the dataset's own train/test parts and owners, as pooled indices."""
    assert data.groups is not None, "partition 'natural' needs a dataset with natural owners"
    train_ids, test_ids = data.parts()
    triples = natural(data.y[train_ids], data.y[test_ids], num_shares, rng,
                      g_train=data.groups[train_ids], g_test=data.groups[test_ids], **params)
    return [(train_ids[a], train_ids[b], test_ids[c]) for a, b, c in triples]


def check(params: dict[str, Any], num_clients: int, num_classes: int, n: int) -> None:
    """val_fraction in [0, 1)."""
    check_fraction(params, "val_fraction")


PARTITIONER = Partitioner("natural", partition, ("val_fraction",), check, groups=True)

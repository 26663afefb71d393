"""Cuts inside one client's share: train/val/test fractions, and which labels stay visible."""

from __future__ import annotations

import numpy as np


def split_client(
    indices: np.ndarray, val: float, test: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle one client's indices and cut them into train/val/test by the given fractions."""
    perm = rng.permutation(indices)
    n_test = round(test * len(perm))
    n_val = round(val * len(perm))
    test_idx = perm[:n_test]
    val_idx = perm[n_test:n_test + n_val]
    train_idx = perm[n_test + n_val:]
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)


def label_split(train: np.ndarray, ratio: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """(labeled, unlabeled) parts of one client's training indices.

    A uniformly random `ratio` share keeps its labels: round(ratio * n), at least one when
    ratio > 0, none when ratio = 0. The choice never looks at the labels, so the hidden labels
    cannot influence anything downstream.
    """
    n = len(train)
    k = 0 if ratio <= 0 else min(n, max(1, round(ratio * n)))
    perm = rng.permutation(n)
    return np.sort(train[perm[:k]]), np.sort(train[perm[k:]])

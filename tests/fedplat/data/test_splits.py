"""Cuts inside one share: train/val/test fractions and the labeled/unlabeled split."""

import numpy as np

from fedplat.data.splits import label_split, split_client


def test_split_client_fractions_and_disjointness():
    idx = np.arange(1000, 1200)
    train, val, test = split_client(idx, 0.1, 0.2, np.random.default_rng(0))
    assert (len(train), len(val), len(test)) == (140, 20, 40)
    joined = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(joined), idx)  # a disjoint cover
    assert all(np.array_equal(p, np.sort(p)) for p in (train, val, test))
    again = split_client(idx, 0.1, 0.2, np.random.default_rng(0))
    assert all(np.array_equal(p, q) for p, q in zip((train, val, test), again))


def test_label_split_sizes_cover_and_never_sees_labels():
    train = np.arange(100, 225)
    rng = np.random.default_rng(0)
    lab, unl = label_split(train, 0.1, rng)
    assert len(lab) == 12 and len(unl) == 113  # round(12.5) = 12
    assert np.array_equal(np.sort(np.concatenate([lab, unl])), train)
    assert len(label_split(train, 0.0, rng)[0]) == 0
    assert len(label_split(train, 1.0, rng)[1]) == 0
    assert len(label_split(np.arange(5), 0.01, rng)[0]) == 1  # at least one when ratio > 0

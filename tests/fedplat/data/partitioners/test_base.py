"""The one call signature: SampleData (cut, parts, held-out test part) and the two adaptors."""

import numpy as np
import pytest

from fedplat.core import seeding
from fedplat.data.partitioners.base import SampleData, pooled, presplit
from fedplat.data.splits import split_client
from fedplat.errors import UserError


def test_cut_splits_each_share_in_order_with_the_split_stream():
    data = SampleData(np.zeros(100, dtype=np.int64), seed=5, val=0.1, test=0.2)
    shares = [np.arange(0, 40), np.arange(40, 100)]
    out = data.cut(shares)
    rng = seeding.rng(5, seeding.SPLIT)
    expected = [split_client(s, 0.1, 0.2, rng) for s in shares]
    assert all(np.array_equal(x, y) for p, q in zip(out, expected) for x, y in zip(p, q))
    assert [len(t) for t in out[0]] == [28, 4, 8]


def test_parts_keep_an_official_test_part():
    data = SampleData(np.arange(10), seed=0, num_train=7)
    train, test = data.parts()
    assert train.tolist() == list(range(7)) and test.tolist() == [7, 8, 9]


def test_parts_hold_out_a_seeded_test_share_when_there_is_none():
    data = SampleData(np.arange(50), seed=3, test=0.2)
    train, test = data.parts()
    assert len(test) == 10 and len(train) == 40
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(50))
    assert np.array_equal(test, SampleData(np.arange(50), seed=3, test=0.2).parts()[1])
    assert not np.array_equal(test, SampleData(np.arange(50), seed=4, test=0.2).parts()[1])
    none = SampleData(np.arange(50), seed=3, test=0.0, dataset="digits", partition="by_class")
    with pytest.raises(UserError, match=r"^partition 'by_class' needs a test part and dataset "
                                        r"'digits' has none; set split\.test > 0"):
        none.parts()


def test_adaptors_map_onto_pooled_indices():
    def halves(labels, n, rng):
        return [np.arange(0, len(labels) // 2), np.arange(len(labels) // 2, len(labels))]

    def first_of_each_part(y_train, y_test, n, rng, k):
        return [(np.arange(k), np.arange(k, 2 * k), np.arange(k))] * n

    y = np.arange(20)
    out = pooled(halves)(SampleData(y, seed=0), 2, np.random.default_rng(0))
    assert [t[0].tolist() for t in out] == [list(range(10)), list(range(10, 20))]
    assert all(len(t[1]) == len(t[2]) == 0 for t in out)  # split 0/0: all training
    mapped = presplit(first_of_each_part)(SampleData(y, seed=0, num_train=15), 1,
                                          np.random.default_rng(0), k=2)
    assert [a.tolist() for a in mapped[0]] == [[0, 1], [2, 3], [15, 16]]

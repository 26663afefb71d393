"""`partition=by_class`: k classes per client, a share per holder (pFedHN and PeFLL variants)."""

import hashlib

import numpy as np
import pytest

from fedplat.config.compose import compose
from fedplat.data.federated import build_federated
from fedplat.data.partitioners.by_class import PARTITIONER, assign_classes, by_class
from fedplat.errors import UserError
from tests.helpers import make_cfg


def _balanced(per_class: int, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def _bc(y_train, y_test, n, seed=0, **kw):
    params = {"classes_per_client": 2, "prop_low": 0.4, "prop_high": 0.6, "val_fraction": 0.2,
              "val_split": "random", "extra_share": False, "distinct_classes": False, **kw}
    return by_class(y_train, y_test, n, np.random.default_rng(seed), **params)


def test_by_class_gives_k_classes_shared_by_equal_numbers_of_holders():
    y_train, y_test = _balanced(500), _balanced(100, seed=1)
    parts = _bc(y_train, y_test, 50)
    holders = np.zeros(10, int)
    for tr, va, te in parts:
        classes = set(np.unique(y_train[tr]))
        assert len(classes) <= 2
        assert set(np.unique(y_train[va])) <= classes and set(np.unique(y_test[te])) <= classes
        for c in classes:
            holders[c] += 1
    assert holders.tolist() == [10] * 10  # (k * N) / C holders per class
    # splits are disjoint between clients and val never overlaps train
    trains = np.concatenate([tr for tr, _, _ in parts])
    vals = np.concatenate([va for _, va, _ in parts])
    assert len(np.unique(trains)) == len(trains) and not set(trains) & set(vals)
    assert len(np.unique(np.concatenate([te for _, _, te in parts]))) == sum(
        len(te) for _, _, te in parts)


def test_by_class_shares_are_uniform_04_06_and_equal_across_train_val_test():
    y_train, y_test = _balanced(4000), _balanced(1000, seed=1)
    rng = np.random.default_rng(0)
    rng.permutation(len(y_train))  # by_class draws the random validation pool first
    assignment = assign_classes(50, 10, 2, rng, 0.4, 0.6)
    shares = [p for pairs in assignment for _, p in pairs]
    # each share is u / sum of 10 draws from U(0.4, 0.6): within [0.4/6, 0.6/4]
    assert min(shares) >= 0.4 / 6 and max(shares) <= 0.6 / 4
    parts = _bc(y_train, y_test, 50)
    n_train_pool = np.bincount(y_train, minlength=10) * 0.8
    for (tr, _, te), pairs in zip(parts, assignment):
        for c, p in pairs:
            train_share = np.sum(y_train[tr] == c) / n_train_pool[c]
            test_share = np.sum(y_test[te] == c) / 1000
            assert abs(train_share - p) < 0.01 and abs(test_share - p) < 0.01


def test_pefll_by_class_equal_shares_stratified_val_and_distinct_classes():
    y_train, y_test = _balanced(500), _balanced(100, seed=1)
    parts = _bc(y_train, y_test, 100, prop_low=0.5, prop_high=0.5, val_split="stratified",
                distinct_classes=True)
    for tr, va, te in parts:
        counts = np.bincount(y_train[tr], minlength=10)
        assert sorted(counts[counts > 0].tolist()) == [20, 20]  # 400 per class / 20 holders
        assert sorted(np.bincount(y_train[va], minlength=10)[counts > 0].tolist()) == [5, 5]
        assert sorted(np.bincount(y_test[te], minlength=10)[counts > 0].tolist()) == [5, 5]


def test_by_class_random_val_pool_size_and_determinism():
    y_train, y_test = _balanced(500), _balanced(100, seed=1)
    a = _bc(y_train, y_test, 10, seed=3)
    b = _bc(y_train, y_test, 10, seed=3)
    c = _bc(y_train, y_test, 10, seed=4)
    assert all(np.array_equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))
    assert any(not np.array_equal(p[0], q[0]) for p, q in zip(a, c))
    assert sum(len(va) for _, va, _ in a) <= 1000  # int truncation leaves a few out
    assert sum(len(va) for _, va, _ in a) > 900


def test_by_class_bad_input_is_one_line():
    check = PARTITIONER.validate
    good = {"classes_per_client": 2, "prop_low": 0.4, "prop_high": 0.6, "val_fraction": 0.2,
            "val_split": "random", "extra_share": False, "distinct_classes": False}
    with pytest.raises(UserError, match="must be divisible by the 10 classes"):
        check(good, 7, 10, 1000)
    check({**good, "extra_share": True}, 7, 10, 1000)  # the released +1 variant takes it
    for key, value, msg in (("classes_per_client", 11, "classes_per_client=11"),
                            ("prop_low", 0.0, "0 < prop_low"),
                            ("val_fraction", 1.0, "val_fraction=1.0"),
                            ("val_split", "chrono", "val_split='chrono'"),
                            ("distinct_classes", "yes", "distinct_classes='yes' must be true")):
        with pytest.raises(UserError, match=msg):
            check({**good, key: value}, 10, 10, 1000)


def test_configs_compose_and_bad_values_stop_the_cli_check():
    cfg = make_cfg("partition=by_class", "num_clients=20")
    assert cfg.partition.val_split == "random" and cfg.partition.prop_low == 0.4
    for experiment in ("pefll_fmnist100_pefll", "pefll_fmnist100_pfedhn"):
        cfg = compose([f"experiment={experiment}"])  # composition only: no Fashion-MNIST needed
        assert (cfg.partition.name, cfg.partition.prop_low, cfg.partition.prop_high,
                cfg.partition.val_split, cfg.partition.distinct_classes) == (
            "by_class", 0.5, 0.5, "stratified", True)
    with pytest.raises(UserError, match="divisible"):
        make_cfg("partition=by_class", "num_clients=7")


def _digest(fed) -> str:
    h = hashlib.sha256()
    for t in fed.splits:
        for a in t:
            h.update(np.asarray(a, np.int64).tobytes())
            h.update(b"|")
    for a in fed.unlabeled:
        h.update(np.asarray(a, np.int64).tobytes())
        h.update(b"u")
    return h.hexdigest()[:16]


PEFLL = ("partition.prop_low=0.5", "partition.prop_high=0.5", "partition.val_split=stratified",
         "partition.distinct_classes=true")


# Digests of the splits that `partition=pfedhn_by_class` and `partition=pefll_by_class` gave
# before the two were merged into `by_class` (computed with the code of commit b40d790).
@pytest.mark.parametrize(("overrides", "digest"), [
    (("num_clients=10", "seed=0"), "281b49d353bc78a1"),  # was pfedhn_by_class
    (("num_clients=7", "partition.extra_share=true", "seed=3"), "31e7dd9a5571dce9"),
    ((*PEFLL, "num_clients=10", "seed=0"), "353815ae8acb54e1"),  # was pefll_by_class
    ((*PEFLL, "num_clients=20", "seed=1"), "78af41cb46747520"),
])
def test_splits_are_byte_identical_to_the_former_pfedhn_and_pefll_partitions(
        tmp_path, overrides, digest):
    fed = build_federated(make_cfg("dataset=digits", "partition=by_class", *overrides,
                                   f"cache_dir={tmp_path}"))
    assert _digest(fed) == digest


#: MNIST's class counts (train, test): unbalanced, unlike Fashion-MNIST's 6,000 / 1,000.
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_stratified_balances_the_training_pool_not_the_validation_sets():
    """What `val_split=stratified` really does, on MNIST's class counts with PeFLL's setting.

    The training pool keeps (60,000 - 12,000) // 10 = 4,800 of every class; validation gets
    the rest of each class (620 to 1,940); shares of int(n_c * p) round down, so clients'
    validation sets hold 83 to 170 samples and 9,900 of the 10,000 test samples are assigned.
    """
    rng = np.random.default_rng(3)
    y_train = rng.permutation(np.repeat(np.arange(10), MNIST_TRAIN))
    y_test = rng.permutation(np.repeat(np.arange(10), MNIST_TEST))
    shares = _bc(y_train, y_test, 100, prop_low=0.5, prop_high=0.5, val_split="stratified",
                 distinct_classes=True)
    train = np.concatenate([s[0] for s in shares])
    val = np.concatenate([s[1] for s in shares])
    # 20 holders per class, each int(4800 / 20) = 240 training samples of it
    assert np.bincount(y_train[train]).tolist() == [4800] * 10
    pool_rest = [n - 4800 for n in MNIST_TRAIN]  # the validation pool: 1,123 ... 1,942
    got = np.bincount(y_train[val]).tolist()
    assert got == [20 * (r // 20) for r in pool_rest]  # 20 holders, rounded down each
    assert min(got) == 620 and max(got) == 1940
    sizes = [len(s[1]) for s in shares]
    assert (min(sizes), max(sizes)) == (83, 170)
    assert sum(len(s[2]) for s in shares) == sum(20 * (n // 20) for n in MNIST_TEST) == 9900

"""The papers' partitions: HyperFL's label groups and pFedHN's / PeFLL's by-class split."""

import numpy as np
import pytest

from fedplat.data.datasets import DEBIAN_FASHION_DIR
from fedplat.data.partition import PARTITIONERS, assign_classes, by_class, label_groups
from fedplat.errors import UserError
from tests.helpers import make_cfg

GROUPS = [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8], [8, 9, 0]]


def _balanced(per_class: int, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def _lg(y_train, y_test, n, **kw):
    params = {"s": 20, "local_size": 600, "test_size": 600, "groups": GROUPS,
              "cursor0_train": 0, "cursor0_test": 0, "block": "equal", **kw}
    return label_groups(y_train, y_test, n, np.random.default_rng(0), **params)


def test_label_groups_composition_matches_hyperfl_fmnist():
    y_train, y_test = _balanced(6000), _balanced(1000, seed=1)
    parts = _lg(y_train, y_test, 20)
    for i, (tr, va, te) in enumerate(parts):
        assert len(tr) == 600 and len(te) == 600 and len(va) == 0
        expected = np.full(10, 12)
        expected[GROUPS[i % 5]] += 160  # 20% IID: 12 per class; 80%: 160 per dominant label
        assert np.bincount(y_train[tr], minlength=10).tolist() == expected.tolist()
        # train and test of a client follow the same distribution
        assert np.bincount(y_test[te], minlength=10).tolist() == expected.tolist()


def test_label_groups_takes_sequentially_and_wraps_around_like_the_released_code():
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    # numpy's default argsort kind is not stable (H14): blocks follow whatever order it gives
    order = np.argsort(labels)
    c0, c1 = order[:4].tolist(), order[4:].tolist()
    out = _lg(labels, labels, 3, s=50, local_size=4, test_size=4, groups=[[0], [1]])
    clients = [tr.tolist() for tr, _, _ in out]
    # client 0: 1 of class 0, 1 of class 1 (IID half), then 2 of its group label 0
    assert clients[0] == [c0[0], c1[0], c0[1], c0[2]]
    assert clients[1] == [c0[3], c1[1], c1[2], c1[3]]
    assert clients[2] == clients[0]  # both classes ran out: wrapped to the block starts


def test_label_groups_wraps_on_fmnist_sized_test_parts_and_keeps_labels_right():
    y_train, y_test = _balanced(6000), _balanced(1000, seed=1)
    parts = _lg(y_train, y_test, 20)
    tests = np.concatenate([te for _, _, te in parts])
    assert len(np.unique(tests)) < len(tests)  # dominant classes need 1,520 of 1,000 samples
    for i, (_, _, te) in enumerate(parts):
        assert set(np.unique(y_test[te])) == set(range(10))
        assert np.bincount(y_test[te], minlength=10)[GROUPS[i % 5]].tolist() == [172] * 3


def test_label_groups_cursor_start_and_count_blocks():
    y = _balanced(100)
    a = _lg(y, y, 2, local_size=50, test_size=50, block="equal")
    b = _lg(y, y, 2, local_size=50, test_size=50, block="counts")
    assert all(np.array_equal(p[0], q[0]) for p, q in zip(a, b))  # same on balanced data
    shifted = _lg(y, y, 1, local_size=50, test_size=50, cursor0_train=90)
    order = np.argsort(y)
    assert shifted[0][0][0] == order[90]  # class 0 starts at its cursor (CIFAR: 2000)
    unbalanced = np.concatenate([np.zeros(30, int), np.ones(70, int)])
    parts = label_groups(unbalanced, unbalanced, 2, np.random.default_rng(0), s=50,
                         local_size=20, test_size=20, groups=[[0], [1]], cursor0_train=0,
                         cursor0_test=0, block="counts")
    for tr, _, _ in parts:
        assert np.bincount(unbalanced[tr], minlength=2).sum() == 20
    assert np.bincount(unbalanced[parts[0][0]]).tolist() == [15, 5]


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
    check = PARTITIONERS["pfedhn_by_class"].validate
    good = {"classes_per_client": 2, "prop_low": 0.4, "prop_high": 0.6, "val_fraction": 0.2,
            "val_split": "random", "extra_share": False, "distinct_classes": False}
    with pytest.raises(UserError, match="must be divisible by the 10 classes"):
        check(good, 7, 10, 1000)
    check({**good, "extra_share": True}, 7, 10, 1000)  # the released +1 variant takes it
    for key, value, msg in (("classes_per_client", 11, "classes_per_client=11"),
                            ("prop_low", 0.0, "0 < prop_low"),
                            ("val_fraction", 1.0, "val_fraction=1.0"),
                            ("val_split", "chrono", "val_split='chrono'")):
        with pytest.raises(UserError, match=msg):
            check({**good, key: value}, 10, 10, 1000)
    lg = PARTITIONERS["label_groups"].validate
    ok = {"s": 20, "local_size": 600, "test_size": 600, "groups": GROUPS, "cursor0_train": 0,
          "cursor0_test": 0, "block": "equal"}
    for key, value in (("s", 120), ("local_size", 0), ("groups", [[0, 10]]), ("groups", []),
                       ("block", "x")):
        with pytest.raises(UserError, match=f"partition.{key}="):
            lg({**ok, key: value}, 20, 10, 1000)


def test_configs_compose_and_bad_values_stop_the_cli_check():
    cfg = make_cfg("partition=pefll_by_class", "num_clients=20")
    assert cfg.partition.val_split == "stratified"
    with pytest.raises(UserError, match="divisible"):
        make_cfg("partition=pfedhn_by_class", "num_clients=7")


def test_presplit_partition_of_a_dataset_without_test_part(tmp_path):
    from fedplat.data.federated import build_federated

    cfg = make_cfg("dataset=digits", "partition=label_groups", "num_clients=5",
                   "partition.local_size=100", "partition.test_size=30",
                   "partition.block=counts", f"cache_dir={tmp_path}")
    fd = build_federated(cfg)
    trains = set(np.concatenate([tr for tr, _, _ in fd.splits]).tolist())
    tests = set(np.concatenate([te for _, _, te in fd.splits]).tolist())
    assert not trains & tests  # the held-out test part is disjoint from training samples
    assert all(len(tr) == 100 and len(te) == 30 for tr, _, te in fd.splits)


@pytest.mark.skipif(not DEBIAN_FASHION_DIR.is_dir(), reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_label_groups_use_the_official_test_part(tmp_path):
    from fedplat.data.federated import build_federated

    cfg = make_cfg("dataset=fashion_mnist", "partition=label_groups", "num_clients=20",
                   f"cache_dir={tmp_path}")
    fd = build_federated(cfg)
    for i, (tr, va, te) in enumerate(fd.splits):
        assert tr.max() < 60000 <= te.min() and len(va) == 0
        assert np.argmax(np.bincount(fd.y[tr], minlength=10)) in GROUPS[i % 5]

"""`partition=label_groups`: HyperFL's s-similarity split, ported literally from FedPAC's code."""

import numpy as np
import pytest

from fedplat.data.federated import build_federated
from fedplat.data.partitioners.label_groups import PARTITIONER, label_groups
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
    # blocks follow the stable label sort: within a class, samples in index order
    order = np.argsort(labels, kind="stable")
    c0, c1 = order[:4].tolist(), order[4:].tolist()
    out = _lg(labels, labels, 3, s=50, local_size=4, test_size=4, groups=[[0], [1]])
    clients = [tr.tolist() for tr, _, _ in out]
    # client 0: 1 of class 0, 1 of class 1 (IID half), then 2 of its group label 0
    assert clients[0] == [c0[0], c1[0], c0[1], c0[2]]
    assert clients[1] == [c0[3], c1[1], c1[2], c1[3]]
    assert clients[2] == clients[0]  # both classes ran out: wrapped to the block starts


def test_label_groups_picks_the_same_samples_on_every_cpu():
    """Within a class, samples are taken in index order (a stable sort).

    numpy's default argsort (the released code's) is not stable, and which tied index comes
    first depends on the CPU's sort kernel (a digest pinned on one machine failed on an AVX-512
    one); a stable sort makes the split a function of the labels alone.
    """
    y = _balanced(600, seed=3)
    parts = _lg(y, y, 10, s=0, local_size=300, test_size=300, groups=[[c] for c in range(10)])
    for i, (tr, _, _) in enumerate(parts):
        assert tr.tolist() == np.flatnonzero(y == i)[:300].tolist()


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
    order = np.argsort(y, kind="stable")
    assert shifted[0][0][0] == order[90]  # class 0 starts at its cursor (CIFAR: 2000)
    unbalanced = np.concatenate([np.zeros(30, int), np.ones(70, int)])
    parts = label_groups(unbalanced, unbalanced, 2, np.random.default_rng(0), s=50,
                         local_size=20, test_size=20, groups=[[0], [1]], cursor0_train=0,
                         cursor0_test=0, block="counts")
    for tr, _, _ in parts:
        assert np.bincount(unbalanced[tr], minlength=2).sum() == 20
    assert np.bincount(unbalanced[parts[0][0]]).tolist() == [15, 5]

def test_parameter_checks():
    lg = PARTITIONER.validate
    ok = {"s": 20, "local_size": 600, "test_size": 600, "groups": GROUPS, "cursor0_train": 0,
          "cursor0_test": 0, "block": "equal"}
    lg(ok, 20, 10, 1000)
    for key, value in (("s", 120), ("local_size", 0), ("groups", [[0, 10]]), ("groups", []),
                       ("block", "x"), ("cursor0_test", -1)):
        with pytest.raises(UserError, match=f"partition.{key}="):
            lg({**ok, key: value}, 20, 10, 1000)


def test_presplit_partition_of_a_dataset_without_test_part(tmp_path):
    cfg = make_cfg("dataset=digits", "partition=label_groups", "num_clients=5",
                   "partition.local_size=100", "partition.test_size=30",
                   "partition.block=counts", f"cache_dir={tmp_path}")
    fd = build_federated(cfg)
    trains = set(np.concatenate([tr for tr, _, _ in fd.splits]).tolist())
    tests = set(np.concatenate([te for _, _, te in fd.splits]).tolist())
    assert not trains & tests  # the held-out test part is disjoint from training samples
    assert all(len(tr) == 100 and len(te) == 30 for tr, _, te in fd.splits)


def test_fashion_mnist_label_groups_use_the_official_test_part(tmp_path, fashion_mnist_dir):
    cfg = make_cfg("dataset=fashion_mnist", "partition=label_groups", "num_clients=20",
                   f"cache_dir={tmp_path}")
    fd = build_federated(cfg)
    for i, (tr, va, te) in enumerate(fd.splits):
        assert tr.max() < 60000 <= te.min() and len(va) == 0
        assert np.argmax(np.bincount(fd.y[tr], minlength=10)) in GROUPS[i % 5]

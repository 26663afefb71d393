import numpy as np
import pytest
import torch

from fedplat.data import build_federated
from fedplat.errors import UserError
from tests.helpers import make_cfg


def test_client_splits_cover_the_pool_disjointly():
    fed = build_federated(make_cfg("num_clients=7", "partition=dirichlet", "partition.alpha=0.5"))
    all_idx = np.concatenate([np.concatenate(s) for s in fed.splits])
    assert len(all_idx) == len(np.unique(all_idx)) == len(fed.y) == 5000
    c = fed.client(3)
    train, val, test = fed.splits[3]
    assert c.x_train.shape == (len(train), 40) and c.y_test.dtype == torch.int64
    n = len(train) + len(val) + len(test)
    assert len(test) == round(0.2 * n) and len(val) == round(0.1 * n)
    counts = fed.label_counts()
    assert counts.shape == (7, 10) and counts.sum() == sum(len(s[0]) for s in fed.splits)


def test_same_seed_same_partition_other_seed_differs():
    a = build_federated(make_cfg("num_clients=5", "seed=1"))
    b = build_federated(make_cfg("num_clients=5", "seed=1"))
    c = build_federated(make_cfg("num_clients=5", "seed=2"))
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a.splits, b.splits))
    assert not np.array_equal(a.splits[0][0], c.splits[0][0])


def test_pathological_train_and_test_share_classes():
    fed = build_federated(make_cfg("num_clients=10", "partition=pathological"))
    for cid in range(10):
        c = fed.client(cid)
        assert set(c.y_test.tolist()) <= set(c.y_train.tolist())
        assert len(set(c.y_train.tolist())) == 2


def test_clients_without_training_data_are_named():
    cfg = make_cfg("num_clients=2500", "split.test=0.5", "split.val=0.4")
    with pytest.raises(UserError, match=r"client \d+ gets no training samples"):
        build_federated(cfg)

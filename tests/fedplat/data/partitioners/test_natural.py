"""`partition=natural`: one share per natural owner, owners in id order."""

import numpy as np
import pytest

from fedplat.data import build_federated
from fedplat.data.partitioners import SampleData
from fedplat.data.partitioners.natural import PARTITIONER, natural
from fedplat.errors import UserError
from tests.conftest import SHARED_DATA
from tests.helpers import make_cfg

needs_wisdm = pytest.mark.skipif(
    not (SHARED_DATA / "wisdm" / "WISDM_ar_v1.1_transformed.arff").is_file(),
    reason="WISDM file not found in ../shared/data/wisdm; set FEDPLAT_DATA_DIR")


def test_natural_partition_one_share_per_user_in_id_order():
    g_train = np.array([7, 3, 3, 7, 5, 5, 5])
    g_test = np.array([3, 7, 5])
    y = np.zeros(7, dtype=np.int64)
    shares = natural(y, y[:3], 2, np.random.default_rng(0), g_train=g_train, g_test=g_test,
                     val_fraction=0.5)
    assert len(shares) == 2  # users 3 and 5 (ascending ids); user 7 unused
    (tr3, va3, te3), (tr5, va5, te5) = shares
    assert sorted(np.concatenate([tr3, va3]).tolist()) == [1, 2] and te3.tolist() == [0]
    assert sorted(np.concatenate([tr5, va5]).tolist()) == [4, 5, 6] and te5.tolist() == [2]
    assert len(va3) == 1 and len(va5) == 2  # round(0.5 * 3) = 2
    with pytest.raises(UserError, match="the dataset has 3 users, fewer than the 4 requested"):
        natural(y, y[:3], 4, np.random.default_rng(0), g_train=g_train, g_test=g_test,
                val_fraction=0.0)


def test_partition_maps_the_parts_onto_pooled_indices():
    groups = np.array([7, 3, 3, 7, 5, 5, 5, 3, 7, 5])  # 7 training samples, then 3 test
    data = SampleData(np.zeros(10, dtype=np.int64), seed=0, num_train=7, groups=groups)
    shares = PARTITIONER.partition(data, 3, np.random.default_rng(0), val_fraction=0.0)
    assert [s[0].tolist() for s in shares] == [[1, 2], [4, 5, 6], [0, 3]]
    assert [s[2].tolist() for s in shares] == [[7], [9], [8]]
    with pytest.raises(UserError, match=r"partition.val_fraction=1 must be in \[0, 1\)"):
        PARTITIONER.validate({"val_fraction": 1}, 3, 2, 10)


def test_natural_partition_needs_users():
    with pytest.raises(UserError, match="partition 'natural' needs a dataset with natural users"):
        make_cfg("partition=natural")


@needs_wisdm
def test_wisdm_natural_partition_with_server_shares():
    fed = build_federated(make_cfg("dataset=wisdm", "partition=natural", "num_clients=27",
                                   "split.server_shares=9", "split.label_ratio=0.1"))
    assert [len(s) for s in fed.server] == [152, 118, 179, 60, 146, 153, 157, 168, 64]
    c = fed.client(0)  # user 10: 178 windows
    assert len(c.y_test) + c.num_train + c.num_unlabeled == 178
    assert c.num_train == round(0.1 * (c.num_train + c.num_unlabeled))


@needs_wisdm
def test_wisdm_fewer_users_than_requested_is_one_line():
    with pytest.raises(UserError, match=r"dataset 'wisdm' has 36 users, fewer than the 39 "
                                        r"requested \(num_clients=30 \+ split.server_shares=9\)"):
        make_cfg("dataset=wisdm", "partition=natural", "num_clients=30",
                 "split.server_shares=9")

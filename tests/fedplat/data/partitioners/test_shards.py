"""`partition=shards`: McMahan's label-sorted shards."""

import numpy as np
import pytest

from fedplat.data.partitioners.shards import PARTITIONER, shards
from fedplat.errors import UserError

LABELS = np.repeat(np.arange(10), 100)


def test_shards_follow_mcmahan():
    parts = shards(LABELS, 50, np.random.default_rng(0), shards_per_client=2)
    assert {len(p) for p in parts} == {20}
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts)
    with pytest.raises(UserError, match="needs 2002 shards"):
        shards(LABELS, 1001, np.random.default_rng(0), shards_per_client=2)


def test_parameter_checks():
    with pytest.raises(UserError, match="shards_per_client=0 must be an integer >= 1"):
        PARTITIONER.validate({"shards_per_client": 0}, 10, 10, 1000)
    with pytest.raises(UserError, match="shards_per_client=3 x 400 clients exceeds the 1000"):
        PARTITIONER.validate({"shards_per_client": 3}, 400, 10, 1000)

"""`partition=pathological`: exactly k classes per client, classes spread evenly."""

import numpy as np
import pytest

from fedplat.data.partitioners.pathological import PARTITIONER, pathological
from fedplat.errors import UserError

LABELS = np.repeat(np.arange(10), 100)


def test_pathological_gives_exactly_k_classes_and_spreads_classes():
    parts = pathological(LABELS, 20, np.random.default_rng(1), classes_per_client=2)
    for p in parts:
        assert len(np.unique(LABELS[p])) == 2
    holders = np.zeros(10)
    for p in parts:
        holders[np.unique(LABELS[p])] += 1
    assert holders.min() == holders.max() == 4  # 20 clients * 2 classes / 10 classes


def test_unheld_classes_stay_unused():
    parts = pathological(LABELS, 3, np.random.default_rng(0), classes_per_client=2)
    assert sum(len(p) for p in parts) == 600  # 6 of the 10 classes are held


def test_parameter_checks():
    with pytest.raises(UserError, match="classes_per_client=0"):
        PARTITIONER.validate({"classes_per_client": 0}, 10, 10, 1000)
    with pytest.raises(UserError, match=r"classes_per_client=11 must be an integer in \[1, 10\]"):
        PARTITIONER.validate({"classes_per_client": 11}, 10, 10, 1000)

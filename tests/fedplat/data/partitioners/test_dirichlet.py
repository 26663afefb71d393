"""`partition=dirichlet`: label skew grows as alpha shrinks; bounded retries; parameter checks."""

import numpy as np
import pytest

from fedplat.data.partitioners.dirichlet import PARTITIONER, dirichlet
from fedplat.errors import UserError

LABELS = np.repeat(np.arange(10), 100)


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


def test_parameter_checks():
    check = PARTITIONER.validate
    with pytest.raises(UserError, match="alpha=0 must be > 0"):
        check({"alpha": 0, "min_size": 1, "max_retries": 1}, 10, 10, 1000)
    with pytest.raises(UserError, match="min_size=200 x 10 clients exceeds the 1000 samples"):
        check({"alpha": 1.0, "min_size": 200, "max_retries": 1}, 10, 10, 1000)
    with pytest.raises(UserError, match="max_retries=-1 must be an integer >= 0"):
        check({"alpha": 1.0, "min_size": 1, "max_retries": -1}, 10, 10, 1000)
    check({"alpha": 1.0, "min_size": 100, "max_retries": 0}, 10, 10, 1000)  # fits exactly

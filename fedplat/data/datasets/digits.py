"""`dataset=digits`: scikit-learn's bundled 8x8 digits (1,797 images, no download, no test part).

Partitioners that need a test part hold one out first (`split.test`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data.base import (
    DatasetInfo,
    DatasetSpec,
    RawDataset,
    always_available,
    standardise,
    unit_scale,
)
from fedplat.data.provenance import DataSource, package_version


def info(ds: DictConfig) -> DatasetInfo:
    """One 8x8 channel, 10 classes, 1,797 samples."""
    return DatasetInfo("digits", (1, 8, 8), 10, "image", 1797)


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """Pixels scaled to [0, 1], then standardised over all samples (all are training data)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = unit_scale(bunch.data.reshape(-1, 1, 8, 8), 16)
    y = bunch.target.astype(np.int64)
    x, _ = standardise(x, x[:0], in_place=True)
    origin = DataSource(__name__, "package", "bundled with scikit-learn (load_digits)",
                        package=package_version("scikit-learn"))
    return RawDataset(info(ds), x, y, x[:0], y[:0], source=origin)


SPECS = (DatasetSpec("digits", info, always_available, load),)

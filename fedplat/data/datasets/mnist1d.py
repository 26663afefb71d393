"""`dataset=mnist1d`: MNIST-1D (Greydanus 2020), generated locally and cached.

Never `mnist1d.get_dataset`, which downloads: the generator runs here (about a second for
5,000 samples) and its arrays are cached as `mnist1d_n<num_samples>.npz`.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data.base import DatasetInfo, DatasetSpec, RawDataset, always_available


def info(ds: DictConfig) -> DatasetInfo:
    """40 features, 10 classes, `dataset.num_samples` samples (train and test together)."""
    return DatasetInfo("mnist1d", (40,), 10, "vector", int(ds.get("num_samples", 5000)))


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """The generator's own train/test parts (80/20); a broken cache entry is regenerated."""
    meta = info(ds)
    path = cache / f"mnist1d_n{meta.num_samples}.npz"
    arrays: dict[str, np.ndarray] | None = None
    if path.is_file():
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError, zlib.error):
            arrays = None
    if arrays is None:
        import mnist1d.data  # local generation only

        args = mnist1d.get_dataset_args()
        args.num_samples = meta.num_samples
        made = mnist1d.data.make_dataset(args)
        arrays = {k: np.asarray(made[k]) for k in ("x", "y", "x_test", "y_test")}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"],
                 y_test=arrays["y_test"])
        tmp.replace(path)
    return RawDataset(
        meta,
        arrays["x"].astype(np.float32),
        arrays["y"].astype(np.int64),
        arrays["x_test"].astype(np.float32),
        arrays["y_test"].astype(np.int64),
    )


SPECS = (DatasetSpec("mnist1d", info, always_available, load),)

"""`dataset=cifar10`: CIFAR-10 from the python batches (local folder or a download).

Looked for in `dataset.root` (only there when it is set), else `$FEDPLAT_DATA_DIR/cifar10`,
`../shared/data/cifar10` and the cache, each also as `<dir>/cifar-10-batches-py`. A folder
with some of the six batches but not all is an error.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data import sources
from fedplat.data.base import (
    DatasetInfo,
    DatasetSpec,
    RawDataset,
    check_via_info,
    standardise,
    unit_scale,
)
from fedplat.data.provenance import DataSource
from fedplat.errors import UserError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def _dirs(ds: DictConfig) -> list[Path]:
    dirs = sources.search_dirs("cifar10", ds.get("root") or None)
    return [p for d in dirs for p in (d, d / "cifar-10-batches-py")]


def source(ds: DictConfig) -> Path | None:
    """The folder holding the six batches; None when absent but a download is allowed."""
    dirs = _dirs(ds)
    found = sources.find_complete(dirs, CIFAR_FILES, "CIFAR-10", gz=False)
    if found is not None or ds.get("allow_download", False):
        return found
    raise UserError(f"CIFAR-10 not found: no folder of [{', '.join(str(d) for d in dirs)}] "
                    f"holds the six batches ({', '.join(CIFAR_FILES)}); extract "
                    "cifar-10-python.tar.gz so that cifar-10-batches-py/ lies in dataset.root or "
                    "$FEDPLAT_DATA_DIR/cifar10, or set dataset.allow_download=true on a machine "
                    "that is online")


def info(ds: DictConfig) -> DatasetInfo:
    """32x32 colour images, 10 classes, 60,000 samples (raises when the files are absent)."""
    source(ds)
    return declared(ds)


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without looking for the files."""
    return DatasetInfo("cifar10", (3, 32, 32), 10, "image", 60000)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as (uint8 images (n, 3, 32, 32), int64 labels)."""
    try:
        with path.open("rb") as fh:
            d = pickle.load(fh, encoding="latin1")
        x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d["labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as exc:
        raise UserError(f"corrupt CIFAR-10 batch {path}: {exc}; provide a fresh copy of the "
                        f"six python batches ({', '.join(CIFAR_FILES)}) in {path.parent}, "
                        "extracted from cifar-10-python.tar.gz") from None
    return x, y


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """The official 50,000/10,000 parts, standardised per channel."""
    directory = source(ds)
    url = None
    if directory is None:
        url = CIFAR_URL
        archive = sources.download(CIFAR_URL, cache / "cifar10" / "cifar-10-python.tar.gz",
                                   md5=CIFAR_MD5)
        with tarfile.open(archive) as tar:
            tar.extractall(archive.parent, filter="data")
        directory = archive.parent / "cifar-10-batches-py"
    parts = [read_batch(directory / f) for f in CIFAR_FILES]
    x_train = unit_scale(np.concatenate([p[0] for p in parts[:5]]), 255)
    y_train = np.concatenate([p[1] for p in parts[:5]])
    x_test, y_test = unit_scale(parts[5][0], 255), parts[5][1]
    del parts
    x_train, x_test = standardise(x_train, x_test, per_channel=True, in_place=True)
    origin = DataSource(__name__, "cifar-batches", f"from {directory}",
                        tuple(str(directory / f) for f in CIFAR_FILES),
                        details={"downloaded_from": url} if url else {})
    return RawDataset(info(ds), x_train, y_train, x_test, y_test, source=origin)


SPECS = (DatasetSpec("cifar10", info, check_via_info(info), load, declared),)

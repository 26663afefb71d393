"""`dataset=npz`: your own arrays in one NumPy `.npz` file (`numpy.savez`).

Keys read (others are ignored):

* `x_train`: features, (n, F) vectors, (n, H, W) grey images, or (n, C, H, W) / (n, H, W, C)
  images with C in {1, 3} (channels last when the last axis is 1 or 3 and the second is not);
* `y_train`: (n,) integer labels 0..K-1;
* `x_test`, `y_test` (optional, both or neither): the official test part, same layout.

uint8 features are pixels (divided by 255); any other numeric dtype is read as float32. With
`dataset.standardize=true` (the default) features are standardised with the training part's
statistics (per channel for images, over all values for vectors), as the bundled loaders do.
The file is opened with `allow_pickle=False`: object arrays are refused, never executed.
Without a test part, partitioners cut one from each client's share (`split.test`).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from fedplat.data.base import DatasetInfo, DatasetSpec, RawDataset, standardise, unit_scale
from fedplat.data.provenance import DataSource
from fedplat.errors import UserError

#: The keys a file must hold, then those it may hold.
REQUIRED_KEYS = ("x_train", "y_train")
OPTIONAL_KEYS = ("x_test", "y_test")
EXPECTED = ("a .npz holding x_train (n, F) | (n, H, W) | (n, C, H, W) | (n, H, W, C) and "
            "y_train (n,) integer labels, optionally x_test and y_test")
#: `DatasetInfo.num_samples` when the file is not read (validation without the data).
UNKNOWN_SAMPLES = 2**31 - 1


def _path(ds: DictConfig) -> Path:
    raw = str(ds.get("path") or "")
    if not raw:
        raise UserError(f"dataset=npz needs dataset.path=FILE.npz: {EXPECTED}")
    path = Path(raw).expanduser()
    if not path.is_file():
        raise UserError(f"npz file not found: dataset.path={path} (searched: [{path.parent}] "
                        f"for {path.name}); expected {EXPECTED}")
    return path


def _layout(x: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, str]:
    """Features as (n, F) or (n, C, H, W), and the `DatasetInfo.kind` they are."""
    if x.ndim == 2:
        return x, "vector"
    if x.ndim == 3:
        return x[:, None], "image"
    if x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            return x.transpose(0, 3, 1, 2), "image"
        return x, "image"
    raise UserError(f"{path}: {key} has shape {x.shape}; expected {EXPECTED}")


def _labels(y: np.ndarray, n: int, key: str, path: Path) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise UserError(f"{path}: {key} has shape {y.shape}, expected ({n},): one label per "
                        "sample")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise UserError(f"{path}: {key} has dtype {y.dtype}; labels must be integers 0..K-1")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise UserError(f"{path}: {key} holds negative labels; labels must be integers 0..K-1")
    return y


def _read(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The file's arrays under the known keys (only `keys` when given), or one error line.

    An npz member is decompressed only when read, so `keys=("y_train", "y_test")` reads the
    labels alone.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            present = set(f.files)
            missing = [k for k in REQUIRED_KEYS if k not in present]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)} (has "
                                f"{', '.join(sorted(present)) or 'no arrays'}); expected "
                                f"{EXPECTED}")
            test = [k for k in OPTIONAL_KEYS if k in present]
            if len(test) == 1:
                raise UserError(f"{path} holds {test[0]} without "
                                f"{'y_test' if test[0] == 'x_test' else 'x_test'}; give both "
                                "or neither")
            return {k: f[k] for k in (*REQUIRED_KEYS, *test) if keys is None or k in keys}
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"corrupt npz file {path}: {exc}; expected {EXPECTED}") from None


def _header(path: Path, key: str) -> tuple[int, ...]:
    """An array's shape from its .npy header, without reading its values."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape = np.lib.format.read_array_header_1_0(fh)[0]
            else:
                shape = np.lib.format.read_array_header_2_0(fh)[0]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"corrupt npz file {path}: {exc}; expected {EXPECTED}") from None
    return tuple(int(v) for v in shape)


def info(ds: DictConfig) -> DatasetInfo:
    """Shape from the features' header (not read); classes and sample count from the labels."""
    path = _path(ds)
    labels = _read(path, ("y_train", "y_test"))
    x_shapes = {k: _header(path, f"x_{k[2:]}") for k in labels}  # y_train -> x_train's
    for k, y in labels.items():
        _labels(y, x_shapes[k][0], k, path)
    feats = _layout(np.empty((0, *x_shapes["y_train"][1:]), np.float32), "x_train", path)[0]
    shape = tuple(int(v) for v in feats.shape[1:])
    kind = "image" if len(shape) == 3 else "vector"
    n = sum(len(y) for y in labels.values())
    return DatasetInfo("npz", shape, _num_classes(ds, labels, path), kind, n)


def _num_classes(ds: DictConfig, arrays: dict[str, np.ndarray], path: Path) -> int:
    """`dataset.num_classes` when set (checked against the labels), else max label + 1."""
    top = max(int(_labels(arrays[k], len(arrays[k]), k, path).max(initial=-1))
              for k in ("y_train", "y_test") if k in arrays) + 1
    asked = ds.get("num_classes", 0)
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 0:
        raise UserError(f"dataset.num_classes={asked!r} must be an integer >= 0 (0: from the "
                        "labels)")
    if asked and top > asked:
        raise UserError(f"{path}: label {top - 1} is outside dataset.num_classes={asked}")
    if top < 1:
        raise UserError(f"{path}: y_train is empty; expected {EXPECTED}")
    return int(asked or top)


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without reading the file: `dataset.num_classes` and `dataset.feature_shape`."""
    classes = ds.get("num_classes", 0)
    shape: Any = ds.get("feature_shape", [])
    shape = list(shape) if shape else []
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1 or \
            len(shape) not in (1, 3) or not all(isinstance(v, int) and v > 0 for v in shape):
        raise UserError("dataset=npz is described by its file: set dataset.num_classes=K and "
                        "dataset.feature_shape=[F] (or [C,H,W]) to check this config where the "
                        "file is absent")
    return DatasetInfo("npz", tuple(shape), classes, "image" if len(shape) == 3 else "vector",
                       UNKNOWN_SAMPLES)


def check(ds: DictConfig) -> None:
    """The file exists and holds the required keys (`info`)."""
    info(ds)


def _features(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype.kind not in "uif" or x.dtype == np.bool_:
        raise UserError(f"{path}: {key} has dtype {x.dtype}; features must be numeric")
    x, _ = _layout(x, key, path)
    return unit_scale(x, 255) if x.dtype == np.uint8 else x.astype(np.float32)


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """The file's train (and test) parts, standardised with the training part's statistics."""
    path = _path(ds)
    arrays = _read(path)
    meta = info(ds)
    x_train = _features(arrays["x_train"], "x_train", path)
    y_train = _labels(arrays["y_train"], len(x_train), "y_train", path)
    if "x_test" in arrays:
        x_test = _features(arrays["x_test"], "x_test", path)
        y_test = _labels(arrays["y_test"], len(x_test), "y_test", path)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise UserError(f"{path}: x_test samples have shape {x_test.shape[1:]}, x_train's "
                            f"{x_train.shape[1:]}; both parts need one layout")
    else:
        x_test, y_test = x_train[:0], y_train[:0]
    if ds.get("standardize", True):
        x_train, x_test = standardise(x_train, x_test, per_channel=meta.kind == "image",
                                      in_place=True)
    origin = DataSource(__name__, "npz", f"from {path}", (str(path),),
                        details={"keys": sorted(arrays), "standardize": bool(
                            ds.get("standardize", True))})
    return RawDataset(meta, x_train, y_train, x_test, y_test, source=origin)


SPECS = (DatasetSpec("npz", info, check, load, declared),)

"""The IDX format of MNIST and Fashion-MNIST: a reader, and loading or fetching the four files.

Format: big-endian header; images have magic 2051 then (n, rows, cols) and pixels from byte
16; labels have magic 2049 then n and labels from byte 8. Files may be gzip-compressed.
Corruption of any kind becomes one `UserError` line.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from fedplat.data import sources
from fedplat.data.base import DatasetInfo, RawDataset, standardise, unit_scale
from fedplat.data.provenance import DataSource
from fedplat.errors import UserError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
#: The four files of an IDX dataset (each may also be gzip-compressed, `<name>.gz`).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"corrupt data file {path}: {exc}; delete it and provide a fresh "
                        "copy") from None


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX images (n, rows, cols) or labels (n,) file into a uint8 array."""
    raw = _read_bytes(path)
    if len(raw) < 8:
        raise UserError(f"corrupt IDX file {path}: only {len(raw)} bytes; provide a fresh copy")
    magic, count = struct.unpack(">II", raw[:8])
    if magic == LABELS_MAGIC:
        shape: tuple[int, ...] = (count,)
        offset = 8
    elif magic == IMAGES_MAGIC:
        if len(raw) < 16:
            raise UserError(f"corrupt IDX file {path}: truncated header; provide a fresh copy")
        rows, cols = struct.unpack(">II", raw[8:16])
        shape = (count, rows, cols)
        offset = 16
    else:
        raise UserError(f"corrupt IDX file {path}: magic number {magic} is neither "
                        f"{IMAGES_MAGIC} (images) nor {LABELS_MAGIC} (labels)")
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise UserError(f"corrupt IDX file {path}: header promises {expected} values but the "
                        f"file holds {len(raw) - offset}; provide a fresh copy")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def idx_source(loader: str, directory: Path, url: str | None = None) -> DataSource:
    """The `DataSource` of the four IDX files in `directory` (downloaded from `url`)."""
    files = tuple(str(sources.resolve_file(directory, n)) for n in IDX_FILES)
    return DataSource(loader, "idx", f"from {directory}", files,
                      details={"downloaded_from": url} if url else {})


def load_idx_dataset(info: DatasetInfo, directory: Path,
                     origin: DataSource | None = None) -> RawDataset:
    """The four IDX files in `directory` as a standardised dataset, sanity-checked."""
    xtr, ytr, xte, yte = (read_idx(sources.resolve_file(directory, n)) for n in IDX_FILES)
    if xtr.ndim != 3 or xte.ndim != 3 or ytr.ndim != 1 or yte.ndim != 1:
        raise UserError(f"corrupt IDX files in {directory}: images and labels are swapped or "
                        "malformed; provide fresh copies")
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise UserError(f"corrupt IDX files in {directory}: {len(xtr)} train images but "
                        f"{len(ytr)} labels; provide fresh copies")
    if max(int(ytr.max()), int(yte.max())) >= info.num_classes:
        raise UserError(f"corrupt IDX labels in {directory}: label above "
                        f"{info.num_classes - 1}; provide fresh copies")
    x_train, x_test = standardise(unit_scale(xtr[:, None], 255), unit_scale(xte[:, None], 255),
                                  in_place=True)
    return RawDataset(info, x_train, ytr.astype(np.int64), x_test, yte.astype(np.int64),
                      source=origin)


def download_idx(name: str, url: str) -> Path:
    """Fetch the four gzipped IDX files from `url` into the cache's `<name>` folder."""
    target = sources.cache_dir(None) / name
    for fname in IDX_FILES:
        if not (target / f"{fname}.gz").is_file():
            sources.download(f"{url}{fname}.gz", target / f"{fname}.gz")
    return target

"""Reader for the IDX format of (Fashion-)MNIST, with checks that turn corruption into one line.

Format: big-endian header; images have magic 2051 then (n, rows, cols) and pixels from byte
16; labels have magic 2049 then n and labels from byte 8. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from fedplat.errors import UserError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


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

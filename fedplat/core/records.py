"""Conversions between torch state dicts and Flower records, and checks of what clients send."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

#: The ConfigRecord fedplat adds to every message (client id, round, stage).
CONTROL = "fedplat"


def to_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """An ArrayRecord holding CPU copies of `state`'s tensors (names kept)."""
    return ArrayRecord({k: v.detach().cpu() for k, v in state.items()})


def array_values(arr: Array) -> np.ndarray:
    """An Array's values as a read-only numpy view of its buffer.

    Flower keeps each array as `.npy` bytes (a short header, then the raw data). When the
    header says what the Array's own dtype and shape say (native byte order, C order), the
    values are the last `size * itemsize` bytes and are read without parsing the header, which
    `Array.numpy` (`np.load`) spends most of its time on: a server checking and averaging 100
    replies of a small model decodes 1,200 arrays per round. Anything else takes `np.load`.
    """
    if arr.stype == "numpy.ndarray":
        try:
            dtype = np.dtype(arr.dtype)
        except TypeError:
            dtype = None
        if dtype is not None and not dtype.hasobject:
            count = math.prod(arr.shape)
            data = arr.data
            start = len(data) - count * dtype.itemsize
            header = data[:start] if start > 0 else b""
            if (header.startswith(b"\x93NUMPY") and b"'fortran_order': False" in header
                    and f"'descr': '{dtype.str}'".encode() in header):
                return np.frombuffer(data, dtype=dtype, count=count,
                                     offset=start).reshape(arr.shape)
    return arr.numpy()


def from_record(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """Fresh, writable tensors from an ArrayRecord (never views of the message's buffers)."""
    return {k: torch.from_numpy(array_values(a).copy()) for k, a in record.items()}


def metrics_of(content: RecordDict, key: str = "metrics") -> dict[str, float]:
    """The numeric metrics a client put under `key` (empty if none)."""
    rec = content.get(key)
    if not isinstance(rec, MetricRecord):
        return {}
    return {k: float(v) for k, v in rec.items() if isinstance(v, int | float)}


def scalar(value: object) -> int | float | str | bool:
    """A config-record value that must be a single number, string or flag (not a list).

    Flower types record values as a union of scalars and lists; this narrows it for `int()`,
    `float()` and `str()` and says clearly when a peer sent something else.
    """
    if isinstance(value, int | float | str | bool):
        return value
    raise TypeError(f"expected a single value in the record, got {type(value).__name__}")


def non_finite(content: RecordDict) -> str | None:
    """Name the first array entry holding NaN/inf values (None if all are finite)."""
    for name, rec in content.array_records.items():
        for key, arr in rec.items():
            values = array_values(arr)
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                return f"non-finite values in {name}/{key}"
    return None


def mismatch(record: object, reference: Mapping[str, torch.Tensor], name: str) -> str | None:
    """Why `record` does not match `reference`'s names and shapes (None if it does)."""
    if not isinstance(record, ArrayRecord):
        return f"no array record '{name}' in the reply"
    if set(record.keys()) != set(reference):
        missing = sorted(set(reference) - set(record.keys()))
        extra = sorted(set(record.keys()) - set(reference))
        return f"'{name}' has wrong entries (missing {missing[:3]}, unexpected {extra[:3]})"
    for key, ref in reference.items():
        shape = tuple(record[key].shape)
        if shape != tuple(ref.shape):
            return f"'{name}/{key}' has shape {shape}, expected {tuple(ref.shape)}"
    return None

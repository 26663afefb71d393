"""Conversions between torch state dicts and Flower records, and checks of what clients send."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

#: The ConfigRecord fedplat adds to every message (client id, round, stage).
CONTROL = "fedplat"


@lru_cache(maxsize=4096)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The `.npy` header `np.save` writes for a C-ordered array of `dtype` and `shape`."""
    empty = np.empty(shape, dtype=np.dtype(dtype))
    buffer = io.BytesIO()
    np.save(buffer, empty, allow_pickle=False)
    data = buffer.getvalue()
    return data[:len(data) - empty.nbytes]


def to_array(values: np.ndarray) -> Array:
    """A Flower Array of `values`, byte for byte what `Array(values)` builds, faster.

    Flower's own constructor runs `np.save` for every array, and a node replying for 500
    clients of a small model builds 3,000 of them a round: parsing nothing, the header is the
    same for every array of one dtype and shape, so it is computed once and the raw bytes are
    appended. Arrays that are not C-ordered (or hold objects) take Flower's path.
    """
    if values.dtype.hasobject or not values.flags.c_contiguous:
        return Array.from_numpy_ndarray(values)
    shape = tuple(int(n) for n in values.shape)
    return Array(dtype=str(values.dtype), shape=shape, stype="numpy.ndarray",
                 data=_npy_header(values.dtype.str, shape) + values.tobytes())


def stacked_array(rows: Sequence[np.ndarray]) -> Array:
    """`to_array(np.stack(rows))` with one copy fewer (the stack's buffer is joined as is)."""
    stacked = np.stack(rows)
    if stacked.dtype.hasobject or stacked.size == 0 or not stacked.flags.c_contiguous:
        return to_array(stacked)
    shape = tuple(int(n) for n in stacked.shape)
    data = b"".join((_npy_header(stacked.dtype.str, shape), stacked.data.cast("B")))
    return Array(dtype=str(stacked.dtype), shape=shape, stype="numpy.ndarray", data=data)


def to_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """An ArrayRecord holding CPU copies of `state`'s tensors (names kept)."""
    return ArrayRecord(array_dict={k: to_array(v.detach().cpu().numpy())
                                   for k, v in state.items()}, keep_input=False)


class _Unbuilt(dict[str, Any]):
    """A RowRecord's attribute dict: the Flower Arrays (`_data`) are built on first use."""

    def __missing__(self, key: str) -> Any:
        if key != "_data":
            raise KeyError(key)
        built = {name: to_array(v) for name, v in self["_rows"].items()}
        self["_data"] = built
        return built


class RowRecord(ArrayRecord):
    """An ArrayRecord of numpy arrays whose Flower Arrays are built only if something asks.

    Clients trained together on one node (`simulation.batched=true`) reply with rows of one
    stacked tensor, and the packed wire format (`fedplat.transport.wire`) sends each stack as
    one array and hands the server one row per client. Building a Flower `Array` (a Python
    object with validation and `.npy` bytes) per client and parameter costs more than the
    clients' training itself at hundreds of clients per node, and fedplat's own readers
    (`record_values`, `from_record`, `non_finite`, `mismatch`, `count_bytes`) only need the
    numbers. Everything else an ArrayRecord offers works unchanged: the first access through
    Flower's API (items, indexing, serialisation) builds the Arrays, byte for byte those of
    `to_record`, and from then on the record is an ordinary ArrayRecord.

    How: Flower's record classes keep their entries in `self.__dict__["_data"]`, and this
    record's attribute dict builds that entry when it is first looked up (`_Unbuilt`).
    Flower names an object's class in its serialised header (and its object id), so this
    class calls itself `ArrayRecord` there: a RowRecord that does travel (a strategy sending a
    reply back out) is built, sent and received as the ArrayRecord it equals. Flower is pinned
    to one version (pyproject), and tests check the record against a built one through
    Flower's API, its wire serialisation and pickling.
    """

    __qualname__ = "ArrayRecord"

    def __init__(self, rows: Mapping[str, np.ndarray], *, finite: bool = False,
                 count: int | None = None) -> None:
        """Rows by name; what the caller already knows about them may come along.

        `finite=True`: every value was checked to be finite (`non_finite` skips the record);
        `count`: its `count_bytes` (the rows of one stack share it).
        """
        super().__init__()
        attrs = _Unbuilt(self.__dict__)
        del attrs["_data"]
        attrs["_rows"] = dict(rows)
        attrs["_finite"] = finite
        attrs["_count"] = count
        self.__dict__ = attrs

    @property
    def known_finite(self) -> bool:
        """True when the rows are unchanged since they were checked to be finite."""
        return not self.built and bool(self.__dict__["_finite"])

    @property
    def built(self) -> bool:
        """True once Flower Arrays exist for the rows (then they are the record's contents)."""
        return dict.__contains__(self.__dict__, "_data")

    def rows(self) -> dict[str, np.ndarray]:
        """The values by name, without building Arrays (while the record is unbuilt)."""
        if self.built:
            return {k: array_values(a) for k, a in self.items()}
        return dict(self.__dict__["_rows"])

    def count_bytes(self) -> int:
        """As `ArrayRecord.count_bytes` (the `.npy` bytes plus key names), without building."""
        if self.built:
            return super().count_bytes()
        if self.__dict__["_count"] is None:
            self.__dict__["_count"] = sum(len(k) + len(_npy_header(v.dtype.str, v.shape))
                                          + v.nbytes for k, v in self.__dict__["_rows"].items())
        return int(self.__dict__["_count"])

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its rows (unbuilt) or as the plain ArrayRecord it has become."""
        if self.built:
            return (_array_record, (dict(self.items()),))
        return (_row_record, (self.__dict__["_rows"],))


def _array_record(arrays: dict[str, Array]) -> ArrayRecord:
    return ArrayRecord(array_dict=arrays, keep_input=False)


def _row_record(rows: dict[str, np.ndarray]) -> RowRecord:
    # pickle finds classes by qualified name, which RowRecord lends to ArrayRecord
    return RowRecord(rows)


def to_rows(state: Mapping[str, torch.Tensor]) -> RowRecord:
    """`to_record` for a reply that will travel stacked (see RowRecord): no Arrays built."""
    return RowRecord({k: v.detach().cpu().numpy() for k, v in state.items()})


def record_values(record: ArrayRecord) -> dict[str, np.ndarray]:
    """An ArrayRecord's values by name as read-only numpy arrays (RowRecords stay unbuilt)."""
    if isinstance(record, RowRecord):
        return record.rows()
    return {k: array_values(a) for k, a in record.items()}


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
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in record_values(record).items()}


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
        if isinstance(rec, RowRecord) and rec.known_finite:
            continue
        for key, values in record_values(rec).items():
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                return f"non-finite values in {name}/{key}"
    return None


def mismatch(record: object, reference: Mapping[str, torch.Tensor], name: str) -> str | None:
    """Why `record` does not match `reference`'s names and shapes (None if it does)."""
    if not isinstance(record, ArrayRecord):
        return f"no array record '{name}' in the reply"
    values = record_values(record)
    if set(values) != set(reference):
        missing = sorted(set(reference) - set(values))
        extra = sorted(set(values) - set(reference))
        return f"'{name}' has wrong entries (missing {missing[:3]}, unexpected {extra[:3]})"
    for key, ref in reference.items():
        shape = tuple(values[key].shape)
        if shape != tuple(ref.shape):
            return f"'{name}/{key}' has shape {shape}, expected {tuple(ref.shape)}"
    return None

"""Record conversions: the fast .npy reader agrees with Flower's own decoding."""

import pickle

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto

from fedplat.core.records import (
    RowRecord,
    array_values,
    from_record,
    mismatch,
    non_finite,
    stacked_array,
    to_array,
    to_record,
    to_rows,
)


@pytest.mark.parametrize("values", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array(2.5),  # a 0-d array
    np.array([1, -2, 3], dtype=np.int64),
    np.array([True, False]),
    np.zeros((0, 5), dtype=np.float32),
    np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),  # np.load path
    np.arange(4, dtype=">f4"),  # big-endian: np.load path
])
def test_array_values_equal_flowers_decoding(values):
    arr = Array(values)
    got = array_values(arr)
    want = arr.numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_from_record_gives_fresh_writable_tensors():
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1.0, 2.0])}
    record = to_record(state)
    out = from_record(record)
    assert list(out) == ["w", "b"]
    for name, tensor in state.items():
        assert torch.equal(out[name], tensor)
    out["w"] += 1  # writable, and not a view of the record's bytes
    assert torch.equal(from_record(record)["w"], state["w"])


def test_non_finite_names_the_entry():
    record = ArrayRecord({"w": torch.tensor([1.0, float("nan")]), "b": torch.ones(2)})
    from flwr.app import RecordDict

    assert non_finite(RecordDict({"arrays": record})) == "non-finite values in arrays/w"
    assert non_finite(RecordDict({"arrays": to_record({"b": torch.ones(2)})})) is None


@pytest.mark.parametrize("values", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array(2.5),
    np.array([1, -2, 3], dtype=np.int64),
    np.zeros((0, 5), dtype=np.float32),
    np.arange(4, dtype=">f4"),
    np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),  # Flower's own path
])
def test_to_array_is_byte_for_byte_flowers_array(values):
    got, want = to_array(values), Array(values)
    assert (got.dtype, got.shape, got.stype, got.data) == (want.dtype, want.shape, want.stype,
                                                            want.data)


def _state():
    w = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    return {"w": w, "b": torch.arange(3.0), "n": torch.tensor(7)}


def test_to_record_equals_flowers_record_of_the_same_state():
    state = _state()
    assert to_record(state) == ArrayRecord(state)
    assert to_record(state).object_id == ArrayRecord(state).object_id


def test_a_row_record_is_read_without_building_arrays_and_equals_the_built_record():
    state = _state()
    rows = to_rows(state)
    reference = ArrayRecord(state)
    assert rows.count_bytes() == reference.count_bytes()
    values = from_record(rows)
    assert all(torch.equal(values[k], state[k]) for k in state)
    values["w"].add_(1.0)  # fresh tensors: the record is untouched
    assert mismatch(rows, state, "arrays") is None
    assert non_finite(RecordDict({"arrays": rows})) is None
    assert not rows.built
    # Flower's API builds the Arrays, and the record is then the ArrayRecord it equals
    assert sorted(rows.keys()) == ["b", "n", "w"] and rows.built
    assert rows == reference and rows.object_id == reference.object_id
    assert rows.count_bytes() == reference.count_bytes()


def test_a_row_record_names_itself_array_record_on_the_wire_and_survives_pickling():
    rows = to_rows(_state())
    again = pickle.loads(pickle.dumps(rows))
    assert isinstance(again, RowRecord) and not again.built and again == ArrayRecord(_state())
    sent = recorddict_from_proto(recorddict_to_proto(RecordDict({"arrays": to_rows(_state())})))
    assert type(sent["arrays"]) is ArrayRecord and sent["arrays"] == ArrayRecord(_state())
    built = to_rows(_state())
    built["extra"] = Array(np.ones(2))  # a write builds the Arrays first, then adds
    assert sorted(built.keys()) == ["b", "extra", "n", "w"]
    assert type(pickle.loads(pickle.dumps(built))) is ArrayRecord


def test_non_finite_finds_a_nan_in_a_row_record():
    state = _state()
    state["w"][1, 2] = float("nan")
    assert non_finite(RecordDict({"arrays": to_rows(state)})) == "non-finite values in arrays/w"


@pytest.mark.parametrize("rows", [
    [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 3), np.float32)],
    [np.zeros((3, 0), np.float32)] * 2,
    [np.arange(3, dtype=">f4")] * 3,
    [np.array(2.0)] * 4,
    [np.asfortranarray(np.arange(6.0).reshape(2, 3))] * 2,
])
def test_stacked_array_is_the_array_of_the_stack(rows):
    got, want = stacked_array(rows), to_array(np.stack(rows))
    assert (got.dtype, got.shape, got.data) == (want.dtype, want.shape, want.data)

"""Record conversions: the fast .npy reader agrees with Flower's own decoding."""

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from fedplat.core.records import array_values, from_record, non_finite, to_record


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

import pytest
import torch

from fedplat.core import ops


def test_weighted_average_hand_computed_and_order_free():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(8)}
    avg = ops.weighted_average({0: a, 1: b}, {0: 1.0, 1: 3.0})
    assert torch.allclose(avg["w"], torch.tensor([2.5, 5.0]))
    assert avg["n"].dtype == torch.int64 and int(avg["n"]) == 7
    rev = ops.weighted_average({1: b, 0: a}, {1: 3.0, 0: 1.0})
    assert torch.equal(rev["w"], avg["w"])
    with pytest.raises(ValueError, match="total weight"):
        ops.weighted_average({0: a}, {0: 0.0})


def test_add_subtract_norm_flatten():
    a = {"x": torch.tensor([3.0, 0.0]), "y": torch.tensor([[0.0, 4.0]])}
    b = {"x": torch.tensor([1.0, 1.0]), "y": torch.tensor([[1.0, 1.0]])}
    assert torch.equal(ops.subtract(a, b)["x"], torch.tensor([2.0, -1.0]))
    assert torch.equal(ops.add_scaled(a, b, 2.0)["y"], torch.tensor([[2.0, 6.0]]))
    assert ops.norm(a) == pytest.approx(5.0)
    assert ops.flatten(a).tolist() == [3.0, 0.0, 0.0, 4.0]

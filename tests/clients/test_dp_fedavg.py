"""DP-FedAvg client: clipping and noise of the update, as a pure function."""

import pytest
import torch

from clients.dp_fedavg import privatize


def test_clips_jointly_to_the_norm_and_keeps_small_updates():
    update = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[4.0]]),
              "n": torch.tensor(7)}
    out, norm = privatize(update, 1.0, 0.0, torch.Generator())
    assert norm == pytest.approx(5.0)
    torch.testing.assert_close(out["a"], torch.tensor([0.6, 0.0]))
    torch.testing.assert_close(out["b"], torch.tensor([[0.8]]))
    assert int(out["n"]) == 7  # integer entries untouched
    small, _ = privatize(update, 10.0, 0.0, torch.Generator())
    torch.testing.assert_close(small["a"], update["a"])


def test_noise_has_std_multiplier_times_clip():
    update = {"w": torch.zeros(20000)}
    out, _ = privatize(update, 0.5, 2.0, torch.Generator().manual_seed(0))
    assert float(out["w"].std()) == pytest.approx(1.0, rel=0.03)
    again, _ = privatize(update, 0.5, 2.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["w"], again["w"])

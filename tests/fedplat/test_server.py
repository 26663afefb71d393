import math

import pytest

from fedplat.server import aggregate_metrics, progress_line


def test_aggregate_metrics_pooled_and_mean():
    per_client = {
        0: {"num-examples": 10, "num-val-examples": 1, "test_accuracy": 0.5, "val_accuracy": 1.0},
        1: {"num-examples": 30, "num-val-examples": 3, "test_accuracy": 0.9, "val_accuracy": 0.0},
        2: {"num-examples": 5, "test_accuracy": math.nan},
    }
    out = aggregate_metrics(per_client)
    assert out["test_accuracy"] == pytest.approx((0.5 * 10 + 0.9 * 30) / 40)
    assert out["test_accuracy_mean"] == pytest.approx(0.7)
    assert out["val_accuracy"] == pytest.approx(0.25)  # weighted by num-val-examples
    assert "num-examples" not in out


def test_progress_line():
    line = progress_line({"round": 3, "train_loss": 0.5, "test_accuracy": 0.81234,
                          "num_train_clients": 10, "failures_train": 1, "late_train": 0,
                          "round_time_s": 1.234}, 30)
    assert line.startswith("round  3/30") and "test_acc 0.8123" in line
    assert "clients 9/10" in line and line.endswith("1.23 s")


def test_test_metrics_sent_with_train_replies_are_weighted_by_test_counts():
    per_client = {
        0: {"num-examples": 100, "num-test-examples": 1, "test_accuracy": 1.0, "train_loss": 1.0},
        1: {"num-examples": 1, "num-test-examples": 3, "test_accuracy": 0.0, "train_loss": 3.0},
    }
    out = aggregate_metrics(per_client)
    assert out["test_accuracy"] == pytest.approx(0.25)  # by num-test-examples
    assert out["train_loss"] == pytest.approx((100 + 3) / 101)  # by num-examples
    assert "num-test-examples" not in out and "num-test-examples_mean" not in out

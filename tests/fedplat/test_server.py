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


def test_each_evaluation_says_whom_it_covered_and_can_reach_offline_clients(tmp_path):
    from fedplat.server import coverage
    from tests.helpers import run_inline

    assert coverage({3: {"test_accuracy": 0.5}, 4: {"train_loss": 1.0}}, 8) == {
        "evaluated_clients": 1, "covered_fraction": 0.125}
    assert coverage({4: {"train_loss": 1.0}}, 8) == {}
    common = ("num_clients=6", "num_rounds=2", "dataset.num_samples=900", "model=mlp",
              "seed=3", "faults.dropout_prob=0.3")
    _, rows = run_inline(tmp_path / "dropout", *common)
    for r in rows:  # offline clients are evaluated neither
        assert r["evaluated_clients"] == 6 - r["dropped_evaluate"]
        assert r["covered_fraction"] == r["evaluated_clients"] / 6
        tested = sorted(c for c, e in r["per_client"].items() if "test_accuracy" in e)
        offline = sorted(c for c, e in r["per_client"].items() if e.get("dropped_evaluate"))
        assert len(tested) == r["evaluated_clients"] and not set(tested) & set(offline)
    assert sum(r["dropped_evaluate"] for r in rows) >= 1
    _, full = run_inline(tmp_path / "population", *common, "faults.evaluate_offline=true")
    for r, f in zip(rows, full):
        assert f["dropped_train"] == r["dropped_train"]  # training still misses them
        assert f["dropped_evaluate"] == 0
        assert (f["evaluated_clients"], f["covered_fraction"]) == (6, 1.0)
        assert f["train_loss"] == r["train_loss"]
    assert full[0]["test_accuracy"] != rows[0]["test_accuracy"] or \
        rows[0]["dropped_evaluate"] == 0


def test_evaluate_offline_is_validated():
    import pytest

    from fedplat.errors import UserError
    from tests.helpers import make_cfg

    with pytest.raises(UserError, match=r"faults\.evaluate_offline"):
        make_cfg("faults.evaluate_offline=sometimes")


def test_a_run_scored_after_and_before_local_training_keeps_both(tmp_path):
    """`client.evaluate_after_train` with an evaluate stage: `test_*` is the accuracy after local
    training, `before_train_test_*` the received model's (what an evaluate-only run reports)."""
    from tests.helpers import GRAPH_RUN, run_inline

    both = [a for a in GRAPH_RUN if not a.startswith("strategy.fraction_evaluate")]
    _, rows = run_inline(tmp_path / "both", *both, "strategy.fraction_evaluate=1",
                         "num_rounds=2")
    _, before = run_inline(tmp_path / "before", *both, "strategy.fraction_evaluate=1",
                           "client.evaluate_after_train=false", "num_rounds=2")
    _, after = run_inline(tmp_path / "after", *GRAPH_RUN, "num_rounds=2")
    for row, b, a in zip(rows, before, after, strict=True):
        for key in ("test_accuracy", "test_accuracy_mean", "val_accuracy_mean", "test_loss",
                    "evaluated_clients"):
            assert row[f"before_train_{key}"] == b[key], key
            assert row[key] == a[key], key
        assert row["before_train_test_accuracy"] != row["test_accuracy"]
        for cid, entry in row["per_client"].items():
            assert entry["before_train_test_accuracy"] == b["per_client"][cid]["test_accuracy"]
            assert entry["test_accuracy"] == a["per_client"][cid]["test_accuracy"]
            assert entry["num-examples_evaluate"] == entry["num-test-examples_train"]

"""Weighted F1 over a whole split, and its place in the run summary."""

import math

import numpy as np
import pytest
import torch

from fedplat.results import summarise
from fedplat.training import confusion_matrix, evaluate, weighted_f1


def test_weighted_f1_by_hand():
    # true: 0 0 0 1 ; pred: 0 0 1 1 -> F1_0 = 2*2/(3+2) = 0.8, F1_1 = 2*1/(1+2) = 2/3
    cm = confusion_matrix(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1]), 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert weighted_f1(cm) == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4)
    assert math.isnan(weighted_f1(torch.zeros(3, 3)))


def test_weighted_f1_matches_sklearn_with_absent_classes():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 4, 50)  # class 4 and 5 never true
        p = rng.integers(0, 6, 50)
        cm = confusion_matrix(torch.from_numpy(y), torch.from_numpy(p), 6)
        assert weighted_f1(cm) == pytest.approx(f1_score(y, p, average="weighted"))


def test_evaluate_f1_is_over_the_whole_split_not_per_batch():
    x = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    model = torch.nn.Identity()
    whole = evaluate(model, x, y, batch_size=4).f1
    batched = evaluate(model, x, y, batch_size=1).f1
    assert whole == batched == pytest.approx((2 * 0.8 + 2 * 2 / 3) / 4)


def test_summary_reports_final_best_and_per_client_best_f1():
    rows = [
        {"round": 1, "test_accuracy": 0.5, "test_f1": 0.4, "test_f1_mean": 0.45,
         "per_client": {"0": {"test_f1": 0.2}, "1": {"test_f1": 0.7}}},
        {"round": 2, "test_accuracy": 0.6, "test_f1": 0.6, "test_f1_mean": 0.5,
         "per_client": {"0": {"test_f1": 0.6}, "1": {"test_f1": 0.4}}},
    ]
    f1 = summarise(rows)["f1"]
    assert f1["final"] == {"round": 2, "f1_mean": 0.5, "f1_pooled": 0.6}
    assert f1["best"]["round"] == 2
    assert f1["best_per_client"] == {"f1_mean": pytest.approx(0.65), "clients": 2}

"""The attacks on an AttackProblem: label inference, the TV prior, settings checks, and both
attacks solving a problem whose upload is the batch itself."""

import pytest
import torch
from omegaconf import OmegaConf

from fedplat.data.datasets import DatasetInfo
from fedplat.errors import UserError
from fedplat.privacy.inversion import (
    AttackConfig,
    infer_labels,
    invert,
    total_variation,
)
from fedplat.privacy.threat import AttackProblem, Knowledge

INFO = DatasetInfo("toy", (1, 2, 2), 3, "image", 10)
KNOW = Knowledge(OmegaConf.create({}), INFO, torch.tensor([-1.0]), torch.tensor([1.0]))


def test_infer_labels_from_bias_evidence():
    scores = torch.tensor([0.1, -0.5, 0.2, -0.1])
    assert infer_labels(scores, 1).tolist() == [1]
    assert infer_labels(scores, 2).tolist() == [1, 3]
    # third slot goes to the class with the larger remaining share (class 1: 0.5 / 0.6)
    assert infer_labels(scores, 3).tolist() == [1, 1, 3]
    assert infer_labels(torch.tensor([0.3, 0.1]), 2).tolist() == [1, 1]  # nothing negative


def test_total_variation_of_images_and_vectors():
    img = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    assert float(total_variation(img)) == pytest.approx(1.0)   # horizontal 1, vertical 0
    assert float(total_variation(torch.tensor([[0.0, 2.0, 1.0]]))) == pytest.approx(1.5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"attack": "foo"}, "unknown attack 'foo'"),
    ({"labels": "guess"}, "labels='guess' is not valid"),
    ({"iterations": 0}, "at least 1"),
    ({"restarts": 0}, "at least 1"),
    ({"lr": 0.0}, "lr must be positive"),
    ({"tv": -1.0}, "tv non-negative"),
])
def test_attack_settings_are_checked(kwargs, message):
    with pytest.raises(UserError, match=message):
        AttackConfig(**kwargs)


def _echo_problem(x_true, scores=None):
    """An upload that is the batch itself (plus the soft labels): the mismatch is 0 only at the
    true batch, so a working attack must find it."""
    y_true = torch.nn.functional.one_hot(torch.tensor([2]), 3).float()

    def simulate(x, y, unknowns):
        return {"x": x, "y": y}

    return AttackProblem(1, {"x": x_true, "y": y_true}, simulate, label_scores=scores)


def test_dlg_solves_a_problem_whose_upload_is_the_batch():
    x_true = torch.tensor([[[[0.5, -0.25], [0.0, 0.75]]]])
    rec = invert(_echo_problem(x_true), KNOW, AttackConfig("dlg", iterations=30, lr=1.0))
    torch.testing.assert_close(rec.x, x_true, atol=1e-3, rtol=0)
    assert rec.labels.tolist() == [2] and not rec.labels_inferred
    assert rec.distance < 1e-6 and len(rec.restart_distances) == 1


def test_ig_keeps_the_box_infers_labels_and_keeps_the_best_restart():
    x_true = torch.tensor([[[[0.5, -0.25], [0.0, 0.75]]]])
    scores = torch.tensor([0.3, 0.2, -0.4])
    seen = []
    rec = invert(_echo_problem(x_true, scores), KNOW,
                 AttackConfig("ig", iterations=200, restarts=2, lr=0.05, tv=0.0),
                 lambda restart, it, dist: seen.append((restart, it)))
    assert rec.labels.tolist() == [2] and rec.labels_inferred
    assert rec.distance == min(rec.restart_distances) and len(rec.restart_distances) == 2
    assert float(rec.x.min()) >= -1.0 and float(rec.x.max()) <= 1.0
    assert rec.distance < 1e-3
    assert (0, 0) in seen and (1, 199) in seen
    # same seed, same reconstruction
    again = invert(_echo_problem(x_true, scores), KNOW,
                   AttackConfig("ig", iterations=200, restarts=2, lr=0.05, tv=0.0))
    assert torch.equal(again.x, rec.x)


def test_labels_infer_needs_a_visible_bias_update():
    with pytest.raises(UserError, match="labels=infer"):
        invert(_echo_problem(torch.zeros(1, 1, 2, 2)), KNOW, AttackConfig(labels="infer"))

"""pFedHN's threat model: the replay of the clipped inner loop reproduces delta-theta, and
pFedHN-PC's private head is an unknown that the true head resolves."""

import torch

from attacks.pfedhn import PFedHNThreat, guess_layers
from clients.pfedhn_pc import HEAD_INIT
from fedplat.core import seeding
from fedplat.models import build_model
from fedplat.models.hypernet import head_names

HN = ("num_rounds=1", "capture.clients=[]", "capture.round=1", "strategy.hypernet.hidden=5",
      "strategy.hypernet.n_hidden=1")


def test_pfedhn_replay_matches_delta_theta_with_clipping(tmp_path, captured_run, assert_exact):
    _cfg, cap, know, x, y1h, _ = captured_run(
        tmp_path, "strategy=pfedhn", *HN, "strategy.inner_steps=3", "strategy.inner_clip=0.05")
    problem = PFedHNThreat().build(cap, know, torch.Generator())
    assert problem.unknowns == {} and problem.label_scores is not None
    assert_exact(problem, x, y1h, {})


def test_pfedhn_pc_private_head_is_an_unknown_and_the_true_head_explains_the_upload(
        tmp_path, captured_run, assert_exact):
    cfg, cap, know, x, y1h, _ = captured_run(tmp_path, "strategy=pfedhn_pc", *HN,
                                             "strategy.inner_steps=2")
    problem = PFedHNThreat().build(cap, know, torch.Generator())
    seeding.seed_torch(int(cfg.seed), seeding.INIT, HEAD_INIT, cap.client)
    model = build_model(cfg.model, know.info)
    true_head = {k: p.detach() for k, p in model.named_parameters() if k in head_names(model)}
    assert sorted(problem.unknowns) == sorted(true_head)
    assert problem.label_scores is None
    assert_exact(problem, x, y1h, true_head)
    assert float(problem.distance(x, y1h, problem.unknowns).detach()) > 1e-4  # not the guess
    # the guess is the attacker's own seeded draw: same generator seed, same guess
    again = guess_layers(cfg, know, sorted(true_head), torch.Generator())
    for k, v in again.items():
        torch.testing.assert_close(v, problem.unknowns[k])

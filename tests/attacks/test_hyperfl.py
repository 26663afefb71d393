"""HyperFL's threat model: phase A and B replayed exactly from the public initial state, the
factored mismatch equals the materialised one, and one phase-B step reveals the embedding."""

import pytest
import torch

from attacks.hyperfl import HyperFLThreat, PhaseBReplay, recover_embedding
from fedplat.errors import UserError
from fedplat.privacy.threat import arrays, upload_distance
from strategies.hyperfl import initial_model

HYPERFL = ("strategy=hyperfl", "num_rounds=1", "capture.round=1",
           "strategy.hypernet.embed_dim=4", "strategy.hypernet.hidden=5",
           "strategy.local_epochs=3", "strategy.classifier_epochs=2",
           "strategy.clip=0.5")


@pytest.mark.parametrize("factored", ["true", "false"])
def test_hyperfl_public_init_replays_phase_a_and_b_exactly(tmp_path, factored, captured_run,
                                                           assert_exact):
    """Round 1: v and phi are the run's shared initial values, so the replay is exact
    (clipping active, momentum, weight decay, 2 phase-A and 3 phase-B steps)."""
    _cfg, cap, know, x, y1h, _ = captured_run(tmp_path, *HYPERFL,
                                              f"strategy.factored_heads={factored}")
    problem = HyperFLThreat({"init": "public"}).build(cap, know, torch.Generator())
    assert problem.unknowns == {} and problem.label_scores is None
    assert_exact(problem, x, y1h, {})


def test_hyperfl_factored_mismatch_equals_the_materialised_one(tmp_path, captured_run):
    _cfg, cap, know, x, y1h, _ = captured_run(tmp_path, *HYPERFL)
    problem = HyperFLThreat().build(cap, know, torch.Generator().manual_seed(3))
    assert sorted(problem.unknowns) == ["embedding", "net.3.bias", "net.3.weight"]
    xr = torch.randn_like(x)
    for kind in ("cosine", "l2"):
        fast = problem.distance(xr, y1h, problem.unknowns, kind)
        slow = upload_distance(problem.simulate(xr, y1h, problem.unknowns), problem.observed,
                               kind)
        torch.testing.assert_close(fast.detach(), slow.detach(), rtol=1e-4, atol=1e-7)
    # and the gradient with respect to the images flows
    xg = xr.clone().requires_grad_(True)
    problem.distance(xg, y1h, problem.unknowns).backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0


def test_threat_model_options_are_checked():
    with pytest.raises(UserError, match="has no option 'foo'"):
        HyperFLThreat({"foo": "1"})
    assert HyperFLThreat().options == {"init": "unknown"}


def test_hyperfl_init_mode_is_checked_when_building(tmp_path, captured_run):
    _cfg, cap, know, *_ = captured_run(tmp_path, *HYPERFL)
    with pytest.raises(UserError, match="init='nope' is not valid"):
        HyperFLThreat({"init": "nope"}).build(cap, know, torch.Generator())


def test_hyperfl_embedding_is_read_off_one_phase_b_step(tmp_path, captured_run, assert_exact):
    """init=recovered: with one phase-B step the upload reveals v exactly (here the shared
    initial v, as it is round 1), and with the true classifier the replay is exact."""
    cfg, cap, know, x, y1h, _ = captured_run(tmp_path, *HYPERFL, "strategy.local_epochs=1",
                                             "strategy.classifier_epochs=0")
    replay = PhaseBReplay(cfg, know, arrays(cap.main.sent), arrays(cap.main.reply),
                          cap.main.sent["config"])
    target, v0, _ = initial_model(cfg, with_hypernet=False)
    torch.testing.assert_close(recover_embedding(replay), v0, rtol=1e-4, atol=1e-5)
    problem = HyperFLThreat({"init": "recovered"}).build(cap, know, torch.Generator())
    assert sorted(problem.unknowns) == ["net.3.bias", "net.3.weight"]
    head0 = {k: p.detach() for k, p in target.named_parameters() if k in problem.unknowns}
    assert_exact(problem, x, y1h, head0)

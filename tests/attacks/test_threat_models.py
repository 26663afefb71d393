"""Each threat model replays the client exactly: simulate(true batch, true private state) equals
the captured upload, so an attack that drives the mismatch to zero has found a batch that
explains what the client really sent."""

import pytest
import torch
from torch.nn import functional as F

from attacks.fedavg import FedAvgThreat
from attacks.hyperfl import HyperFLThreat
from attacks.pfedhn import PFedHNThreat
from clients.pfedhn_pc import HEAD_INIT
from fedplat import seeding
from fedplat.errors import UserError
from fedplat.models import build_model
from fedplat.models.hypernet import head_names
from fedplat.privacy.capture import load_capture
from fedplat.privacy.threat import upload_distance
from fedplat.privacy.truth import knowledge, run_config, true_batch
from tests.helpers import run_inline

TINY = ("num_clients=3", "simulation.torch_threads=1", "model=mlp", "model.hidden=[6]",
        "capture.clients=[1]", "capture.num_samples=3")


def _setup(tmp_path, *overrides):
    run_inline(tmp_path, *TINY, *overrides)
    cfg = run_config(tmp_path)
    cap = load_capture(tmp_path)
    know = knowledge(cfg)
    x, y = true_batch(cfg, cap)
    return cfg, cap, know, x, F.one_hot(y, know.info.num_classes).float(), y


def _assert_exact(problem, x, y1h, guess, rtol=1e-4):
    sim = problem.simulate(x, y1h, guess)
    assert sorted(sim) == sorted(problem.observed)
    for k, obs in problem.observed.items():
        scale = float(obs.abs().max())
        assert scale > 0
        torch.testing.assert_close(sim[k].detach(), obs, rtol=rtol, atol=rtol * scale)
    assert float(problem.distance(x, y1h, guess, "cosine").detach()) < 1e-5


def test_fedavg_replay_matches_the_upload_with_momentum_and_weight_decay(tmp_path):
    _cfg, cap, know, x, y1h, y = _setup(
        tmp_path, "num_rounds=2", "capture.round=2", "client.local_epochs=3",
        "client.momentum=0.9", "client.weight_decay=0.01", "client.lr=0.1")
    problem = FedAvgThreat().build(cap, know, torch.Generator())
    assert problem.num_images == 3 and problem.unknowns == {}
    _assert_exact(problem, x, y1h, {})
    # a wrong batch does not explain the upload
    assert float(problem.distance(torch.randn_like(x), y1h, {}).detach()) > 0.05
    # labels: the most negative bias evidence are the batch's labels
    assert set(torch.nonzero(problem.label_scores < 0).flatten().tolist()) >= set(y.tolist())


def test_fedavg_rejects_several_batches_per_epoch(tmp_path):
    _, cap, know, *_ = _setup(tmp_path, "num_rounds=1", "capture.round=1",
                              "client.batch_size=2")
    with pytest.raises(UserError, match=r"capture\.num_samples <= 2"):
        FedAvgThreat().build(cap, know, torch.Generator())


def test_pfedhn_replay_matches_delta_theta_with_clipping(tmp_path):
    _cfg, cap, know, x, y1h, _ = _setup(
        tmp_path, "strategy=pfedhn", "num_rounds=1", "capture.clients=[]", "capture.round=1",
        "strategy.inner_steps=3", "strategy.inner_clip=0.05", "strategy.hypernet.hidden=5",
        "strategy.hypernet.n_hidden=1")
    problem = PFedHNThreat().build(cap, know, torch.Generator())
    assert problem.unknowns == {} and problem.label_scores is not None
    _assert_exact(problem, x, y1h, {})


def test_pfedhn_pc_private_head_is_an_unknown_and_the_true_head_explains_the_upload(tmp_path):
    cfg, cap, know, x, y1h, _ = _setup(
        tmp_path, "strategy=pfedhn_pc", "num_rounds=1", "capture.clients=[]", "capture.round=1",
        "strategy.inner_steps=2", "strategy.hypernet.hidden=5", "strategy.hypernet.n_hidden=1")
    problem = PFedHNThreat().build(cap, know, torch.Generator())
    seeding.seed_torch(int(cfg.seed), seeding.INIT, HEAD_INIT, cap.client)
    model = build_model(cfg.model, know.info)
    true_head = {k: p.detach() for k, p in model.named_parameters() if k in head_names(model)}
    assert sorted(problem.unknowns) == sorted(true_head)
    assert problem.label_scores is None
    _assert_exact(problem, x, y1h, true_head)
    assert float(problem.distance(x, y1h, problem.unknowns).detach()) > 1e-4  # the guess is not it


HYPERFL = ("strategy=hyperfl", "num_rounds=1", "capture.round=1",
           "strategy.hypernet.embed_dim=4", "strategy.hypernet.hidden=5",
           "strategy.local_epochs=3", "strategy.classifier_epochs=2",
           "strategy.clip=0.5")


@pytest.mark.parametrize("factored", ["true", "false"])
def test_hyperfl_public_init_replays_phase_a_and_b_exactly(tmp_path, factored):
    """Round 1: v and phi are the run's shared initial values, so the replay is exact
    (clipping active, momentum, weight decay, 2 phase-A and 3 phase-B steps)."""
    _cfg, cap, know, x, y1h, _ = _setup(tmp_path, *HYPERFL,
                                       f"strategy.factored_heads={factored}")
    problem = HyperFLThreat({"init": "public"}).build(cap, know, torch.Generator())
    assert problem.unknowns == {} and problem.label_scores is None
    _assert_exact(problem, x, y1h, {})


def test_hyperfl_factored_mismatch_equals_the_materialised_one(tmp_path):
    _cfg, cap, know, x, y1h, _ = _setup(tmp_path, *HYPERFL)
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


def test_hyperfl_embedding_is_read_off_one_phase_b_step(tmp_path):
    """init=recovered: with one phase-B step the upload reveals v exactly (here the shared
    initial v, as it is round 1), and with the true classifier the replay is exact."""
    from attacks.hyperfl import PhaseBReplay, recover_embedding
    from fedplat.privacy.threat import arrays
    from strategies.hyperfl import initial_model

    cfg, cap, know, x, y1h, _ = _setup(tmp_path, *HYPERFL, "strategy.local_epochs=1",
                                       "strategy.classifier_epochs=0")
    replay = PhaseBReplay(cfg, know, arrays(cap.main.sent), arrays(cap.main.reply),
                          cap.main.sent["config"])
    target, v0, _ = initial_model(cfg, with_hypernet=False)
    torch.testing.assert_close(recover_embedding(replay), v0, rtol=1e-4, atol=1e-5)
    problem = HyperFLThreat({"init": "recovered"}).build(cap, know, torch.Generator())
    assert sorted(problem.unknowns) == ["net.3.bias", "net.3.weight"]
    head0 = {k: p.detach() for k, p in target.named_parameters() if k in problem.unknowns}
    _assert_exact(problem, x, y1h, head0)

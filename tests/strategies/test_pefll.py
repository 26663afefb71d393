"""PeFLL: the three-phase protocol equals the joint VJP; unseen clients never train."""

import pytest
import torch

from fedplat.app import client_app, make_server_app
from fedplat.core.records import CONTROL, from_record
from fedplat.data import DatasetInfo
from fedplat.errors import UserError
from fedplat.models.hypernet import HyperNetwork, TargetSpec, clip_by_global_norm, vjp
from fedplat.models.nets import MLP
from fedplat.recording.recorder import RunRecorder
from fedplat.runtime.inline import run_inline as run_grid
from strategies.pefll import (
    EmbeddingNet,
    client_vnet_gradient,
    descriptor,
    joint_step,
    normalise,
    server_gradients,
)
from tests.helpers import check_cli_rejects, check_hypernetwork_run_on_images, make_cfg

INFO = DatasetInfo("toy", (5,), 3, "vector", 50)


def _nets():
    torch.manual_seed(0)
    vnet = EmbeddingNet(INFO, 4, "mlp", True).double()
    target = MLP(5, [6], 3).double()
    hnet = HyperNetwork(TargetSpec.of(target), 4, 7, 3).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=g)
    return vnet, hnet, x, y


def test_three_phases_give_the_released_codes_joint_vjp():
    vnet, hnet, x, y = _nets()
    m, s = 0.1, 0.7
    # the released code: one graph from vnet through the normalisation and hnet to theta
    u = descriptor(vnet, x, y, 1)
    theta = hnet(normalise(u, m, s, "frozen_scalar"))
    delta = {k: torch.randn_like(t) for k, t in theta.items()}
    joint = vjp(theta, delta, [*hnet.parameters(), *vnet.parameters()])
    # the paper's protocol: server VJP through hnet with u a leaf, client VJP through vnet
    g_h, du = server_gradients(hnet, u.detach(), delta, m, s, "frozen_scalar")
    g_v = client_vnet_gradient(vnet, x, y, 1, du)
    for a, b in zip(joint, [*g_h, *g_v]):
        torch.testing.assert_close(a, b)
    assert all(float(g.abs().sum()) > 0 for g in g_v)  # the embedding network learns


def test_descriptor_mean_and_the_released_divisor():
    vnet, _, x, y = _nets()
    mean = vnet(x, y).mean(0)
    torch.testing.assert_close(descriptor(vnet, x, y, 1), mean)
    # the code divides by 2 x batches: a constant factor (8 / 2) for one full batch of 8
    torch.testing.assert_close(descriptor(vnet, x, y, 1, divisor_quirk=True), mean * 4)
    torch.testing.assert_close(normalise(mean, 1.0, 2.0, "frozen_scalar"), (mean - 1) / 2)
    assert torch.equal(normalise(mean, 1.0, 2.0, "none"), mean)


def test_embedding_net_variants():
    torch.manual_seed(0)
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 1])
    image = DatasetInfo("img", (1, 16, 16), 3, "image", 10)
    cnn = EmbeddingNet(image, 5, "cnn", True)
    assert cnn.net.conv1.in_channels == 4 and cnn(x, y).shape == (4, 5)  # 1 + 3 label planes
    free = EmbeddingNet(image, 5, "cnn", False)
    assert free.net.conv1.in_channels == 1
    torch.testing.assert_close(free(x, y), free(x, torch.tensor([2, 2, 0, 0])))  # label-free
    labels = EmbeddingNet(image, 5, "label", True)
    torch.testing.assert_close(labels(x, y)[1], labels(x * 0, y)[3])


def test_joint_clipping_and_adam_without_decay():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([a, b], lr=1.0)
    norm = joint_step([a, b], [torch.tensor([3.0, 0.0]), torch.tensor([4.0])], opt, 1.0)
    assert norm == pytest.approx(5.0)
    assert float(torch.cat([a.detach(), b.detach()]).norm()) == pytest.approx(1.0, rel=1e-5)
    clipped, _ = clip_by_global_norm([torch.tensor([3.0, 0.0]), torch.tensor([4.0])], 1.0)
    torch.testing.assert_close(-a.detach(), clipped[0])


SMALL = ("strategy=pefll", "model=mlp", "model.hidden=[16]", "num_clients=10",
         "partition=pathological", "strategy.inner_steps=5", "strategy.clients_per_round=3",
         "strategy.unseen_fraction=0.2", "simulation.torch_threads=1",
         "simulation.backend=inline")


def test_unseen_clients_never_train_and_are_reported_apart(tmp_path, monkeypatch):
    cfg = make_cfg("num_rounds=3", "eval_every=3", *SMALL)
    messages: list[tuple[int, str, str]] = []
    current: list[int] = []
    steps: dict[int, int] = {}

    def count(fn):
        def wrapped(*args, **kwargs):
            if current:
                steps[current[0]] = steps.get(current[0], 0) + 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(torch.optim.SGD, "step", count(torch.optim.SGD.step))
    monkeypatch.setattr(torch.autograd, "grad", count(torch.autograd.grad))
    monkeypatch.setattr(torch.Tensor, "backward", count(torch.Tensor.backward))

    def spy(message, context):
        if message.metadata.message_type in ("train", "evaluate"):
            control = message.content[CONTROL]
            cid = int(control["cid"])
            messages.append((cid, message.metadata.message_type,
                             str(control.get("exchange", ""))))
            current.append(cid)
        try:
            return client_app(message, context)
        finally:
            current.clear()

    recorder = RunRecorder(tmp_path, cfg)
    run_grid(make_server_app(cfg, recorder), spy, 10)
    unseen = {8, 9}
    for cid in unseen:
        kinds = {(t, p) for c, t, p in messages if c == cid}
        assert kinds == {("evaluate", "embed"), ("evaluate", "")}  # one descriptor pass
        assert steps.get(cid, 0) == 0  # not a single gradient or optimizer step
    trained = {c for c, t, p in messages if t == "train"}
    assert trained and trained <= set(range(8))
    assert {p for c, t, p in messages if t == "train"} == {"embed", "", "embedgrad"}
    assert all(steps.get(c, 0) > 0 for c in trained)
    summary = recorder.summary()["strategy_summary"]["paper"]
    for key in ("seen_test_accuracy", "unseen_test_accuracy", "seen_val_accuracy"):
        assert 0.0 <= summary["best"][key] <= 1.0
    row = recorder.rows[-1]
    assert row["complete_clients"] == 3 and row["num_train_clients"] == 3


@pytest.mark.parametrize(("overrides", "message"), [
    (["strategy.unseen_fraction=1.0"], r"strategy.unseen_fraction=1.0 is out of range: must "
                                       r"be in \[0.0, 1.0\)"),
    (["strategy.unseen_fraction=-0.1"], r"strategy.unseen_fraction=-0.1 is out of range"),
    (["num_clients=2", "strategy.unseen_fraction=0.9"], r"leaves no training client"),
    (["strategy.hypernet.embed_dim=0"], r"strategy.hypernet.embed_dim=0 must be"),
    (["strategy.hypernet.hidden=0"], r"strategy.hypernet.hidden=0 must be"),
    (["strategy.embed_model=cnn"], r"embed_model=cnn needs image data"),
    (["strategy.embed_model=label", "strategy.use_labels=false"], r"embeds labels only"),
    (["strategy.embed_batches=0"], r"empty descriptor"),
    (["strategy.mask_absent=zero"], r"strategy.mask_absent='zero' is not valid"),
])
def test_bad_input_is_one_line(overrides, message):
    with pytest.raises(UserError, match=message) as err:
        make_cfg("strategy=pefll", *overrides)
    assert "\n" not in str(err.value)


def test_batched_generation_equals_one_client_at_a_time():
    """The weights of all selected clients come from one hypernetwork pass, same numbers."""
    from fedplat.core.strategy import ClientInfo
    from strategies.pefll import PeFLL

    cfg = make_cfg("strategy=pefll", "num_clients=6", "model=mlp", "model.hidden=[8]",
                   "strategy.hypernet.hidden=8", "strategy.hypernet.n_hidden=1")
    strategy = PeFLL(cfg)
    strategy.setup({c: ClientInfo(c, 20, 4, 4, [2] * 10) for c in range(6)})
    dim = int(next(iter(strategy.hnet.trunk.parameters())).shape[1])
    gen = torch.Generator().manual_seed(0)
    strategy.u = {c: torch.randn(dim, generator=gen) for c in (0, 2, 3)}
    strategy._freeze_norm(strategy.u)
    payloads = strategy.configure_train(1, [0, 2, 3, 5])  # 5 has no descriptor: not sent
    assert sorted(payloads) == [0, 2, 3]
    for cid in (0, 2, 3):
        sent = from_record(payloads[cid]["arrays"])
        for name, tensor in strategy.generate(strategy.u[cid]).items():
            torch.testing.assert_close(sent[name], tensor)


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_runs_on_image_datasets(tmp_path, dataset):
    check_hypernetwork_run_on_images(tmp_path, "pefll", dataset)


@pytest.mark.parametrize(("args", "message"), [
    (["strategy.hypernet.hidden=0"],
     "strategy.hypernet.hidden=0 must be"),
    (["dataset=digits", "model=lenet"],
     "model 'lenet' cannot take the 1x8x8 inputs"),
    (["strategy.unseen_fraction=1.0"],
     "strategy.unseen_fraction=1.0 is out of range"),
    (["strategy.unseen_fraction=-0.2"],
     "strategy.unseen_fraction=-0.2 is out of range"),
])
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(args, message, capsys,
                                                              monkeypatch, tmp_path):
    check_cli_rejects(["strategy=pefll", *args], message, capsys, monkeypatch, tmp_path)


def test_beats_fedavg_on_two_classes_per_client(mnist1d_two_class_run):
    fedavg = mnist1d_two_class_run("fedavg")[0]["final"]["accuracy"]
    ours = mnist1d_two_class_run("pefll")[0]["final"]["accuracy"]
    assert ours > fedavg + 0.1, (ours, fedavg)


def test_reports_seen_and_unseen_accuracy(mnist1d_two_class_run):
    summary, rows = mnist1d_two_class_run("pefll")
    paper = summary["strategy_summary"]["paper"]
    for key in ("seen_test_accuracy", "unseen_test_accuracy"):
        assert 0.5 < paper["best"][key] <= 1.0, key
    assert summary["strategy_summary"]["unseen_clients"] == [8, 9]
    assert rows[-1]["num_train_clients"] == 5 and rows[-1]["complete_clients"] == 5

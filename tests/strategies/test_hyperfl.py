"""HyperFL server: what crosses the wire, aggregation, sampling, message sizes, bad input."""

import math

import pytest
import torch

from fedplat.app import client_app, make_server_app
from fedplat.client import ClientState
from fedplat.errors import UserError
from fedplat.models import build_model
from fedplat.models.hypernet import HyperNetwork
from fedplat.records import CONTROL, from_record
from fedplat.results import RunRecorder
from fedplat.runtime.inline import run_inline as run_grid
from fedplat.strategy import ClientInfo
from strategies.hyperfl import HyperFL, body_spec, hyperfl_aggregate
from tests.helpers import make_cfg

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
        if kind == "train":
            assert set(content.keys()) == {"arrays", "metrics"}
            assert set(from_record(content["arrays"])) == hnet_names
        else:
            assert set(content.keys()) == {"metrics"}
        assert not content.config_records  # nothing hidden in a config record either
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
    (["dataset=mnist", "model=cnn", "strategy.hypernet.max_params=10000000"],
     r"above strategy.hypernet.max_params=10,000,000"),
    (["strategy.eval_population=half"], r"strategy.eval_population='half' is not valid"),
    (["strategy.local_epochs=0"], r"strategy.local_epochs=0 is out of range"),
])
def test_bad_input_is_one_line(overrides, message):
    with pytest.raises(UserError, match=message) as err:
        make_cfg("strategy=hyperfl", *overrides)
    assert "\n" not in str(err.value)

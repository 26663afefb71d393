"""HyperFL client: two phases, separate clipping, exact factored heads, private state."""

import copy

import pytest
import torch
from flwr.app import RecordDict
from torch import nn

from clients.hyperfl import (
    FactoredHeads,
    HyperFLClient,
    phase_a,
    phase_b_dense,
    phase_b_factored,
)
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, to_record
from fedplat.data import ClientData, DatasetInfo
from fedplat.models.hypernet import HyperNetwork, TargetSpec, head_names
from fedplat.models.nets import MLP
from strategies.hyperfl import initial_model, local_config
from tests.helpers import make_cfg

INFO = DatasetInfo("toy", (4,), 3, "vector", 60)


def _setup(dtype=torch.float64):
    torch.manual_seed(0)
    target = MLP(4, [6], 3).to(dtype)
    hnet = HyperNetwork(TargetSpec.of(target, head_names(target)), 3, 5, 0,
                        relu_out=True).to(dtype)
    v = nn.Parameter(torch.randn(3, dtype=dtype))
    head = {k: nn.Parameter(p.detach().clone()) for k, p in target.named_parameters()
            if k in head_names(target)}
    assert set(head) == {"net.3.weight", "net.3.bias"}
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 4, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (30,), generator=g)
    return target, hnet, v, head, x, y


@pytest.mark.parametrize("clip", [50.0, 0.05])
def test_factored_heads_give_the_same_result_as_dense_autograd_sgd(clip):
    target, hnet, v, head, x, y = _setup()
    h2, v2 = copy.deepcopy(hnet), nn.Parameter(v.detach().clone())
    kw = {"epochs": 3, "batch_size": 7, "lr": 0.05, "momentum": 0.5, "weight_decay": 5e-3,
          "clip": clip}
    la, ta = phase_b_dense(target, hnet, v, head, x, y,
                           generator=torch.Generator().manual_seed(2), **kw)
    lb, tb = phase_b_factored(target, h2, v2, head, x, y,
                              generator=torch.Generator().manual_seed(2), **kw)
    assert la == pytest.approx(lb, rel=1e-12)
    for (k, a), b in zip(hnet.state_dict().items(), h2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=k)
    torch.testing.assert_close(v.detach(), v2.detach(), rtol=1e-10, atol=1e-12)
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k])


def test_factored_heads_algebra():
    w0 = torch.randn(5, 3, dtype=torch.float64)
    fh = FactoredHeads(w0, lr=0.1, momentum=0.9, weight_decay=0.01, capacity=1)
    w = nn.Parameter(w0.clone())
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(4):  # capacity grows past 1
        d, f = torch.randn(5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
        torch.testing.assert_close(fh.matvec(f), w.detach() @ f)
        torch.testing.assert_close(fh.rmatvec(d), w.detach().T @ d)
        w.grad = 0.7 * torch.outer(d, f)
        opt.step()
        fh.step(d, f, 0.7)
        torch.testing.assert_close(fh.dense(), w.detach())


def test_phase_a_trains_only_the_classifier_and_phase_b_never_touches_it():
    target, hnet, v, head, x, y = _setup()
    with torch.no_grad():
        theta = hnet(v)
    before_h = copy.deepcopy(hnet.state_dict())
    before_head = {k: p.detach().clone() for k, p in head.items()}
    v0 = v.detach().clone()
    phase_a(target, theta, head, x, y, epochs=1, batch_size=10, lr=0.1, momentum=0.5,
            weight_decay=5e-4, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(before_h[k], t) for k, t in hnet.state_dict().items())
    assert torch.equal(v0, v.detach())
    assert not torch.equal(before_head["net.3.weight"], head["net.3.weight"].detach())
    after_a = {k: p.detach().clone() for k, p in head.items()}
    phase_b_factored(target, hnet, v, head, x, y, epochs=1, batch_size=10, lr=0.02,
                     momentum=0.5, weight_decay=5e-4, clip=50.0,
                     generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(after_a[k], p.detach()) for k, p in head.items())
    assert not torch.equal(v0, v.detach())
    assert not torch.equal(before_h["heads.0.weight"], hnet.state_dict()["heads.0.weight"])


@pytest.mark.parametrize("phase_b", [phase_b_dense, phase_b_factored])
def test_hypernetwork_and_embedding_are_clipped_separately(phase_b):
    target, hnet, v, head, x, y = _setup()
    x = x * 50  # large gradients: both parts hit the clip
    before = torch.cat([p.detach().flatten().clone() for p in hnet.parameters()])
    v0 = v.detach().clone()
    phase_b(target, hnet, v, head, x, y, epochs=1, batch_size=30, lr=1.0, momentum=0.0,
            weight_decay=0.0, clip=1e-3, generator=torch.Generator().manual_seed(0))
    after = torch.cat([p.detach().flatten() for p in hnet.parameters()])
    # one step of lr 1: each part moved by exactly its own clip norm (joint clipping would
    # split 1e-3 between them)
    assert float((after - before).norm()) == pytest.approx(1e-3, rel=1e-5)
    assert float((v.detach() - v0).norm()) == pytest.approx(1e-3, rel=1e-5)


def _data(cid=0, n=40):
    g = torch.Generator().manual_seed(cid)
    x = torch.randn(n, 40, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    info = DatasetInfo("mnist1d", (40,), 10, "vector", 100)
    return ClientData(cid, info, x, y, x[:5], y[:5], x[5:15], y[5:15])


def _cfg(*extra):
    return make_cfg("strategy=hyperfl", "model=mlp", "model.hidden=[8]",
                    "strategy.hypernet.embed_dim=4", "strategy.hypernet.hidden=6", *extra)


def test_clients_start_identical_unless_asked_and_keep_their_state():
    cfg = _cfg()
    a = HyperFLClient(0, _data(0), cfg, torch.device("cpu"))
    b = HyperFLClient(1, _data(1), cfg, torch.device("cpu"))
    _, va, ha = a.private(ClientState(RecordDict(), 0))
    _, vb, hb = b.private(ClientState(RecordDict(), 1))
    assert torch.equal(va, vb) and all(torch.equal(ha[k], hb[k]) for k in ha)
    cfg2 = _cfg("strategy.per_client_init=true")
    _, vc, _ = HyperFLClient(1, _data(1), cfg2, torch.device("cpu")).private(
        ClientState(RecordDict(), 1))
    assert not torch.equal(va, vc)
    # a round: state holds the new v and classifier; the reply only the hypernetwork
    _, _, hnet = initial_model(cfg)
    payload = RecordDict({"arrays": to_record(hnet.state_dict()),
                          "config": local_config(cfg.strategy)})
    store = RecordDict()
    reply = a.train(payload, ClientState(store, 0), server_round=1)
    state = ClientState(store, 0)
    assert set(state.names()) == {"embedding", "classifier"}
    assert not torch.equal(state.get_tensors("embedding")["v"], va.detach())
    assert set(reply.keys()) == {"arrays", "metrics"}
    assert set(from_record(reply["arrays"])) == set(hnet.state_dict())
    m = reply["metrics"]
    assert {"acc_pre", "acc_post", "loss_a", "train_loss", "num-examples"} <= set(m.keys())
    assert m["num-examples"] == 40


def test_client_uses_the_two_phase_settings_it_is_sent():
    """The client's round equals phase A then phase B with the spec's numbers."""
    cfg = _cfg("strategy.local_epochs=2")
    client = HyperFLClient(0, _data(0), cfg, torch.device("cpu"))
    _, _, hnet = initial_model(cfg)
    payload = RecordDict({"arrays": to_record(hnet.state_dict()),
                          "config": local_config(cfg.strategy)})
    reply = client.train(payload, ClientState(RecordDict(), 0), server_round=3)
    target, v, head = client.private(ClientState(RecordDict(), 0))
    gen = client.generator(3)
    with torch.no_grad():
        theta = hnet(v)
    phase_a(target, theta, head, client.data.x_train, client.data.y_train, epochs=1,
            batch_size=50, lr=0.1, momentum=0.5, weight_decay=5e-4, generator=gen)
    phase_b_dense(target, hnet, v, head, client.data.x_train, client.data.y_train, epochs=2,
                  batch_size=50, lr=0.02, momentum=0.5, weight_decay=5e-4, clip=50.0,
                  generator=gen)
    got = from_record(reply["arrays"])
    for k, t in hnet.state_dict().items():
        torch.testing.assert_close(got[k], t, rtol=1e-4, atol=1e-6)


def test_stale_eval_flag_evaluates_the_last_phase_b_extractor():
    """compat: the released code evaluates the extractor of the last phase-B forward pass."""
    from flwr.app import ConfigRecord

    cfg = _cfg("strategy.stale_eval=true")
    client = HyperFLClient(0, _data(0), cfg, torch.device("cpu"))
    _, _, hnet = initial_model(cfg)
    payload = RecordDict({"arrays": to_record(hnet.state_dict()),
                          "config": local_config(cfg.strategy)})
    store = RecordDict()
    client.train(payload, ClientState(store, 0), server_round=1)
    state = ClientState(store, 0)
    assert "last_theta" in state.names()
    stale = client.evaluate(payload, state, 1)["metrics"]["test_loss"]
    fresh_cfg = ConfigRecord({**dict(payload["config"]), "stale_eval": False})
    fresh = client.evaluate(RecordDict({"arrays": payload["arrays"], "config": fresh_cfg}),
                            state, 1)["metrics"]["test_loss"]
    assert stale != fresh  # regenerated h(v; varphi) differs from the stale extractor

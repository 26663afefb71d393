"""pFedHN-PC client: the pFedHN inner loop plus a private head that never leaves the client."""

import torch
from flwr.app import RecordDict
from torch import nn

from clients.pfedhn import inner_updates
from clients.pfedhn_pc import HEAD_INIT, PFedHNPCClient
from fedplat.core import seeding
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, to_record
from fedplat.data import ClientData, DatasetInfo
from fedplat.models.nets import MLP
from strategies.pfedhn import inner_config
from tests.helpers import make_cfg

INFO = DatasetInfo("toy", (4,), 3, "vector", 60)
HEAD = {"net.3.weight", "net.3.bias"}  # MLP 4-5-3: the last Linear


def _data(cid=0, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return ClientData(cid, INFO, x, y, x[:5], y[:5], x[5:15], y[5:15])


def _cfg(strategy):
    return make_cfg(f"strategy={strategy}", "model=mlp", "model.hidden=[5]",
                    "strategy.inner_steps=5", "strategy.batch_size=8")


def _payload(cfg, theta):
    return RecordDict({"arrays": to_record(theta), "config": inner_config(cfg.strategy)})


def _theta(cfg, head=True):
    torch.manual_seed(1)
    model = MLP(4, [5], 3)
    skip = () if head else ("net.3.weight", "net.3.bias")
    return {k: v for k, v in model.state_dict().items() if k not in skip}


def test_reply_holds_the_body_delta_and_metrics_only():
    cfg = _cfg("pfedhn_pc")
    theta = _theta(cfg, head=False)
    client = PFedHNPCClient(0, _data(), cfg, torch.device("cpu"))
    reply = client.train(_payload(cfg, theta), ClientState(RecordDict(), 0), server_round=1)
    assert set(reply.keys()) == {"arrays", "metrics"}
    delta = from_record(reply["arrays"])
    assert {k: v.shape for k, v in delta.items()} == {k: v.shape for k, v in theta.items()}
    assert not HEAD & set(delta)


def test_a_fresh_head_comes_from_the_clients_own_stream():
    cfg = _cfg("pfedhn_pc")
    client = PFedHNPCClient(2, _data(2), cfg, torch.device("cpu"))
    head, optimizer = client.head(ClientState(RecordDict(), 2), {})
    assert set(head) == HEAD and optimizer is None  # no inner lr: evaluation only
    expected = dict(client.new_model((seeding.INIT, HEAD_INIT, 2)).named_parameters())
    assert all(torch.equal(head[k].detach(), expected[k].detach()) for k in HEAD)
    again, _ = PFedHNPCClient(2, _data(2), cfg, torch.device("cpu")).head(
        ClientState(RecordDict(), 2), {})
    assert all(torch.equal(head[k], again[k]) for k in HEAD)


def test_pc_head_is_private_persistent_per_client_and_keeps_its_momentum():
    cfg = _cfg("pfedhn_pc")
    store = RecordDict()
    theta = _theta(cfg, head=False)
    client = PFedHNPCClient(0, _data(), cfg, torch.device("cpu"))
    state = ClientState(store, 0)
    reply = client.train(_payload(cfg, theta), state, server_round=1)
    assert set(from_record(reply["arrays"])) == set(theta)  # body only: the head stays home
    head1 = state.get_tensors("head")
    buf1 = state.get_tensors("head_opt")
    assert set(head1) == {"net.3.weight", "net.3.bias"} and set(buf1) == set(head1)
    client.train(_payload(cfg, theta), state, server_round=2)
    head2 = state.get_tensors("head")
    assert not torch.equal(head1["net.3.weight"], head2["net.3.weight"])  # trained further
    # another client's head starts from its own initialisation
    other = PFedHNPCClient(1, _data(1), cfg, torch.device("cpu"))
    h_other, _ = other.head(ClientState(RecordDict(), 1), {})
    h_zero, _ = PFedHNPCClient(0, _data(), cfg, torch.device("cpu")).head(
        ClientState(RecordDict(), 0), {})
    assert not torch.equal(h_other["net.3.weight"], h_zero["net.3.weight"])
    # the persistent optimizer resumes from the saved momentum buffers
    head, opt = client.head(state, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0})
    assert torch.equal(opt.state[head["net.3.weight"]]["momentum_buffer"],
                       state.get_tensors("head_opt")["net.3.weight"])


def test_pc_head_is_not_clipped_but_the_generated_body_is():
    torch.manual_seed(0)
    target = MLP(4, [5], 3)
    body = {k: v for k, v in target.state_dict().items() if not k.startswith("net.3")}
    head = {k: nn.Parameter(v.clone()) for k, v in target.state_dict().items()
            if k.startswith("net.3")}
    d = _data()
    opt = torch.optim.SGD(list(head.values()), lr=1.0)
    new, _ = inner_updates(target, body, d.x_train * 100, d.y_train, steps=1, batch_size=40,
                           lr=1.0, momentum=0.0, weight_decay=0.0, clip=1e-3,
                           generator=torch.Generator().manual_seed(0), head=head,
                           head_optimizer=opt)
    moved = torch.cat([(body[k] - new[k]).flatten() for k in body]).norm()
    assert float(moved) <= 1e-3 + 1e-6  # one step of lr 1 with the gradient clipped to 1e-3
    head_moved = (head["net.3.weight"].detach() - target.state_dict()["net.3.weight"]).norm()
    assert float(head_moved) > 1e-2

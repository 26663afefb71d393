"""FED-PUB client: proxy graph, regulariser gradients (Q1), masks kept local (Q3), Adam state."""

import math

import numpy as np
import pytest
import torch
from flwr.app import RecordDict
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from clients.fedpub import (
    FedPubClient,
    functional_embedding,
    mask_sparsity,
    proxy_graph,
    regularizer,
)
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.data import load_federated
from fedplat.models.gnn import GCN
from tests.helpers import make_cfg

pytest.importorskip("pymetis")

BASE = ("dataset=sbm", "dataset.nodes_per_block=60", "partition=metis_disjoint",
        "num_clients=4", "client=graph", "strategy=fedpub", "model=masked_gcn",
        "model.hidden=[16,16]")


def test_proxy_graph_is_rebuilt_identically_from_the_seed():
    proxy_graph.cache_clear()
    x1, e1 = proxy_graph(5, 100, 0.1, 0.0, 12, 42)
    proxy_graph.cache_clear()  # "the other side" rebuilds it from scratch
    x2, e2 = proxy_graph(5, 100, 0.1, 0.0, 12, 42)
    assert torch.equal(x1, x2) and torch.equal(e1, e2)
    assert x1.shape == (500, 12)
    src, dst = e1.numpy()
    assert np.all(src // 100 == dst // 100)  # no edge between the 5 random graphs
    adj = coo_matrix((np.ones(len(src)), (src, dst)), shape=(500, 500))
    assert connected_components(adj, directed=False)[0] == 5
    assert 2000 < len(src) // 2 < 3000  # about 5 * C(100, 2) * 0.1 = 2475 undirected edges
    x3, _ = proxy_graph(5, 100, 0.1, 0.0, 12, 43)
    assert not torch.equal(x1, x3)


def _model():
    torch.manual_seed(0)
    return GCN(4, [3], 2, dropout=0.0, masked=True)


def test_q1_mask_gradient_has_the_l1_term_in_paper_mode_only():
    x, edges, y = torch.randn(5, 4), torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]]), torch.tensor(
        [0, 1, 0, 1, 1])
    grads = {}
    for mode, detached, l1 in (("ce", True, 0.0), ("paper", False, 0.5),
                               ("released", True, 0.5)):
        m = _model()
        with torch.no_grad():
            m.conv1.mask.sub_(torch.linspace(0, 2.0, m.conv1.mask.numel()).view_as(
                m.conv1.mask))  # masks of both signs
        loss = torch.nn.functional.cross_entropy(m(x, edges), y)
        loss = loss + regularizer(m, {}, l1, 0.0, proximal=False, detached=detached)
        loss.backward()
        grads[mode] = (m.conv1.mask.grad.clone(), torch.sign(m.conv1.mask.detach()))
    ce, sign = grads["ce"]
    assert torch.allclose(grads["paper"][0], ce + 0.5 * sign, atol=1e-6)
    assert torch.allclose(grads["released"][0], ce)


def test_proximal_gradient_zero_at_the_anchor_then_nonzero():
    m = _model()
    anchor = {n: p.detach().clone() for n, p in m.named_parameters() if "mask" not in n}
    reg = regularizer(m, anchor, 0.0, 1.0, proximal=True, detached=False)
    reg.backward()
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for n, p in m.named_parameters()
               if "mask" not in n)  # no NaN at the origin of the norm
    m.zero_grad()
    with torch.no_grad():
        m.conv1.lin.weight.add_(0.1)
    regularizer(m, anchor, 0.0, 1.0, proximal=True, detached=False).backward()
    g = m.conv1.lin.weight.grad
    assert torch.allclose(g, torch.full_like(g, 1 / math.sqrt(g.numel())), atol=1e-6)
    m.zero_grad()
    released = regularizer(m, anchor, 0.0, 1.0, proximal=True, detached=True)
    assert released.item() == pytest.approx(0.1 * math.sqrt(g.numel()), rel=1e-5)
    assert not released.requires_grad


def test_sparsity_and_embedding():
    m = _model()
    with torch.no_grad():
        m.conv1.mask.view(-1)[:6].fill_(1e-4)
    total = sum(p.numel() for n, p in m.named_parameters() if "mask" in n)
    assert mask_sparsity(m, 1e-3) == pytest.approx(6 / total)
    x, e = torch.randn(6, 4), torch.tensor([[0, 1], [1, 0]])
    a, b = functional_embedding(m, x, e), functional_embedding(m, x, e)
    assert a.shape == (3,) and torch.equal(a, b)


def _client(*extra):
    cfg = make_cfg(*BASE, *extra)
    data = load_federated(cfg).client(0)
    return FedPubClient(0, data, cfg, torch.device("cpu")), cfg


@pytest.mark.parametrize("as_released", [False, True])
def test_fit_keeps_own_masks_persists_adam_and_uploads_masks_only_as_released(as_released):
    client, _ = _client(f"strategy.as_released={str(as_released).lower()}")
    state = ClientState(RecordDict(), 0)
    received = {k: v for k, v in client.new_model().state_dict().items()
                if as_released or "mask" not in k}
    for server_round in (1, 2, 3):
        if as_released:  # a server that averages masks: the client must ignore them
            received = {k: torch.full_like(v, 7.0) if "mask" in k else v
                        for k, v in received.items()}
        before = state.get_tensors("masks")
        reply = client.train(RecordDict({"arrays": to_record(received)}), state, server_round)
        up = from_record(reply["arrays"])
        assert any("mask" in k for k in up) == as_released
        masks = state.get_tensors("masks")
        assert masks is not None and not any(torch.any(v == 7.0) for v in masks.values())
        if before is not None:  # trained from its own masks, not reset to ones
            assert not all(torch.equal(masks[k], before[k]) for k in masks)
        received = {k: v for k, v in up.items()}
        m = metrics_of(reply)
        assert m["num-examples"] == client.data.num_train and "mask_sparsity" in m
        assert m["num-test-examples"] == len(client.data.test_idx)
        assert from_record(reply["embedding"])["embedding"].shape == (16,)
    opt = torch.optim.Adam(client.new_model().parameters())
    assert state.load_optimizer("optimizer", opt)
    assert {float(v["step"]) for v in opt.state_dict()["state"].values()} == {3.0}


@pytest.mark.parametrize(("as_released", "expected"), [(False, None), (True, 1.0)])
def test_client_without_test_nodes(as_released, expected):
    client, _ = _client(f"strategy.as_released={str(as_released).lower()}")
    d = client.data
    client.data = type(d)(d.cid, d.info, d.x, d.edge_index, d.y, d.train_idx, d.val_idx,
                          d.test_idx[:0], d.global_ids)
    reply = client.train(RecordDict({"arrays": to_record(client.new_model().state_dict())}),
                       ClientState(RecordDict(), 0), 1)
    acc = reply["metrics"]["test_accuracy"]
    assert (math.isnan(acc) if expected is None else acc == expected)

"""FedPer client: the received base plus its own head, which it keeps and never uploads."""

import pytest
import torch
from flwr.app import ConfigRecord, RecordDict

from clients.fedper import FedPerClient
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.data import ClientData, DatasetInfo, load_federated
from strategies.fedper import FedPer
from tests.helpers import make_cfg

INFO = DatasetInfo("toy", (4,), 3, "vector", 90)
HEAD = {"net.3.weight", "net.3.bias"}
GRAPH = ("dataset=sbm", "dataset.nodes_per_block=60", "partition=metis_disjoint",
         "num_clients=4", "client=graph", "strategy=fedper", "strategy.fraction_evaluate=0",
         "model=gcn", "model.hidden=[16,16]", "simulation.torch_threads=1")


def _data(cid=0, n=30):
    g = torch.Generator().manual_seed(cid)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return ClientData(cid, INFO, x[:20], y[:20], x[20:24], y[20:24], x[24:], y[24:])


def _client(cid=0):
    cfg = make_cfg("strategy=fedper", "model=mlp", "model.hidden=[5]", "client.batch_size=8")
    return FedPerClient(cid, _data(cid), cfg, torch.device("cpu"))


def _payload(client, shift=0.0):
    base = {k: v + shift for k, v in client.new_model().state_dict().items() if k not in HEAD}
    return RecordDict({"arrays": to_record(base), "head": ConfigRecord({"prefix": "net.3."})})


def test_reply_is_the_trained_base_and_the_head_goes_to_state():
    client = _client()
    state = ClientState(RecordDict(), 0)
    reply = client.train(_payload(client), state, server_round=1)
    assert set(reply.keys()) == {"arrays", "metrics"}
    assert set(from_record(reply["arrays"])) == {"net.1.weight", "net.1.bias"}
    assert state.names() == ["head"] and set(state.get_tensors("head")) == HEAD
    initial = client.new_model().state_dict()
    assert not torch.equal(state.get_tensors("head")["net.3.weight"], initial["net.3.weight"])


def test_the_model_is_the_sent_base_with_the_kept_head():
    client = _client()
    state = ClientState(RecordDict(), 0)
    fresh = metrics_of(client.evaluate(_payload(client, 0.5), state, server_round=1))
    # no head kept yet: the initial head, as every client starts from
    model = client.new_model()
    weights = model.state_dict()
    weights.update(from_record(_payload(client, 0.5)["arrays"]))
    assert fresh == client.eval_metrics(client.load(model, weights))
    client.train(_payload(client), state, server_round=1)
    head = state.get_tensors("head")
    later = metrics_of(client.evaluate(_payload(client, 0.5), state, server_round=2))
    weights.update(head)
    assert later == client.eval_metrics(client.load(client.new_model(), weights))


def test_client_keeps_its_head_and_uploads_the_base_on_graphs():
    pytest.importorskip("pymetis")
    cfg = make_cfg(*GRAPH)
    s = FedPer(cfg)
    s.setup({})
    client = FedPerClient(0, load_federated(cfg).client(0), cfg, torch.device("cpu"))
    state = ClientState(RecordDict(), 0)
    reply = client.train(s.configure_train(1, [0])[0], state, 1)
    assert not any(k.startswith("clsif.") for k in from_record(reply["arrays"]))
    head = state.get_tensors("head")
    assert head is not None and set(head) == {"clsif.weight", "clsif.bias"}
    reply2 = client.train(s.configure_train(2, [0])[0], state, 2)
    assert not torch.equal(state.get_tensors("head")["clsif.weight"], head["clsif.weight"])
    assert "test_accuracy" in reply2["metrics"]

"""FedAvg client: trains the global model it is sent and replies with exactly its weights and
two metrics; keeps nothing unless asked; batched training gives the same replies."""

import math

import pytest
import torch
from flwr.app import ConfigRecord, RecordDict

from clients.fedavg import FedAvgClient
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.data import ClientData, DatasetInfo
from fedplat.training.loops import make_optimizer, train
from tests.helpers import make_cfg

INFO = DatasetInfo("toy", (4,), 3, "vector", 90)
NAMES = {"net.1.weight": (5, 4), "net.1.bias": (5,), "net.3.weight": (3, 5), "net.3.bias": (3,)}


def _data(cid=0, n=30):
    g = torch.Generator().manual_seed(cid)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return ClientData(cid, INFO, x[:20], y[:20], x[20:24], y[20:24], x[24:], y[24:])


def _cfg(*overrides):
    return make_cfg("model=mlp", "model.hidden=[5]", "client.batch_size=8",
                    "client.local_epochs=2", "client.lr=0.1", *overrides)


def _client(cfg, cid=0):
    return FedAvgClient(cid, _data(cid), cfg, torch.device("cpu"))


def _global(client):
    torch.manual_seed(7)
    return {k: v.clone() for k, v in client.new_model().state_dict().items()}


def _payload(weights, lr=None):
    content = RecordDict({"arrays": to_record(weights)})
    if lr is not None:
        content["config"] = ConfigRecord({"lr": lr})
    return content


def test_reply_is_exactly_the_trained_weights_and_two_metrics():
    cfg = _cfg()
    client = _client(cfg)
    start = _global(client)
    state = ClientState(RecordDict(), 0)
    reply = client.train(_payload(start, lr=0.05), state, server_round=3)
    assert set(reply.keys()) == {"arrays", "metrics"}
    sent_back = from_record(reply["arrays"])
    assert {k: tuple(v.shape) for k, v in sent_back.items()} == NAMES
    assert set(metrics_of(reply)) == {"num-examples", "train_loss"}
    assert metrics_of(reply)["num-examples"] == 2 * 20  # samples seen: 2 epochs of 20
    assert math.isfinite(metrics_of(reply)["train_loss"])
    # the same numbers as training a model loaded with the payload, at the payload's rate
    ref = client.new_model()
    ref.load_state_dict(start)
    opt = make_optimizer(ref.parameters(), cfg.client, lr=0.05)
    result = train(ref, client.data.x_train, client.data.y_train, opt, epochs=2, batch_size=8,
                   generator=client.generator(3))
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(sent_back[k], v)
    assert metrics_of(reply)["train_loss"] == pytest.approx(result.loss)
    assert state.names() == []  # stateless by default


def test_without_a_rate_in_the_payload_the_client_rate_is_used():
    cfg = _cfg()
    start = _global(_client(cfg))
    a = _client(cfg).train(_payload(start), ClientState(RecordDict(), 0), server_round=1)
    b = _client(cfg).train(_payload(start, lr=0.1), ClientState(RecordDict(), 0), server_round=1)
    c = _client(cfg).train(_payload(start, lr=0.01), ClientState(RecordDict(), 0), server_round=1)
    wa, wb, wc = (from_record(r["arrays"]) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in NAMES)  # client.lr=0.1
    assert not torch.equal(wa["net.1.weight"], wc["net.1.weight"])


def test_evaluation_after_fit_travels_with_the_weights():
    cfg = _cfg("client.evaluate_after_train=true")
    client = _client(cfg)
    state = ClientState(RecordDict(), 0)
    m = metrics_of(client.train(_payload(_global(client)), state, server_round=1))
    assert m["num-examples"] == 2 * 20  # still the training count (aggregation weights)
    assert m["num-test-examples"] == 6 and m["num-val-examples"] == 4
    assert 0 <= m["test_accuracy"] <= 1 and math.isfinite(m["val_loss"])


def test_evaluate_replies_with_metrics_of_the_sent_model_only():
    cfg = _cfg()
    client = _client(cfg)
    weights = _global(client)
    reply = client.evaluate(_payload(weights), ClientState(RecordDict(), 0), server_round=1)
    assert set(reply.keys()) == {"metrics"}
    m = metrics_of(reply)
    assert m["num-examples"] == 6 and m["num-val-examples"] == 4
    assert m == client.eval_metrics(client.load(client.new_model(), weights))


def test_optimizer_state_is_kept_only_when_asked():
    cfg = _cfg("client.persist_optimizer_state=true", "client.momentum=0.9")
    client = _client(cfg)
    state = ClientState(RecordDict(), 0)
    client.train(_payload(_global(client)), state, server_round=1)
    assert state.names() == ["optimizer"]
    buffers = state.get_tensors("optimizer")
    assert {v.shape for v in buffers.values()} == {torch.Size(s) for s in NAMES.values()}


def test_batched_fit_equals_one_client_at_a_time():
    cfg = _cfg()
    clients = [_client(cfg, cid) for cid in range(3)]
    start = _global(clients[0])
    payload = _payload(start, lr=0.05)  # one shared record, as FedAvg sends it
    states = [ClientState(RecordDict(), c.cid) for c in clients]
    batched = FedAvgClient.train_batched(clients, [payload] * 3, states, 2)
    assert batched is not None and len(batched) == 3
    for client, reply in zip(clients, batched):
        alone = client.train(payload, ClientState(RecordDict(), client.cid), 2)
        assert set(reply.keys()) == set(alone.keys()) == {"arrays", "metrics"}
        got, want = from_record(reply["arrays"]), from_record(alone["arrays"])
        for k in NAMES:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
        assert metrics_of(reply) == pytest.approx(metrics_of(alone), rel=1e-5)


def test_batching_declines_mixed_rates_and_subclasses_that_change_fit():
    cfg = _cfg()
    clients = [_client(cfg, cid) for cid in range(2)]
    start = _global(clients[0])
    states = [ClientState(RecordDict(), c.cid) for c in clients]
    assert FedAvgClient.train_batched(clients, [_payload(start, 0.1), _payload(start, 0.2)],
                                    states, 1) is None

    class Changed(FedAvgClient):
        def train(self, payload, state, server_round):
            return super().train(payload, state, server_round)

    assert Changed.train_batched(clients, [_payload(start)] * 2, states, 1) is None

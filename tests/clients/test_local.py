"""Local client: its model lives in its own state, starts where FedAvg's does, and nothing but
metrics leaves it."""

import torch
from flwr.app import RecordDict

from clients.local import LocalClient
from fedplat.core.client import ClientState
from fedplat.core.records import metrics_of
from fedplat.core.strategy import ClientInfo
from fedplat.data import ClientData, DatasetInfo, dataset_info
from strategies.fedavg import FedAvg
from tests.helpers import make_cfg

INFO = DatasetInfo("toy", (4,), 3, "vector", 90)


def _data(cid=0, n=30):
    g = torch.Generator().manual_seed(cid)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return ClientData(cid, INFO, x[:20], y[:20], x[20:24], y[20:24], x[24:], y[24:])


def _cfg():
    return make_cfg("strategy=local", "model=mlp", "model.hidden=[5]", "client.batch_size=8")


def test_the_reply_holds_metrics_only_and_the_model_stays_in_state():
    client = LocalClient(0, _data(), _cfg(), torch.device("cpu"))
    state = ClientState(RecordDict(), 0)
    reply = client.train(RecordDict(), state, server_round=1)
    assert set(reply.keys()) == {"metrics"}
    assert set(metrics_of(reply)) == {"num-examples", "train_loss"}
    assert state.names() == ["model"]
    saved = state.get_tensors("model")
    assert {k: tuple(v.shape) for k, v in saved.items()} == {
        "net.1.weight": (5, 4), "net.1.bias": (5,), "net.3.weight": (3, 5), "net.3.bias": (3,)}


def test_training_continues_from_the_saved_model_and_clients_stay_apart():
    cfg = _cfg()
    store = RecordDict()  # one node serving two clients
    a, b = (LocalClient(c, _data(c), cfg, torch.device("cpu")) for c in (0, 1))
    sa, sb = ClientState(store, 0), ClientState(store, 1)
    a.train(RecordDict(), sa, server_round=1)
    first = sa.get_tensors("model")
    assert sb.get_tensors("model") is None  # b has trained nothing yet
    b.train(RecordDict(), sb, server_round=1)
    assert all(torch.equal(first[k], v) for k, v in sa.get_tensors("model").items())
    a.train(RecordDict(), sa, server_round=2)
    second = sa.get_tensors("model")
    assert not torch.equal(first["net.1.weight"], second["net.1.weight"])
    # the same result as training the saved model once more, by hand
    again = LocalClient(0, _data(0), cfg, torch.device("cpu"))
    model = again.load(again.new_model(), first)
    again.train_model(model, 2)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in second.items())
    assert not torch.equal(second["net.1.weight"], sb.get_tensors("model")["net.1.weight"])


def test_evaluate_uses_the_saved_model():
    client = LocalClient(0, _data(), _cfg(), torch.device("cpu"))
    state = ClientState(RecordDict(), 0)
    untrained = metrics_of(client.evaluate(RecordDict(), state, server_round=1))
    assert untrained == client.eval_metrics(client.new_model())
    client.train(RecordDict(), state, server_round=1)
    trained = metrics_of(client.evaluate(RecordDict(), state, server_round=1))
    assert trained == client.eval_metrics(client.load(client.new_model(),
                                                      state.get_tensors("model")))
    assert trained != untrained and trained["num-examples"] == 6


def test_a_fresh_client_starts_from_fedavgs_initial_global_model():
    cfg = make_cfg("strategy=local", "num_clients=3")
    server = FedAvg(cfg)
    server.setup({c: ClientInfo(c, 1, 1, 1) for c in range(3)})
    info = dataset_info(cfg.dataset)  # MNIST-1D's shapes; no need to generate its samples
    x = torch.zeros(4, *info.input_shape)
    y = torch.zeros(4, dtype=torch.long)
    client = LocalClient(2, ClientData(2, info, x, y, x, y, x, y), cfg, torch.device("cpu"))
    start = client.new_model().state_dict()
    assert set(start) == set(server.global_state)
    assert all(torch.equal(start[k], v) for k, v in server.global_state.items())

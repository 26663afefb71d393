"""PeFLL client: descriptor batches, the stored batch reused for the gradient, eval masks."""

import torch
from flwr.app import RecordDict

from clients.pefll import PeFLLClient
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, to_record
from fedplat.data import ClientData, DatasetInfo
from strategies.pefll import build_vnet, client_vnet_gradient, descriptor, descriptor_indices
from tests.helpers import make_cfg


def test_descriptor_batches_are_full_batches_of_a_shuffle():
    gen = torch.Generator().manual_seed(0)
    idx, nb = descriptor_indices(100, 32, 1, gen)
    assert len(idx) == 32 and nb == 1
    idx, nb = descriptor_indices(100, 32, -1, gen)  # evaluation: all full batches (drop_last)
    assert len(idx) == 96 and nb == 3 and len(set(idx.tolist())) == 96
    idx, nb = descriptor_indices(20, 32, 1, gen)  # fewer than a batch: everything
    assert sorted(idx.tolist()) == list(range(20)) and nb == 1


def _client(cid=0):
    cfg = make_cfg("strategy=pefll", "model=mlp", "model.hidden=[8]", "num_clients=10",
                   "strategy.batch_size=8")
    info = DatasetInfo("mnist1d", (40,), 10, "vector", 100)
    g = torch.Generator().manual_seed(cid)
    x, y = torch.randn(30, 40, generator=g), torch.tensor([1, 4] * 15)
    data = ClientData(cid, info, x, y, x[:4], y[:4], x[4:10], y[4:10])
    return cfg, PeFLLClient(cid, data, cfg, torch.device("cpu"))


def _payload(cfg, client, **extra):
    vnet = build_vnet(cfg, client.data.info)
    from strategies.pefll import PeFLL

    strategy = PeFLL.__new__(PeFLL)
    strategy.params, strategy.vnet = cfg.strategy, vnet
    return vnet, RecordDict({**strategy._vnet_payload(), **extra})


def test_embed_then_embedgrad_use_the_same_stored_batch():
    cfg, client = _client()
    vnet, payload = _payload(cfg, client)
    store = RecordDict()
    reply = client.exchange("train", "embed", payload, ClientState(store, 0), server_round=2)
    stored = ClientState(store, 0).get_values("descriptor_batch")
    idx = torch.tensor(stored["idx"])
    assert len(idx) == 8 and stored["batches"] == 1
    u = from_record(reply["arrays"])["u"]
    x, y = client.data.x_train[idx], client.data.y_train[idx]
    torch.testing.assert_close(u, descriptor(vnet, x, y, 1))
    du = torch.randn(u.shape)
    _, payload2 = _payload(cfg, client, du=to_record({"u": du}))
    reply2 = client.exchange("train", "embedgrad", payload2, ClientState(store, 0), server_round=2)
    got = from_record(reply2["arrays"])
    want = client_vnet_gradient(vnet, x, y, 1, du)
    for (name, _), w in zip(vnet.named_parameters(), want):
        torch.testing.assert_close(got[name], w)


def test_evaluation_descriptor_uses_all_full_batches_and_remembers_present_classes():
    cfg, client = _client()
    _, payload = _payload(cfg, client)
    store = RecordDict()
    reply = client.exchange("evaluate", "embed", payload, ClientState(store, 0), server_round=1)
    assert reply["metrics"]["num-examples"] == 24  # 3 full batches of 8 out of 30
    mask = ClientState(store, 0).get_values("eval_present")["mask"]
    assert [i for i, m in enumerate(mask) if m] == [1, 4]

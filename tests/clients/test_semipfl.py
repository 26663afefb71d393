"""SemiPFL user: AE step on every training sample, combine phase, personal model in its state."""

import torch
from flwr.app import ConfigRecord, RecordDict
from torch.nn import functional as F

from clients.semipfl import SemiPFLClient, train_autoencoder
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.data import ClientData, DatasetInfo
from strategies.semipfl import AutoEncoder, BaseModel, pack_bases
from tests.helpers import make_cfg

INFO = DatasetInfo("mnist1d", (40,), 10, "vector", 5000)
CFG = ("strategy=semipfl", "num_clients=4", "split.server_shares=2",
       "strategy.ae.h1=16", "strategy.ae.h2=8", "strategy.ae.latent=4",
       "strategy.hypernet.hidden=8", "strategy.hypernet.n_hidden=1")


def _data(n_lab=6, n_unl=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_lab + n_unl + 10, 40, generator=g)
    y = torch.randint(0, 10, (n_lab + n_unl + 10,), generator=g)
    empty = torch.zeros(0, 40)
    return ClientData(0, INFO, x[:n_lab], y[:n_lab], empty, y[:0], x[-10:], y[-10:],
                      x[n_lab:n_lab + n_unl])


def _client(data):
    return SemiPFLClient(0, data, make_cfg(*CFG), torch.device("cpu"))


def _theta():
    torch.manual_seed(0)
    return AutoEncoder(40, 16, 8, 4, "tanh").state_dict()


def _fit(client, store, server_round=1):
    payload = RecordDict({"arrays": to_record(_theta()), "config": ConfigRecord(
        {"ae_epochs": 2, "ae_lr": 1e-3, "batch_size": 16})})
    return client.train(payload, ClientState(store, 0), server_round)


def test_ae_training_zeroes_gradients_every_batch():
    """Equal to a plain loop with zero_grad per batch (the released code accumulates, P-S2)."""
    x = torch.randn(40, 40)
    a = AutoEncoder(40, 16, 8, 4, "tanh")
    b = AutoEncoder(40, 16, 8, 4, "tanh")
    b.load_state_dict(a.state_dict())
    res = train_autoencoder(a, x, epochs=2, batch_size=16, lr=1e-2,
                            generator=torch.Generator().manual_seed(5))
    opt = torch.optim.Adam(b.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(5)
    for _ in range(2):
        for idx in torch.randperm(40, generator=gen).split(16):
            opt.zero_grad()
            F.mse_loss(b(x[idx]), x[idx]).backward()
            opt.step()
    for k, v in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[k], v)
    assert res.steps == 6 and res.num_examples == 80


def test_fit_trains_on_every_training_sample_and_returns_the_weights():
    data = _data()
    store = RecordDict()
    reply = _fit(_client(data), store)
    m = metrics_of(reply)
    assert m["num-examples"] == 2 * 36  # 6 labeled + 30 unlabeled, 2 epochs
    assert m["ae_mse_post"] < m["ae_mse_pre"]
    tuned = from_record(reply["arrays"])
    assert set(tuned) == set(_theta()) and not torch.equal(tuned["encoder.1.weight"],
                                                           _theta()["encoder.1.weight"])
    assert ClientState(store, 0).names() == ["ae_candidate"]


def _bases(m=2, seed=0):
    torch.manual_seed(seed)
    return {k: BaseModel(4, 16, 10).eval().state_dict() for k in range(m)}


def _combine(client, store, bases, steps=30, finetune=0):
    payload = RecordDict({"arrays": to_record(pack_bases(bases)), "config": ConfigRecord(
        {"mix_steps": steps, "mix_lr": 0.1, "finetune_steps": finetune, "finetune_lr": 1e-2})})
    return client.exchange("train", "combine", payload, ClientState(store, 0), 1)


def test_combine_fits_the_mixture_on_labels_and_commits_the_personal_model():
    data = _data()
    client = _client(data)
    store = RecordDict()
    _fit(client, store)
    m = metrics_of(_combine(client, store, _bases()))
    assert m["n_bases"] == 2 and m["n_labeled"] == 6 and 0 <= m["user_f1"] <= 1
    state = ClientState(store, 0)
    assert {"ae", "bases", "mix"} <= set(state.names())
    w = state.get_tensors("mix")["w"]
    assert not torch.equal(w, torch.zeros(2))
    # evaluation with an empty payload uses the committed model and reports whole-split F1
    ev = metrics_of(client.evaluate(RecordDict(), state, 2))
    assert ev["num-examples"] == 10 and 0 <= ev["test_f1"] <= 1


def test_without_labels_the_mixture_stays_uniform():
    client = _client(_data(n_lab=0))
    store = RecordDict()
    _fit(client, store)
    m = metrics_of(_combine(client, store, _bases(3)))
    assert m["user_f1"] == m["uniform_f1"] and "mix_nll" not in m
    assert torch.equal(ClientState(store, 0).get_tensors("mix")["w"], torch.zeros(3))


def test_no_base_model_keeps_the_previous_personal_model():
    client = _client(_data())
    store = RecordDict()
    _fit(client, store)
    _combine(client, store, _bases())
    before = ClientState(store, 0).get_tensors("ae")
    _fit(client, store, server_round=2)
    m = metrics_of(_combine(client, store, {}))
    assert m == {"n_bases": 0.0}
    after = ClientState(store, 0).get_tensors("ae")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_never_trained_user_evaluates_the_servers_ae_and_bases():
    client = _client(_data())
    arrays = {**{f"ae.{k}": v for k, v in _theta().items()}, **pack_bases(_bases())}
    payload = RecordDict({"arrays": to_record(arrays),
                          "config": ConfigRecord({"mix_steps": 10, "mix_lr": 0.1})})
    store = RecordDict()
    m = metrics_of(client.evaluate(payload, ClientState(store, 0), 1))
    assert m["num-examples"] == 10 and "test_f1" in m
    assert ClientState(store, 0).names() == []  # evaluation keeps nothing


def _stored_bases(store):
    from strategies.semipfl import unpack

    return unpack(ClientState(store, 0).get_tensors("bases"))[1]


def test_frozen_by_default_finetuned_bases_are_committed_when_asked():
    sent = _bases()
    client = _client(_data())
    frozen, tuned = RecordDict(), RecordDict()
    _fit(client, frozen)
    _fit(client, tuned)
    m0 = metrics_of(_combine(client, frozen, sent))
    m1 = metrics_of(_combine(client, tuned, sent, finetune=40))
    for m in sent:
        assert all(torch.equal(v, _stored_bases(frozen)[m][k]) for k, v in sent[m].items())
        assert not torch.equal(_stored_bases(tuned)[m]["net.1.weight"], sent[m]["net.1.weight"])
        # BatchNorm statistics stay the server's
        assert torch.equal(_stored_bases(tuned)[m]["net.0.running_mean"],
                           sent[m]["net.0.running_mean"])
    assert "finetune_nll" not in m0 and m1["finetune_nll"] < m1["mix_nll"]
    assert m0["uniform_f1"] == m1["uniform_f1"]  # measured before any fine-tuning
    # the committed (fine-tuned) model is the one evaluated later
    ev = metrics_of(client.evaluate(RecordDict(), ClientState(tuned, 0), 2))
    assert ev["test_f1"] == m1["user_f1"]


def test_finetuning_without_labels_changes_nothing():
    sent = _bases()
    client = _client(_data(n_lab=0))
    store = RecordDict()
    _fit(client, store)
    m = metrics_of(_combine(client, store, sent, finetune=40))
    assert "finetune_nll" not in m and m["user_f1"] == m["uniform_f1"]
    for k, v in sent[0].items():
        assert torch.equal(v, _stored_bases(store)[0][k])

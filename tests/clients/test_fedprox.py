"""FedProx client: the proximal term's value and gradient, and its pull towards w_t."""

import pytest
import torch
from flwr.app import ConfigRecord, RecordDict
from torch import nn

from clients.fedavg import FedAvgClient
from clients.fedprox import FedProxClient, proximal_term
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, to_record
from fedplat.data import load_federated
from tests.helpers import make_cfg


def test_proximal_term_value_and_gradient():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 3.0]]))
    anchor = {"weight": torch.tensor([[0.0, 1.0]])}
    term = proximal_term(model, anchor, mu=0.5)
    assert term.item() == pytest.approx(0.25 * (1.0 + 4.0))
    term.backward()
    assert torch.allclose(model.weight.grad, 0.5 * torch.tensor([[1.0, 2.0]]))  # mu (w - a)


def _train(cls, mu):
    cfg = make_cfg("strategy=fedprox", "num_clients=2", "model=mlp", "model.hidden=[8]",
                   "client.local_epochs=3", "client.lr=0.5", "seed=1")
    data = load_federated(cfg).client(0)
    client = cls(0, data, cfg, torch.device("cpu"))
    start = client.new_model().state_dict()
    payload = RecordDict({"arrays": to_record(start),
                          "config": ConfigRecord({"lr": 0.5, "mu": mu})})
    trained = from_record(client.train(payload, ClientState(RecordDict(), 0), 1)["arrays"])
    return sum(((trained[k] - start[k]) ** 2).sum().item() for k in start)


def test_mu_zero_trains_like_fedavg_and_a_large_mu_stays_near_the_global_model():
    fedavg = _train(FedAvgClient, 0.0)
    assert _train(FedProxClient, 0.0) == fedavg
    assert _train(FedProxClient, 1.0) < 0.7 * fedavg  # mu * lr < 2: a stable pull


def test_fedprox_clients_are_never_trained_by_the_vmapped_fedavg_path():
    assert FedProxClient.train_batched([], [], [], 1) is None

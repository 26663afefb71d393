"""pFedHN client: inner loop semantics and the raw delta-theta it replies with."""

import torch
from flwr.app import ConfigRecord, RecordDict
from torch import nn
from torch.nn import functional as F

from clients.pfedhn import PFedHNClient, batch_indices, inner_updates
from fedplat.core.client import ClientState
from fedplat.core.records import from_record, to_record
from fedplat.data import ClientData, DatasetInfo
from fedplat.models.nets import MLP
from strategies.pfedhn import inner_config
from tests.helpers import make_cfg

INFO = DatasetInfo("toy", (4,), 3, "vector", 60)


def _data(cid=0, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return ClientData(cid, INFO, x, y, x[:5], y[:5], x[5:15], y[5:15])


def test_fresh_batches_are_independent_draws_and_epochs_cover_the_data():
    gen = torch.Generator().manual_seed(0)
    fresh = list(batch_indices(10, 4, 6, gen, "fresh"))
    assert len(fresh) == 6 and all(len(b) == 4 and len(set(b.tolist())) == 4 for b in fresh)
    seen = torch.cat(fresh[:3]).tolist()
    assert len(set(seen)) < len(seen)  # with replacement across steps (not an epoch)
    epoch = list(batch_indices(10, 4, 5, torch.Generator().manual_seed(0), "epoch"))
    assert [len(b) for b in epoch] == [4, 4, 2, 4, 4]
    assert sorted(torch.cat(epoch[:3]).tolist()) == list(range(10))
    assert [len(b) for b in batch_indices(3, 64, 2, gen, "fresh")] == [3, 3]


def test_inner_loop_equals_training_a_module_loaded_with_the_weights():
    """Same numbers as the released code's path: load theta into a module, train it."""
    torch.manual_seed(0)
    target = MLP(4, [5], 3)
    theta = {k: torch.randn_like(v) for k, v in target.state_dict().items()}
    d = _data()
    kw = {"steps": 7, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-5,
          "clip": 0.5}
    new, loss = inner_updates(target, theta, d.x_train, d.y_train,
                              generator=torch.Generator().manual_seed(3), **kw)
    ref = MLP(4, [5], 3)
    ref.load_state_dict(theta)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-5)
    for idx in batch_indices(40, 8, 7, torch.Generator().manual_seed(3)):
        opt.zero_grad()
        F.cross_entropy(ref(d.x_train[idx]), d.y_train[idx]).backward()
        nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(new[k], v)
    assert loss > 0 and all(not v.requires_grad for v in new.values())


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


def test_reply_is_the_raw_difference_theta_minus_trained_theta():
    cfg = _cfg("pfedhn")
    client = PFedHNClient(0, _data(), cfg, torch.device("cpu"))
    theta = _theta(cfg)
    reply = client.train(_payload(cfg, theta), ClientState(RecordDict(), 0), server_round=1)
    assert set(reply.keys()) == {"arrays", "metrics"}
    delta = from_record(reply["arrays"])
    new, _ = inner_updates(client.target(), theta, client.data.x_train, client.data.y_train,
                           steps=5, batch_size=8, lr=0.005, momentum=0.9, weight_decay=5e-5,
                           clip=50.0, generator=client.generator(1))
    for k in theta:
        torch.testing.assert_close(delta[k], theta[k] - new[k])  # not divided by the lr
    ev = client.evaluate(RecordDict({"arrays": to_record(theta),
                                     "config": ConfigRecord({"mask_absent": "none"})}),
                         ClientState(RecordDict(), 0), 1)
    assert 0.0 <= ev["metrics"]["test_accuracy"] <= 1.0

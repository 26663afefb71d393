"""Client helpers: optimizer state across rounds, evaluation sent with the train reply."""

import torch
from flwr.app import RecordDict

from fedplat.core.client import Client, ClientState
from fedplat.core.records import metrics_of
from fedplat.data import load_federated
from tests.helpers import make_cfg


def test_optimizer_state_round_trips_through_client_state():
    store = RecordDict()
    state = ClientState(store, 3)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
    state.set_optimizer("opt", opt)
    fresh = torch.optim.Adam(model.parameters(), lr=0.1)
    assert state.load_optimizer("opt", fresh)
    a, b = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert a.keys() == b.keys()
    for k in a:
        assert float(b[k]["step"]) == 2.0
        assert torch.equal(a[k]["exp_avg"], b[k]["exp_avg"])
    other = torch.optim.Adam(torch.nn.Linear(5, 2).parameters())  # another model: ignored
    assert not state.load_optimizer("opt", other)
    assert not ClientState(store, 4).load_optimizer("opt", fresh)  # nothing saved


def test_graph_client_trains_full_batch_persists_adam_and_reports_after_fit():
    cfg = make_cfg("dataset=sbm", "partition=metis_disjoint", "num_clients=4", "client=graph",
                   "dataset.nodes_per_block=60")
    data = load_federated(cfg).client(1)
    client = Client(1, data, cfg, torch.device("cpu"))
    state = ClientState(RecordDict(), 1)
    model = client.new_model()
    for server_round in (1, 2, 3):
        result = client.train_model(model, server_round, state=state)
        assert result.steps == 1 and result.num_examples == data.num_train
    opt = torch.optim.Adam(model.parameters())
    assert state.load_optimizer("optimizer", opt)
    assert {float(v["step"]) for v in opt.state_dict()["state"].values()} == {3.0}
    reply = client.reply_after_training(result, model)
    m = metrics_of(reply)
    assert m["num-examples"] == data.num_train
    assert m["num-test-examples"] == len(data.test_idx) and 0 <= m["test_accuracy"] <= 1
    assert m["num-val-examples"] == len(data.val_idx) and "val_accuracy" in m


def test_post_train_metrics_off_by_default():
    cfg = make_cfg("dataset=sbm", "partition=metis_disjoint", "num_clients=4",
                   "dataset.nodes_per_block=60")
    assert cfg.model.name == "gcn"
    client = Client(0, load_federated(cfg).client(0), cfg, torch.device("cpu"))
    assert client.post_train_metrics(client.new_model()) == {}


def test_new_model_leaves_the_dropout_rng_alone():
    """Re-seeding the global RNG for weight init would repeat the same dropout masks in every
    round and client (the app seeds it per client and round before calling fit)."""
    cfg = make_cfg("dataset=sbm", "partition=metis_disjoint", "num_clients=4",
                   "dataset.nodes_per_block=60")
    client = Client(0, load_federated(cfg).client(0), cfg, torch.device("cpu"))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = client.new_model()
    assert torch.equal(torch.get_rng_state(), before)
    b = client.new_model()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# -- client.amp through Client.train_model, in whole runs -------------------------------------

AMP_RUN = ("num_clients=4", "num_rounds=2", "dataset.num_samples=800", "model=mlp", "seed=3",
           "simulation.torch_threads=1")


def test_amp_none_leaves_every_metric_as_without_the_key(tmp_path):
    from fedplat.recording.recorder import without_timing
    from tests.helpers import run_inline

    _, default = run_inline(tmp_path / "a", *AMP_RUN)
    _, absent = run_inline(tmp_path / "b", *AMP_RUN, "~client.amp")
    assert without_timing(default) == without_timing(absent)


def test_bf16_runs_end_finite_and_close_to_float32(tmp_path):
    import math

    from tests.helpers import run_inline

    _, full = run_inline(tmp_path / "fp32", *AMP_RUN)
    _, half = run_inline(tmp_path / "bf16", *AMP_RUN, "client.amp=bf16")
    _, both = run_inline(tmp_path / "bf16b", *AMP_RUN, "client.amp=bf16",
                         "simulation.clients_per_node=4", "simulation.batched=true")
    for rows in (half, both):
        for a, b in zip(full, rows):
            assert math.isfinite(b["train_loss"]) and b["train_loss"] != a["train_loss"]
            assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=0.05)
            assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.05


def test_model_with_reuses_one_module_and_gives_a_fresh_models_metrics_exactly(monkeypatch):
    import fedplat.core.client as client_module

    cfg = make_cfg("dataset=mnist1d", "model=mlp", "num_clients=4")
    fed = load_federated(cfg)
    clients = [Client(c, fed.client(c), cfg, torch.device("cpu")) for c in range(4)]
    torch.manual_seed(7)
    state = {k: torch.randn_like(v) for k, v in clients[0].new_model().state_dict().items()}
    fresh = [c.eval_metrics(c.load(c.new_model(), state)) for c in clients]
    built = []
    real_build = client_module.build_model
    monkeypatch.setattr(client_module, "build_model",
                        lambda *a: built.append(1) or real_build(*a))
    cache: dict = {}
    rng_before = torch.get_rng_state()
    models = []
    for c in clients:
        c.models = cache
        models.append(c.model_with(state))
        assert c.eval_metrics(models[-1]) == fresh[c.cid]  # bit for bit
    assert len(built) == 1 and all(m is models[0] for m in models)  # one model, built once
    assert torch.equal(torch.get_rng_state(), rng_before)  # no draw from the global RNG
    clients[0].models = None  # outside a node: a fresh model each time
    assert clients[0].model_with(state) is not models[0] and len(built) == 2

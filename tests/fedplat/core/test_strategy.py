"""The base `Strategy`: seeded client sampling, defaults, state, the dispatch of a stage's
exchanges, and stages made of several exchanges (`Strategy.exchanges`, `Client.exchange`)."""

import math

import pytest
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from clients.fedavg import FedAvgClient
from fedplat.core import seeding
from fedplat.core.stage import MAIN, Stage
from fedplat.core.strategy import ClientInfo, Strategy
from fedplat.errors import RunAborted
from fedplat.transport.wire import payload_bytes
from strategies.fedavg import FedAvg
from tests.helpers import make_cfg, run_inline

TRAIN, EVALUATE = Stage.TRAIN.stream, Stage.EVALUATE.stream  # ids in the sampling stream


def _base(n=10, *overrides):
    s = Strategy(make_cfg(f"num_clients={n}", *overrides))
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(n)})
    return s


def test_sample_draws_ceil_fraction_of_the_ids_from_seed_round_and_stage():
    s = _base(10)
    # pinned draws: the sampling stream (seed, SAMPLING, round, stage) must not change
    assert s.sample(1, 0.25, TRAIN) == [0, 5, 7]  # ceil(2.5) = 3 ids, sorted
    assert s.sample(1, 0.25, EVALUATE) == [0, 1, 9]
    assert s.sample(2, 0.25, TRAIN) == [1, 4, 8]
    assert s.sample(1, 0.25, TRAIN) == [0, 5, 7]  # the same call gives the same ids
    for f in (0.01, 0.1, 0.31, 0.5, 0.99):
        ids = s.sample(3, f, TRAIN)
        assert len(ids) == len(set(ids)) == math.ceil(f * 10) and ids == sorted(ids)
        assert set(ids) <= set(range(10))
    expected = sorted(int(c) for c in seeding.rng(0, seeding.SAMPLING, 4, TRAIN).choice(
        list(range(10)), 4, replace=False))
    assert s.sample(4, 0.4, TRAIN) == expected
    other = _base(10, "seed=1")
    assert other.sample(1, 0.25, TRAIN) == [1, 3, 8]


def test_sample_honours_the_minimum_and_returns_everyone_when_it_must():
    s = _base(10)
    assert len(s.sample(1, 0.05, TRAIN, minimum=4)) == 4
    assert s.sample(1, 1.0, TRAIN) == list(range(10))
    assert s.sample(1, 0.1, TRAIN, minimum=50) == list(range(10))


def test_sample_train_and_evaluate_read_the_strategy_fractions():
    s = _base(10, "strategy.fraction_train=0.3", "strategy.fraction_evaluate=0.5",
              "strategy.min_train_clients=4")
    assert len(s.sample_train(1)) == 4  # ceil(3) raised to min_train_clients
    assert s.sample_train(1) == s.sample(1, 0.3, TRAIN, 4)
    assert s.sample_evaluate(1) == s.sample(1, 0.5, EVALUATE)
    assert len(s.sample_evaluate(1)) == 5
    assert _base(4, "strategy.fraction_evaluate=0").sample_evaluate(1) == []


def test_defaults_of_the_base_class():
    s = _base(3)
    assert s.exchanges(Stage.TRAIN, 1) == (MAIN,) and s.exchanges(Stage.EVALUATE, 7) == (MAIN,)
    with pytest.raises(NotImplementedError):
        s.configure_train(1, [0])
    with pytest.raises(NotImplementedError):
        s.aggregate_train(1, {}, {})
    with pytest.raises(NotImplementedError, match="Strategy lists exchange 'x' of train"):
        s.configure_exchange(Stage.TRAIN, "x", 1, [0])
    sent = s.configure_evaluate(1, [0, 2])
    assert list(sent) == [0, 2] and all(len(rd) == 0 for rd in sent.values())
    assert s.aggregate_evaluate(1, {}, {}) == {}
    assert s.aggregate_exchange(Stage.TRAIN, "x", 1, {}, {}) == {}
    assert s.summary() == {}
    assert s.dataset.input_shape == (40,) and s.dataset.num_classes == 10


def test_check_reply_rejects_non_finite_arrays_only():
    s = _base(3)
    ok = RecordDict({"arrays": ArrayRecord({"w": torch.ones(2, 2)}),
                     "metrics": MetricRecord({"loss": 1.0})})
    assert s.check_reply(Stage.TRAIN, 0, ok) is None
    bad = RecordDict({"arrays": ArrayRecord({"w": torch.tensor([1.0, float("inf")])})})
    assert s.check_reply(Stage.TRAIN, 0, bad) == "non-finite values in arrays/w"
    nan = RecordDict({"extra": ArrayRecord({"v": torch.tensor([float("nan")])})})
    assert s.check_reply(Stage.EVALUATE, 1, nan) == "non-finite values in extra/v"


def test_initial_model_is_the_same_on_every_call_and_process():
    a, b = _base(3).initial_model(), _base(3).initial_model()
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert sa["net.1.weight"].shape == (100, 40)  # mlp 40-100-100-10 on MNIST-1D
    c = _base(3, "seed=1").initial_model().state_dict()
    assert not torch.equal(sa["net.1.weight"], c["net.1.weight"])


def test_state_dict_holds_state_not_configuration_and_round_trips():
    s = _base(3)
    s.table = {0: 1.5}
    s.model = torch.zeros(3)
    state = s.state_dict()
    assert set(state) == {"table", "model"}
    fresh = _base(3)
    fresh.load_state_dict(state)
    assert fresh.table == {0: 1.5} and torch.equal(fresh.model, torch.zeros(3))
    assert fresh.seed == 0 and set(fresh.clients) == {0, 1, 2}

def test_configure_and_aggregate_dispatch_on_stage_and_exchange():
    calls = []

    class Recording(Strategy):
        def configure_train(self, server_round, cids):
            calls.append(("configure_train", server_round))
            return {}

        def aggregate_train(self, server_round, replies, failures):
            calls.append(("aggregate_train", server_round))
            return {"t": 1}

        def configure_evaluate(self, server_round, cids):
            calls.append(("configure_evaluate", server_round))
            return {}

        def configure_exchange(self, stage, exchange, server_round, cids):
            calls.append((f"configure_exchange {stage} {exchange}", server_round))
            return {}

    s = Recording(make_cfg("num_clients=2"))
    s.configure(Stage.TRAIN, MAIN, 1, [0])
    s.configure(Stage.EVALUATE, MAIN, 2, [0])
    s.configure(Stage.EVALUATE, "x", 3, [0])
    assert s.aggregate(Stage.TRAIN, MAIN, 4, {}, {}) == {"t": 1}
    assert s.aggregate(Stage.EVALUATE, MAIN, 5, {}, {}) == {}
    assert calls == [("configure_train", 1), ("configure_evaluate", 2),
                     ("configure_exchange evaluate x", 3), ("aggregate_train", 4)]


CALLS: list[tuple[str, str, int, tuple[int, ...]]] = []


class MultiExchangeFedAvg(FedAvg):
    """FedAvg with a `hello` exchange before training and a `bye` after it."""

    def exchanges(self, stage, server_round):
        return ("hello", "", "bye") if stage == "train" else ("", "check")

    def configure_exchange(self, stage, exchange, server_round, cids):
        CALLS.append((stage, exchange, server_round, tuple(cids)))
        size = 10 if exchange == "hello" else 3
        return {c: RecordDict({"arrays": ArrayRecord({"x": torch.zeros(size)})})
                for c in cids if not (exchange == "bye" and c == 0)}

    def aggregate_exchange(self, stage, exchange, server_round, replies, failures):
        return {f"{stage}_{exchange}_replies": float(len(replies))}

    def configure_train(self, server_round, cids):
        CALLS.append(("train", "", server_round, tuple(cids)))
        return super().configure_train(server_round, cids)


class MultiExchangeClient(FedAvgClient):
    """Answers the extra exchanges with what it received."""

    def exchange(self, stage, name, payload, state, server_round):
        if name == "bye" and self.cfg.get("fail_bye"):
            raise RuntimeError("bye failed")
        state.set_values(f"{stage}.{name}", {"round": server_round})
        return RecordDict({"arrays": payload["arrays"],
                           "metrics": MetricRecord({"seen": float(len(state.names()))})})


def _run(tmp_path, *extra):
    CALLS.clear()
    here = "tests.fedplat.core.test_strategy"
    return run_inline(tmp_path, f"strategy._target_={here}.MultiExchangeFedAvg",
                      f"strategy.client_target={here}.MultiExchangeClient",
                      "num_rounds=2", "num_clients=3", "simulation.torch_threads=1",
                      "model=mlp", "model.hidden=[8]", *extra)


def test_exchanges_run_in_order_and_their_bytes_add_up(tmp_path):
    _, rows = _run(tmp_path)
    assert [c[:3] for c in CALLS] == [("train", "hello", 1), ("train", "", 1), ("train", "bye", 1),
                                      ("evaluate", "check", 1), ("train", "hello", 2),
                                      ("train", "", 2), ("train", "bye", 2),
                                      ("evaluate", "check", 2)]
    row = rows[0]
    assert row["train_hello_replies"] == 3 and row["train_bye_replies"] == 2
    assert row["evaluate_check_replies"] == 3
    assert row["num_train_clients"] == 3  # the main exchange's clients
    hello = payload_bytes(RecordDict({"arrays": ArrayRecord({"x": torch.zeros(10)})}))
    bye = payload_bytes(RecordDict({"arrays": ArrayRecord({"x": torch.zeros(3)})}))
    model = row["per_client"]["1"]["bytes_down_train"] - hello - bye
    assert model > 0  # the model went down in the main exchange
    assert row["per_client"]["0"]["bytes_down_train"] == hello + model  # no bye for client 0
    assert row["per_client"]["1"]["bytes_up_train"] == hello + model + bye
    assert row["bytes_down_train"] == sum(r["bytes_down_train"]
                                          for r in row["per_client"].values())
    assert "seen" not in row  # only the main exchange's metrics are aggregated


def test_an_exchange_every_client_fails_stops_the_run(tmp_path):
    with pytest.raises(RunAborted, match=r"all 2 clients failed in train \(bye\)"):
        _run(tmp_path, "+fail_bye=true")

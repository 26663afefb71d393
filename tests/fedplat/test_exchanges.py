"""Strategies with several exchanges per step (`Strategy.exchanges`, `Client.exchange`)."""

import pytest
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from clients.fedavg import FedAvgClient
from fedplat.errors import RunAborted
from fedplat.transport.wire import payload_bytes
from strategies.fedavg import FedAvg
from tests.helpers import run_inline

CALLS: list[tuple[str, str, int, tuple[int, ...]]] = []


class MultiExchangeFedAvg(FedAvg):
    """FedAvg with a `hello` exchange before training and a `bye` after it."""

    def exchanges(self, stage, rnd):
        return ("hello", "", "bye") if stage == "train" else ("", "check")

    def configure_exchange(self, stage, exchange, rnd, cids):
        CALLS.append((stage, exchange, rnd, tuple(cids)))
        size = 10 if exchange == "hello" else 3
        return {c: RecordDict({"arrays": ArrayRecord({"x": torch.zeros(size)})})
                for c in cids if not (exchange == "bye" and c == 0)}

    def aggregate_exchange(self, stage, exchange, rnd, replies, failures):
        return {f"{stage}_{exchange}_replies": float(len(replies))}

    def configure_train(self, rnd, cids):
        CALLS.append(("train", "", rnd, tuple(cids)))
        return super().configure_train(rnd, cids)


class MultiExchangeClient(FedAvgClient):
    """Answers the extra exchanges with what it received."""

    def exchange(self, stage, name, payload, state, rnd):
        if name == "bye" and self.cfg.get("fail_bye"):
            raise RuntimeError("bye failed")
        state.set_values(f"{stage}.{name}", {"round": rnd})
        return RecordDict({"arrays": payload["arrays"],
                           "metrics": MetricRecord({"seen": float(len(state.names()))})})


def _run(tmp_path, *extra):
    CALLS.clear()
    here = "tests.fedplat.test_exchanges"
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

"""Observers of the exchange: the round's ledger and the privacy capture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from flwr.app import RecordDict

from fedplat.core.records import to_record
from fedplat.core.stage import Stage
from fedplat.privacy.capture import SUBSET_KEY, MessageCapture, decode
from fedplat.transport import wire
from fedplat.transport.exchange import ExchangeEvent, ExchangeResult
from fedplat.transport.observers import CaptureObserver, Ledger
from tests.helpers import make_cfg


def _event(exchange: str = "", server_round: int = 2) -> ExchangeEvent:
    model = to_record({"w": torch.ones(3)})
    payloads = {c: RecordDict({"arrays": model}) for c in (0, 1, 2)}
    reply = RecordDict({"arrays": to_record({"w": torch.zeros(3)})})
    result = ExchangeResult(replies={0: reply}, failures={1: "ValueError: x",
                                                          2: "rejected reply: bad"},
                            rejected=[2], late=[], received={0: reply, 2: reply},
                            bytes_down={0: 10, 1: 10, 2: 10}, bytes_up={0: 7, 2: 7},
                            seconds=0.5, pack_seconds=0.1, node_compute_s=0.2)
    return ExchangeEvent(Stage.TRAIN, exchange, server_round, payloads,
                         {1: {SUBSET_KEY: 4}}, result)


def test_the_ledger_adds_up_every_exchange_of_a_stage() -> None:
    row: dict[str, Any] = {}
    ledger = Ledger()
    ledger.begin(row)
    ledger.observe(_event())
    ledger.observe(_event("extra"))
    assert row["failures_train"] == 4 and row["rejected_train"] == 2
    assert row["late_train"] == 0
    assert row["bytes_down_train"] == 60 and row["bytes_up_train"] == 28
    assert row["exchange_s_train"] == 1.0 and row["node_compute_s_train"] == 0.4
    assert row["per_client"]["1"] == {"bytes_down_train": 20, "bytes_up_train": 0,
                                      "failed_train": "extra: ValueError: x"}
    assert ledger.client_control(Stage.TRAIN, "", 2, 0) == {}


def test_the_capture_saves_exactly_what_crossed_for_the_chosen_clients(tmp_path: Path) -> None:
    cfg = make_cfg("num_rounds=3", "capture.round=2", "capture.clients=[1,2]",
                   "capture.num_samples=4")
    observer = CaptureObserver(MessageCapture(cfg, tmp_path))
    assert observer.client_control(Stage.TRAIN, "", 2, 1) == {SUBSET_KEY: 4}
    assert observer.client_control(Stage.TRAIN, "", 3, 1) == {}
    assert observer.client_control(Stage.TRAIN, "", 2, 0) == {}
    event = _event()
    observer.observe(event)
    root = tmp_path / "capture" / "round_2"
    assert sorted(p.name for p in root.iterdir()) == ["client_1", "client_2"]
    sent = decode((root / "client_1" / "train.down.pb").read_bytes())
    assert sent == wire.as_sent(event.payloads[1], 1, 2, "", {SUBSET_KEY: 4})
    meta = json.loads((root / "client_1" / "meta.json").read_text())
    assert meta["exchanges"][0]["failure"] == "ValueError: x"  # failed: nothing came back
    # a rejected reply still crossed the wire: it is kept as it arrived
    assert (root / "client_2" / "train.up.pb").is_file()


def test_the_ledger_records_where_each_client_ran_and_the_largest_peak() -> None:
    row: dict[str, Any] = {}
    ledger = Ledger()
    ledger.begin(row)
    event = _event()
    event.result.devices = {0: {"device": "cuda:0", "peak-mem": 300, "device-name": "GPU X"},
                            2: {"device": "cuda:0", "peak-mem": 500, "device-name": "GPU X"}}
    ledger.observe(event)
    evaluate = _event()
    evaluate.stage = Stage.EVALUATE
    evaluate.result.devices = {1: {"device": "cpu"}}
    ledger.observe(evaluate)
    assert row["devices"] == {"cpu": 1, "cuda:0": 2}  # distinct clients of the round
    assert row["peak_mem_bytes"] == 500 and row["gpu_name"] == "GPU X"
    assert [row["per_client"][c]["device"] for c in ("0", "1", "2")] == ["cuda:0", "cpu",
                                                                          "cuda:0"]
    cpu_only: dict[str, Any] = {}
    ledger.begin(cpu_only)
    event = _event()
    event.result.devices = {0: {"device": "cpu"}}
    ledger.observe(event)
    assert cpu_only["devices"] == {"cpu": 1}
    assert "peak_mem_bytes" not in cpu_only and "gpu_name" not in cpu_only

"""Observers of the exchange: what watches client work without taking part in the algorithm.

* `Ledger`: the counts a round's row carries per stage (failures, rejected and late replies,
  bytes down and up, exchange and packing time), per client (bytes, why it failed, whether it
  was late, the device it ran on) and where the round's clients ran (`devices`: clients per
  device; on CUDA `peak_mem_bytes`, the largest peak memory a client's handler allocated,
  and `gpu_name`).
* `CaptureObserver`: a privacy audit's message capture (`fedplat.privacy.capture.MessageCapture`),
  which saves chosen clients' messages exactly as they crossed and may ask a client to train on
  its attack batch.

Both plug into `fedplat.transport.exchange.Transport` through the `ExchangeObserver` protocol;
a new kind of instrumentation is a new observer, not a change of the round loop.
"""

from __future__ import annotations

from typing import Any

from fedplat.core.stage import MAIN, Stage
from fedplat.privacy.capture import MessageCapture
from fedplat.transport.exchange import ExchangeEvent


class Ledger:
    """Adds every exchange's counts to the current round's row (`begin` starts a round)."""

    def __init__(self) -> None:
        self.row: dict[str, Any] = {}

    def begin(self, row: dict[str, Any]) -> None:
        """Account the exchanges that follow in `row` (a metrics.jsonl row in the making)."""
        self.row = row

    def client_control(self, stage: Stage, exchange: str, server_round: int,
                       cid: int) -> dict[str, Any]:
        """No extra control: the ledger only watches."""
        return {}

    def observe(self, event: ExchangeEvent) -> None:
        """Add the exchange's totals per stage and its bytes and failures per client."""
        res, stage, row = event.result, event.stage, self.row
        for key, value in ((f"failures_{stage}", len(res.failures)),
                           (f"rejected_{stage}", len(res.rejected)),
                           (f"late_{stage}", len(res.late)),
                           (f"bytes_down_{stage}", sum(res.bytes_down.values())),
                           (f"bytes_up_{stage}", sum(res.bytes_up.values())),
                           (f"exchange_s_{stage}", res.seconds),
                           (f"pack_s_{stage}", res.pack_seconds)):
            row[key] = row.get(key, 0) + value
        if res.node_compute_s:
            key = f"node_compute_s_{stage}"
            row[key] = row.get(key, 0.0) + res.node_compute_s
        clients = row.setdefault("per_client", {})
        for cid in sorted(event.payloads):
            entry = clients.setdefault(str(cid), {})
            for key, table in ((f"bytes_down_{stage}", res.bytes_down),
                               (f"bytes_up_{stage}", res.bytes_up)):
                entry[key] = entry.get(key, 0) + table.get(cid, 0)
            if cid in res.failures:
                prefix = f"{event.exchange}: " if event.exchange != MAIN else ""
                entry[f"failed_{stage}"] = prefix + res.failures[cid]
            if cid in res.late:
                entry[f"late_{stage}"] = True
        self.note_devices(res.devices)

    def note_devices(self, devices: dict[int, dict[str, Any]]) -> None:
        """Where the clients of an exchange ran, into the row and its `per_client` entries."""
        if not devices:
            return
        row = self.row
        clients = row.setdefault("per_client", {})
        for cid, fact in sorted(devices.items()):
            device = str(fact.get("device", "unknown"))
            clients.setdefault(str(cid), {})["device"] = device
            peak = fact.get("peak-mem")
            if isinstance(peak, int):
                row["peak_mem_bytes"] = max(int(row.get("peak_mem_bytes", 0)), peak)
            if fact.get("device-name"):
                row["gpu_name"] = str(fact["device-name"])
        counts: dict[str, int] = {}
        for entry in clients.values():
            if "device" in entry:
                counts[entry["device"]] = counts.get(entry["device"], 0) + 1
        row["devices"] = dict(sorted(counts.items()))


class CaptureObserver:
    """A privacy audit's capture as an exchange observer (see `fedplat.privacy.capture`)."""

    def __init__(self, capture: MessageCapture) -> None:
        self.capture = capture

    def client_control(self, stage: Stage, exchange: str, server_round: int,
                       cid: int) -> dict[str, Any]:
        """The attack-batch size for a captured client's training messages."""
        return self.capture.control(server_round, str(stage), cid)

    def observe(self, event: ExchangeEvent) -> None:
        """Save the captured clients' messages of this exchange as they crossed."""
        res = event.result
        for cid in sorted(event.payloads):
            if self.capture.wants(event.server_round, str(event.stage), cid):
                failure = res.failures.get(cid) if cid not in res.received else None
                self.capture.save(event.server_round, str(event.stage), event.exchange, cid,
                                  event.as_sent(cid), res.received.get(cid), failure)

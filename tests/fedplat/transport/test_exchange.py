"""The server side of the transport: sorting, checking and observing one exchange."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import uuid4

import pytest
import torch
from flwr.app import Error, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from fedplat.core.records import to_record
from fedplat.core.stage import Stage
from fedplat.transport import wire
from fedplat.transport.exchange import ExchangeEvent, Transport, short_reason
from fedplat.transport.observers import Ledger


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Flower's Message constructor reads the task identity a running ServerApp sets."""
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 7
    TaskIdentity.node_id = SUPERLINK_NODE_ID


class EchoGrid:
    """Nodes 100 and 200 (clients 0-1 and 2); client 1 fails, node 200 answers with an error
    when `broken`; every other client echoes its payload with a metric."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.sent: list[Message] = []

    def get_node_ids(self) -> Iterable[int]:
        return [100, 200]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> list[Message]:
        replies = []
        for msg in messages:
            self.sent.append(msg)
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            if self.broken and msg.metadata.dst_node_id == 200:
                replies.append(Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                             reason="Traceback...\nValueError: node down"),
                                       reply_to=msg))
                continue
            batch = wire.decode_batch(msg.content)
            out = {c: RecordDict({"arrays": p["arrays"],
                                  "metrics": MetricRecord({"x": float(c)})})
                   for c, p in batch.payloads.items() if c != 1}
            errors = {1: "RuntimeError: client 1 broke"} if 1 in batch.payloads else {}
            content = wire.encode_replies(batch, out, errors, 0.25)
            replies.append(Message(content, reply_to=msg))
        return replies


class Recorder:
    def __init__(self) -> None:
        self.events: list[ExchangeEvent] = []

    def client_control(self, stage: Stage, exchange: str, server_round: int,
                       cid: int) -> dict[str, Any]:
        return {"flag": 1} if cid == 2 else {}

    def observe(self, event: ExchangeEvent) -> None:
        self.events.append(event)


def _transport(grid: EchoGrid, *observers: Any) -> Transport:
    transport = Transport(grid, observers=observers)  # type: ignore[arg-type]
    transport.node_of = {0: 100, 1: 100, 2: 200}
    transport.clients_of = {100: [0, 1], 200: [2]}
    return transport


def _payloads() -> dict[int, RecordDict]:
    model = to_record({"w": torch.ones(4)})
    return {c: RecordDict({"arrays": model}) for c in (0, 1, 2)}


def test_an_exchange_sorts_replies_failures_and_rejections_per_client() -> None:
    recorder, ledger, row = Recorder(), Ledger(), {}
    ledger.begin(row)
    grid = EchoGrid()
    transport = _transport(grid, recorder, ledger)

    def check(cid: int, content: RecordDict) -> str | None:
        return "too shiny" if cid == 2 else None

    res = transport.exchange(Stage.TRAIN, "", 3, _payloads(), check)
    assert sorted(res.replies) == [0]
    assert res.failures == {1: "RuntimeError: client 1 broke", 2: "rejected reply: too shiny"}
    assert res.rejected == [2] and res.late == [] and sorted(res.received) == [0, 2]
    # one message per node; the lone client of node 200 got the plain format with its control
    assert [wire.is_packed(m.content) for m in grid.sent] == [True, False]
    assert grid.sent[1].content["fedplat"]["flag"] == 1
    assert res.bytes_down[0] + res.bytes_down[1] == wire.payload_bytes(grid.sent[0].content)
    assert res.node_compute_s == 0.25
    (event,) = recorder.events
    assert event.as_sent(2) == grid.sent[1].content
    assert row["failures_train"] == 2 and row["rejected_train"] == 1 and row["late_train"] == 0
    assert row["bytes_up_train"] == res.bytes_up[0] + res.bytes_up[2]
    assert row["per_client"]["1"]["failed_train"] == "RuntimeError: client 1 broke"
    assert row["per_client"]["0"]["bytes_down_train"] == res.bytes_down[0]


def test_a_node_error_fails_every_client_it_serves() -> None:
    res = _transport(EchoGrid(broken=True)).exchange(Stage.EVALUATE, "", 1, _payloads(),
                                                      lambda cid, content: None)
    assert res.failures[2] == "ValueError: node down"
    assert sorted(res.replies) == [0] and res.late == []


def test_a_client_without_reply_is_late() -> None:
    class Silent(EchoGrid):
        def send_and_receive(self, messages: Iterable[Message], *,
                             timeout: float | None = None) -> list[Message]:
            return super().send_and_receive([m for m in messages
                                             if m.metadata.dst_node_id == 100])

    row: dict[str, Any] = {}
    ledger = Ledger()
    ledger.begin(row)
    res = _transport(Silent(), ledger).exchange(Stage.TRAIN, "embed", 1, _payloads(),
                                                lambda cid, content: None)
    assert res.late == [2] and row["late_train"] == 1
    assert row["per_client"]["1"]["failed_train"] == "embed: RuntimeError: client 1 broke"


def test_short_reason_extracts_the_exception_line():
    reason = ("<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'\x1b[36mray::"
              "ClientAppActor.run()\x1b[39m (pid=5535)\n  File \"/x/fedplat/app.py\", line 71,"
              " in maybe_crash\n    raise InjectedFault(f\"injected crash\")\n"
              "fedplat.app.InjectedFault: injected crash of client 3 (faults.crash_clients)\n\n"
              "The above exception was the direct cause of the following exception:\n\n"
              "  File \"/x/ray_actor.py\", line 65, in run\n    raise ClientAppException(str(ex))"
              " from ex\nflwr.clientapp.client_app.ClientAppException: \nException "
              "ClientAppException occurred. Message: injected crash of client 3'>")
    assert short_reason(reason) == ("fedplat.app.InjectedFault: injected crash of client 3 "
                                    "(faults.crash_clients)")
    inline = "<class 'fedplat.app.InjectedFault'>:<'injected crash'>\nTraceback...\n" \
             "fedplat.app.InjectedFault: injected crash"
    assert short_reason(inline) == "fedplat.app.InjectedFault: injected crash"
    assert short_reason("plain text") == "plain text"


class TimedGrid(EchoGrid):
    """Records the wire timeout of each send; node 200 never answers the set-up."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> list[Message]:
        self.timeouts.append(timeout)
        return super().send_and_receive(messages, timeout=timeout)


def test_the_set_up_waits_node_wait_s_and_says_which_nodes_did_not_answer() -> None:
    from fedplat.errors import RunAborted

    class SilentSetup(TimedGrid):
        def send_and_receive(self, messages: Iterable[Message], *,
                             timeout: float | None = None) -> list[Message]:
            self.timeouts.append(timeout)
            out = []
            for msg in messages:
                if msg.metadata.dst_node_id == 100:
                    info = {"partition-id": 0, "num-train": 5, "num-val": 1, "num-test": 1,
                            "label-counts": [5]}
                    from flwr.app import ConfigRecord

                    out.append(Message(RecordDict({"info-0": ConfigRecord(info)}),
                                       reply_to=msg))
            return out

    grid = SilentSetup()
    transport = Transport(grid, timeout=5.0)
    with pytest.raises(RunAborted) as err:
        transport.connect("{}", 2, 2, node_wait_s=30.0)
    assert grid.timeouts == [30.0]  # node_wait_s, not the round's timeout
    text = str(err.value)
    assert "1 of 2 nodes did not answer the set-up handshake within " \
           "simulation.node_wait_s=30 s (node ids 200)" in text
    assert "raise simulation.node_wait_s" in text and "partition-id" not in text


def test_the_wire_deadline_is_round_timeout_on_devices_and_a_net_in_simulation() -> None:
    device = Transport(TimedGrid(), timeout=2.0)
    assert not device.simulated and device.wire_timeout(3) == 2.0
    simulated = Transport(TimedGrid(), timeout=2.0, simulated=True)
    assert simulated.wire_timeout(3) == 8.0  # every client's whole budget, one after another
    assert Transport(TimedGrid(), simulated=True).wire_timeout(3) is None


def test_a_client_its_node_reports_late_is_late_and_nothing_else() -> None:
    class LateGrid(EchoGrid):
        def send_and_receive(self, messages: Iterable[Message], *,
                             timeout: float | None = None) -> list[Message]:
            replies = []
            for msg in messages:
                msg.metadata.__dict__["_message_id"] = str(uuid4())
                batch = wire.decode_batch(msg.content)
                out = {c: RecordDict({"arrays": p["arrays"]})
                       for c, p in batch.payloads.items() if c not in (0, 2)}
                late = {c: t for c, t in {0: 3.5, 2: 4.0}.items() if c in batch.payloads}
                content = wire.encode_replies(batch, out, {}, 0.1, None, late)
                replies.append(Message(content, reply_to=msg))
            return replies

    res = _transport(LateGrid()).exchange(Stage.TRAIN, "", 1, _payloads(),
                                          lambda cid, content: None)
    assert res.late == [0, 2] and res.late_s == {0: 3.5, 2: 4.0}
    assert sorted(res.replies) == [1] and res.failures == {}

"""The server side of the transport: client ids in, per-client replies out.

The round loop (`fedplat.server`) and the strategies reason about clients; this module is the
one place that knows about Flower nodes and messages:

1. `connect`: every node receives the resolved config in a set-up query and answers with the
   ids and data sizes of the clients it serves. Node ids are random per run and never used as
   keys beyond this mapping. The set-up waits up to `simulation.node_wait_s` (loading data
   and starting workers is not a round's work); `simulation.round_timeout` bounds replies to
   rounds only.
2. `exchange`: one round trip of a stage. The payloads of a node's clients travel in one
   message (`fedplat.transport.wire`), the replies are sorted per client into replies,
   failures and late clients, each reply passes the given check (a rejected reply counts as
   that client's failure), and the observers see the exchange as it happened (privacy
   capture, byte and failure accounting).
3. `save_client_states`: every node saves its clients' private state for a checkpoint.

What "late" means. A client is late when its own time in an exchange passes
`simulation.round_timeout`; its node judges that per client and reports the client late
(`fedplat.transport.node.run_clients`), so a client is late or not whichever clients share its
node and message and however the backend queues messages.

* In simulation (Flower's Simulation Engine or the inline backend) a client's own time is its
  injected delay (`faults.slow_*`, seeded): the simulated device is slow by that much, and the
  load of the machine that simulates it does not decide which clients are late. The nodes'
  messages share workers and a node runs its clients one after the other, so the wire
  deadline is only a safety net against a client that never answers: (clients of the
  exchange + 1) x `round_timeout` (`wire_timeout`).
* On real devices (one client per SuperNode, nodes in parallel) the node measures the wall
  time of the client's handler (plus any injected delay), and the server stops waiting for a
  reply at `round_timeout` on the wire: a client with no reply by then is late too.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedplat.core.records import CONTROL, scalar
from fedplat.core.stage import Stage
from fedplat.core.strategy import ClientInfo
from fedplat.errors import RunAborted
from fedplat.transport import wire

log = logging.getLogger("fedplat")

#: A reply check: why client `cid`'s reply must not be used, or None to accept it.
ReplyCheck = Callable[[int, RecordDict], "str | None"]


@dataclass
class ExchangeResult:
    """Outcome of sending one payload per client and collecting the answers."""

    #: Accepted replies (received and passed the check).
    replies: dict[int, RecordDict] = field(default_factory=dict)
    #: Why each failed client failed (errors, rejected replies).
    failures: dict[int, str] = field(default_factory=dict)
    #: Clients whose reply was received but rejected by the check (also in `failures`).
    rejected: list[int] = field(default_factory=list)
    #: Late clients: over `round_timeout` by their own time, or no reply on the wire in time.
    late: list[int] = field(default_factory=list)
    #: The own time in seconds of each client its node reported late.
    late_s: dict[int, float] = field(default_factory=dict)
    #: Every reply as it arrived, rejected ones included.
    received: dict[int, RecordDict] = field(default_factory=dict)
    bytes_down: dict[int, int] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    pack_seconds: float = 0.0
    node_compute_s: float = 0.0  # slowest node's handler time (packed replies)
    #: Where each client that replied ran (`fedplat.transport.wire.Replies.devices`).
    devices: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ExchangeEvent:
    """One finished exchange, as observers see it."""

    stage: Stage
    exchange: str
    server_round: int
    payloads: Mapping[int, RecordDict]
    controls: Mapping[int, Mapping[str, Any]]
    result: ExchangeResult

    def as_sent(self, cid: int) -> RecordDict:
        """The plain message client `cid` received (whichever format carried it)."""
        return wire.as_sent(self.payloads[cid], cid, self.server_round, self.exchange,
                            self.controls.get(cid))

    @property
    def what(self) -> str:
        """`train` or `train (embed)`: the exchange in log lines and failure reasons."""
        return f"{self.stage} ({self.exchange})" if self.exchange else str(self.stage)


class ExchangeObserver(Protocol):
    """Something that watches exchanges without taking part in the algorithm.

    `client_control` may add control entries to a client's message (e.g. a privacy audit
    asking the client to train on its attack batch); `observe` sees every finished exchange.
    """

    def client_control(self, stage: Stage, exchange: str, server_round: int,
                       cid: int) -> dict[str, Any]:
        """Extra control entries for client `cid`'s message ({} for none)."""
        ...

    def observe(self, event: ExchangeEvent) -> None:
        """Called once per exchange, after its replies were sorted and checked."""
        ...


#: `pkg.mod.SomeError: message` (a dotted name whose last part is CamelCase, then a colon).
_EXC_LINE = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Z]\w*):(?: (.*))?$")


def short_reason(reason: str) -> str:
    """The last `SomeError: message` line of a Flower error reason (which embeds tracebacks)."""
    text = reason.replace("\\n", "\n")
    hits = [m for m in (_EXC_LINE.match(line) for line in text.splitlines()) if m]
    hits = [m for m in hits if "ClientAppException" not in m.group(1)
            and "RayTaskError" not in m.group(1)] or hits
    if hits:
        line = hits[-1].group(0).strip()
    else:
        line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.rstrip("'>\" ")
    return line[:300]


def is_simulated(grid: Grid) -> bool:
    """Whether `grid`'s nodes are simulated (Simulation Engine or inline), not real devices."""
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    from fedplat.runtime.inline import InlineGrid

    return isinstance(grid, InMemoryGrid | InlineGrid)


class Transport:
    """Client work over a Flower `Grid`: set-up, exchanges and checkpoint requests.

    `timeout` is `simulation.round_timeout` (each client's deadline in an exchange);
    `simulated` (detected from the grid when None) chooses the wire deadline (`wire_timeout`).
    """

    def __init__(self, grid: Grid, *, timeout: float | None = None,
                 poll_interval_s: float | None = None,
                 observers: Sequence[ExchangeObserver] = (),
                 simulated: bool | None = None) -> None:
        self.grid = grid
        self.timeout = timeout
        self.simulated = is_simulated(grid) if simulated is None else simulated
        #: Seconds the set-up and checkpoint queries wait (`connect` sets node_wait_s).
        self.setup_timeout: float | None = None
        self.observers = list(observers)
        self.node_of: dict[int, int] = {}
        self.clients_of: dict[int, list[int]] = {}
        if poll_interval_s is not None and hasattr(grid, "pull_interval"):
            # Flower's in-memory grid sleeps 0.1 s between polls for replies: with grouped
            # clients a round is a couple of exchanges, and that sleep would dominate it.
            grid.pull_interval = float(poll_interval_s)

    # -- set-up ---------------------------------------------------------------------------------

    def _wait_for_nodes(self, expected: int, deadline_s: float) -> list[int]:
        start = time.monotonic()
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= expected:
                return nodes
            if time.monotonic() - start > deadline_s:
                raise RunAborted(f"only {len(nodes)} of {expected} nodes connected within "
                                 f"{deadline_s:.0f} s; start more SuperNodes or lower "
                                 "num_clients")
            time.sleep(0.05)

    def connect(self, config_json: str, num_clients: int, num_nodes: int,
                node_wait_s: float, resume_dir: Path | None = None) -> dict[int, ClientInfo]:
        """Send the config to every node; learn which clients each serves and their sizes.

        With `resume_dir`, clients also restore their private state from that checkpoint.
        """
        nodes = self._wait_for_nodes(num_nodes, node_wait_s)
        self.setup_timeout = node_wait_s
        control = ConfigRecord({"stage": "setup", "config": config_json,
                                "resume-dir": str(resume_dir or ""),
                                "simulated": self.simulated})
        msgs = [Message(RecordDict({CONTROL: control}),
                        dst_node_id=n, message_type=MessageType.QUERY) for n in nodes]
        infos: dict[int, ClientInfo] = {}
        answered: set[int] = set()
        for rep in self.grid.send_and_receive(msgs, timeout=node_wait_s):
            node = rep.metadata.src_node_id
            answered.add(node)
            if rep.has_error():
                raise RunAborted(f"node {node} could not set up: "
                                 f"{short_reason(rep.error.reason or '')}")
            served = [rec for key, rec in sorted(rep.content.items()) if key.startswith("info")]
            for info in served:
                assert isinstance(info, ConfigRecord)
                cid = int(scalar(info["partition-id"]))
                if cid in infos:
                    raise RunAborted(f"two nodes report client id {cid}; give every SuperNode "
                                     "its own --node-config partition-id")
                self.node_of[cid] = node
                self.clients_of.setdefault(node, []).append(cid)
                counts = info["label-counts"]
                assert isinstance(counts, list)
                infos[cid] = ClientInfo(cid, int(scalar(info["num-train"])),
                                        int(scalar(info["num-val"])),
                                        int(scalar(info["num-test"])), [int(c) for c in counts])
        silent = [n for n in nodes if n not in answered]
        if silent:
            shown = ", ".join(str(n) for n in silent[:5]) + (" ..." if len(silent) > 5 else "")
            raise RunAborted(
                f"set-up did not finish: {len(silent)} of {len(nodes)} nodes did not answer the "
                f"set-up handshake within simulation.node_wait_s={node_wait_s:g} s (node ids "
                f"{shown}); loading data or starting workers takes longer than that: raise "
                "simulation.node_wait_s (simulation.round_timeout bounds rounds only)")
        if sorted(infos) != list(range(num_clients)):
            raise RunAborted(f"clients report ids {sorted(infos)}, expected "
                             f"0..{num_clients - 1}; check each node's partition-id and "
                             "num_clients")
        return infos

    # -- one exchange ---------------------------------------------------------------------------

    def wire_timeout(self, num_clients: int) -> float | None:
        """Seconds the server waits for the replies of an exchange with `num_clients` clients.

        Real devices: `round_timeout` itself. Simulation: a safety net of (num_clients + 1) x
        `round_timeout`, enough for every client of the exchange to use its whole budget one
        after the other (the node judges lateness per client, `fedplat.transport.node`).
        """
        if self.timeout is None or not self.simulated:
            return self.timeout
        return self.timeout * (num_clients + 1)

    def exchange(self, stage: Stage, exchange: str, server_round: int,
                 payloads: Mapping[int, RecordDict], check: ReplyCheck) -> ExchangeResult:
        """Send each client its payload; collect, sort and check the replies."""
        res = ExchangeResult()
        by_node: dict[int, list[int]] = {}
        for cid in sorted(payloads):
            by_node.setdefault(self.node_of[cid], []).append(cid)
        controls: dict[int, dict[str, Any]] = {}
        for cid in sorted(payloads):
            extra: dict[str, Any] = {}
            for observer in self.observers:
                extra.update(observer.client_control(stage, exchange, server_round, cid))
            if extra:
                controls[cid] = extra
        msgs = []
        sent_to: dict[int, list[int]] = {}
        t_pack = time.perf_counter()
        for node, cids in sorted(by_node.items()):
            content, shares = wire.encode_batch(
                {c: payloads[c] for c in cids}, server_round, exchange,
                {c: controls[c] for c in cids if c in controls})
            res.bytes_down.update(shares)
            msgs.append(Message(content, dst_node_id=node, message_type=str(stage)))
            sent_to[node] = cids
        res.pack_seconds = time.perf_counter() - t_pack
        t0 = time.perf_counter()
        replies = self.grid.send_and_receive(msgs, timeout=self.wire_timeout(len(payloads)))
        res.seconds = time.perf_counter() - t0
        for rep in replies:
            cids = sent_to[rep.metadata.src_node_id]
            if rep.has_error():
                for cid in cids:
                    res.failures[cid] = short_reason(rep.error.reason or "")
                continue
            decoded = wire.decode_replies(rep.content, cids)
            res.node_compute_s = max(res.node_compute_s, decoded.compute_s)
            res.devices.update(decoded.devices)
            res.late_s.update(decoded.late)
            for cid, why in decoded.errors.items():
                res.failures[cid] = short_reason(why)
            for cid, content in decoded.contents.items():
                res.received[cid] = content
                res.bytes_up[cid] = wire.payload_bytes(content)
        res.late = sorted(set(payloads) - set(res.received) - set(res.failures))
        event = ExchangeEvent(stage, exchange, server_round, payloads, controls, res)
        for cid, why in sorted(res.failures.items()):
            log.warning("round %d: client %d failed in %s: %s", server_round, cid, event.what,
                        why)
        if res.late:
            log.warning("round %d: clients %s were late in %s (over simulation.round_timeout="
                        "%g s); their replies are not used", server_round, res.late,
                        event.what, self.timeout or 0.0)
        for cid in sorted(res.received):
            problem = check(cid, res.received[cid])
            if problem is None:
                res.replies[cid] = res.received[cid]
                continue
            res.failures[cid] = f"rejected reply: {problem}"
            res.rejected.append(cid)
            log.warning("round %d: rejected the %s reply of client %d: %s", server_round,
                        event.what, cid, problem)
        for observer in self.observers:
            observer.observe(event)
        return res

    # -- checkpoints ----------------------------------------------------------------------------

    def save_client_states(self, directory: Path) -> str | None:
        """Ask every node to save its clients' private state; None on success, else why not."""
        msgs = [Message(RecordDict({CONTROL: ConfigRecord({"stage": "checkpoint",
                                                           "dir": str(directory)})}),
                        dst_node_id=n, message_type=MessageType.QUERY)
                for n in sorted(self.clients_of)]
        replies = list(self.grid.send_and_receive(msgs, timeout=self.setup_timeout))
        bad = [short_reason(r.error.reason or "") for r in replies if r.has_error()]
        if bad or len(replies) < len(msgs):
            return (f"{len(replies) - len(bad)} of {len(msgs)} nodes saved their clients' "
                    f"state" + (f"; {bad[0]}" if bad else ""))
        return None


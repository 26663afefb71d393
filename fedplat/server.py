"""The generic server loop: Flower nodes on one side, a client-centric Strategy on the other.

1. Set-up exchange (a QUERY message per node): every node receives the resolved config and
   answers with its client id (`partition-id` from its node config) and data sizes. Node ids are
   random per run and never used as keys beyond this mapping.
2. Each round: the strategy picks clients and builds one payload per client; the server wraps
   each in a Message for the node serving that client, waits for the replies (up to
   `simulation.round_timeout`), sorts them into replies / failures / late by client id, lets
   the strategy aggregate, aggregates the clients' metrics, and records the round.
3. A round in which every client failed stops the run with `RunAborted`; what was recorded so
   far stays on disk.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from omegaconf import DictConfig

from fedplat.capture import MessageCapture
from fedplat.config import import_object, to_json
from fedplat.errors import RunAborted
from fedplat.records import CONTROL, metrics_of, payload_bytes, with_control
from fedplat.results import RunRecorder
from fedplat.strategy import ClientInfo, Strategy

log = logging.getLogger("fedplat")

#: Keys of a round's row written by the server; strategy metrics may not reuse them.
COUNT_KEYS = ("num-examples", "num-val-examples")


@dataclass
class Exchange:
    """Outcome of sending one payload per client and collecting the answers."""

    replies: dict[int, RecordDict] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    late: list[int] = field(default_factory=list)
    bytes_down: dict[int, int] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


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


def aggregate_metrics(per_client: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """Pooled (sample-weighted) and `_mean` (unweighted over clients) of every metric.

    `val_*` metrics are weighted by `num-val-examples`, all others by `num-examples`.
    """
    out: dict[str, float] = {}
    keys = sorted({k for m in per_client.values() for k in m if k not in COUNT_KEYS})
    for key in keys:
        weight_key = "num-val-examples" if key.startswith("val_") else "num-examples"
        vals = [(m[key], float(m.get(weight_key, 1.0))) for _, m in sorted(per_client.items())
                if key in m and m[key] == m[key]]  # skip NaN
        if not vals:
            continue
        total = sum(w for _, w in vals)
        out[key] = sum(v * w for v, w in vals) / total if total > 0 else float("nan")
        out[f"{key}_mean"] = sum(v for v, _ in vals) / len(vals)
    return out


class Server:
    """Drives one run: set-up exchange, rounds, recording."""

    def __init__(self, grid: Grid, cfg: DictConfig, recorder: RunRecorder) -> None:
        self.grid = grid
        self.cfg = cfg
        self.recorder = recorder
        self.node_of: dict[int, int] = {}
        self.cid_of: dict[int, int] = {}
        self.strategy: Strategy | None = None
        self.capture = MessageCapture(cfg, recorder.run_dir)
        timeout = cfg.simulation.get("round_timeout")
        self.timeout: float | None = float(timeout) if timeout is not None else None

    # -- set-up ---------------------------------------------------------------------------------

    def _wait_for_nodes(self, expected: int, deadline_s: float) -> list[int]:
        start = time.monotonic()
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= expected:
                return nodes
            if time.monotonic() - start > deadline_s:
                raise RunAborted(f"only {len(nodes)} of {expected} clients connected within "
                                 f"{deadline_s:.0f} s; start more SuperNodes or lower "
                                 "num_clients")
            time.sleep(0.05)

    def handshake(self) -> dict[int, ClientInfo]:
        """Send the config to every node; learn client ids and data sizes."""
        expected = int(self.cfg.num_clients)
        nodes = self._wait_for_nodes(expected, float(self.cfg.simulation.get("node_wait_s",
                                                                             120.0)))
        config_json = to_json(self.cfg)
        msgs = [Message(RecordDict({CONTROL: ConfigRecord({"stage": "setup",
                                                           "config": config_json})}),
                        dst_node_id=n, message_type=MessageType.QUERY) for n in nodes]
        infos: dict[int, ClientInfo] = {}
        for rep in self.grid.send_and_receive(msgs, timeout=self.timeout):
            node = rep.metadata.src_node_id
            if rep.has_error():
                raise RunAborted(f"node {node} could not set up: "
                                 f"{short_reason(rep.error.reason)}")
            info = rep.content["info"]
            cid = int(info["partition-id"])
            if cid in infos:
                raise RunAborted(f"two nodes report client id {cid}; give every SuperNode its "
                                 "own --node-config partition-id")
            self.node_of[cid], self.cid_of[node] = node, cid
            infos[cid] = ClientInfo(cid, int(info["num-train"]), int(info["num-val"]),
                                    int(info["num-test"]), list(info["label-counts"]))
        if sorted(infos) != list(range(expected)):
            raise RunAborted(f"clients report ids {sorted(infos)}, expected 0..{expected - 1}; "
                             "check each node's partition-id and num_clients")
        return infos

    # -- one exchange ---------------------------------------------------------------------------

    def exchange(self, payloads: Mapping[int, RecordDict], message_type: str,
                 rnd: int, phase: str = "") -> Exchange:
        """Send each client its payload; collect replies, failures and late clients."""
        ex = Exchange()
        msgs = []
        extra = {"phase": phase} if phase else {}
        sent: dict[int, RecordDict] = {}
        for cid in sorted(payloads):
            content = with_control(payloads[cid], cid=cid, round=rnd, **extra,
                                   **self.capture.control(rnd, message_type, cid))
            sent[cid] = content
            ex.bytes_down[cid] = payload_bytes(content)
            msgs.append(Message(content, dst_node_id=self.node_of[cid],
                                message_type=message_type))
        t0 = time.perf_counter()
        replies = self.grid.send_and_receive(msgs, timeout=self.timeout)
        ex.seconds = time.perf_counter() - t0
        for rep in replies:
            cid = self.cid_of[rep.metadata.src_node_id]
            if rep.has_error():
                ex.failures[cid] = short_reason(rep.error.reason)
            else:
                ex.replies[cid] = rep.content
                ex.bytes_up[cid] = payload_bytes(rep.content)
        ex.late = sorted(set(payloads) - set(ex.replies) - set(ex.failures))
        for cid in sorted(payloads):  # privacy audits: the real messages, as they crossed
            if self.capture.wants(rnd, message_type, cid):
                self.capture.save(rnd, message_type, phase, cid, sent[cid],
                                  ex.replies.get(cid), ex.failures.get(cid))
        what = f"{message_type} ({phase})" if phase else message_type
        for cid, why in sorted(ex.failures.items()):
            log.warning("round %d: client %d failed in %s: %s", rnd, cid, what, why)
        if ex.late:
            log.warning("round %d: no %s reply within %.1f s from clients %s", rnd,
                        what, self.timeout or 0.0, ex.late)
        return ex

    # -- the run --------------------------------------------------------------------------------

    def _step(self, strategy: Strategy, stage: str, rnd: int, cids: list[int],
              row: dict[str, Any]) -> dict[str, float]:
        """Every exchange of one train or evaluate step (`strategy.phases`), aggregated."""
        extra: dict[str, float] = {}
        for phase in strategy.phases(stage, rnd):
            if phase:
                payloads = strategy.configure_phase(stage, phase, rnd, cids)
            elif stage == MessageType.TRAIN:
                payloads = strategy.configure_train(rnd, cids)
            else:
                payloads = strategy.configure_evaluate(rnd, cids)
            ex = self._stage(stage, rnd, payloads, row, phase)
            if phase:
                extra.update(strategy.aggregate_phase(stage, phase, rnd, ex.replies,
                                                      ex.failures))
            elif stage == MessageType.TRAIN:
                extra.update(strategy.aggregate_train(rnd, ex.replies, ex.failures))
            else:
                extra.update(strategy.aggregate_evaluate(rnd, ex.replies, ex.failures))
        return extra

    def _stage(self, stage: str, rnd: int, payloads: Mapping[int, RecordDict],
               row: dict[str, Any], phase: str = "") -> Exchange:
        """One exchange.

        The main exchange's metrics go into `row`; every exchange's failures, late clients
        and bytes are added up per stage and per client.
        """
        ex = self.exchange(payloads, stage, rnd, phase)
        per_client = {cid: metrics_of(rd) for cid, rd in ex.replies.items()}
        if not phase:
            row.update(aggregate_metrics(per_client))
            row[f"num_{stage}_clients"] = len(payloads)
        for key, value in ((f"failures_{stage}", len(ex.failures)),
                           (f"late_{stage}", len(ex.late)),
                           (f"bytes_down_{stage}", sum(ex.bytes_down.values())),
                           (f"bytes_up_{stage}", sum(ex.bytes_up.values()))):
            row[key] = row.get(key, 0) + value
        clients = row.setdefault("per_client", {})
        for cid in sorted(payloads):
            entry = clients.setdefault(str(cid), {})
            if not phase:
                for key, value in per_client.get(cid, {}).items():
                    # counts differ per stage (train vs test samples): keep both
                    entry[f"{key}_{stage}" if key in COUNT_KEYS else key] = value
            for key, table in ((f"bytes_down_{stage}", ex.bytes_down),
                               (f"bytes_up_{stage}", ex.bytes_up)):
                entry[key] = entry.get(key, 0) + table.get(cid, 0)
            if cid in ex.failures:
                entry[f"failed_{stage}"] = (f"{phase}: " if phase else "") + ex.failures[cid]
        if not ex.replies:
            first = next(iter(sorted(ex.failures.items())), None)
            why = f"; first failure: client {first[0]}: {first[1]}" if first else \
                " (no reply before simulation.round_timeout)"
            what = f"{stage} ({phase})" if phase else stage
            self._record(row)
            raise RunAborted(f"round {rnd}: all {len(payloads)} clients failed in {what}{why}")
        return ex

    def _record(self, row: dict[str, Any]) -> None:
        row["wall_time_s"] = self.recorder.wall_time_s
        self.recorder.log_round(row)

    def run(self) -> Strategy:
        """Set up, then run `num_rounds` rounds; return the strategy (for its summary)."""
        cfg = self.cfg
        clients = self.handshake()
        self.recorder.log_clients(
            [clients[c].label_counts for c in sorted(clients)],
            {"num_train": [clients[c].num_train for c in sorted(clients)],
             "num_val": [clients[c].num_val for c in sorted(clients)],
             "num_test": [clients[c].num_test for c in sorted(clients)]})
        strategy_cls = import_object(cfg.strategy._target_, "strategy._target_")
        strategy: Strategy = strategy_cls(cfg)
        strategy.setup(clients)
        self.strategy = strategy
        num_rounds, every = int(cfg.num_rounds), int(cfg.eval_every)
        for rnd in range(1, num_rounds + 1):
            self.recorder.round_started()
            t0 = time.perf_counter()
            row: dict[str, Any] = {"round": rnd}
            extra = self._step(strategy, MessageType.TRAIN, rnd, strategy.sample_train(rnd), row)
            self.capture.check(rnd)
            if rnd % every == 0 or rnd == num_rounds:
                extra = {**extra, **self._step(strategy, MessageType.EVALUATE, rnd,
                                               strategy.sample_evaluate(rnd), row)}
            clash = set(extra) & set(row)
            if clash:
                raise RuntimeError(f"strategy metrics {sorted(clash)} clash with server keys")
            row.update(extra)
            row["round_time_s"] = time.perf_counter() - t0
            self._record(row)
            log.info("%s", progress_line(row, num_rounds))
        return strategy


def progress_line(row: Mapping[str, Any], num_rounds: int) -> str:
    """`round  3/30  train_loss 0.5321  test_acc 0.8123  clients 10/10  1.23 s`."""
    parts = [f"round {row['round']:>{len(str(num_rounds))}}/{num_rounds}"]
    for key, label in (("train_loss", "train_loss"), ("test_loss", "test_loss"),
                       ("test_accuracy", "test_acc"), ("test_accuracy_mean", "client_mean")):
        if isinstance(row.get(key), int | float):
            parts.append(f"{label} {row[key]:.4f}")
    n = row.get("num_train_clients", 0)
    ok = n - row.get("failures_train", 0) - row.get("late_train", 0)
    parts.append(f"clients {ok}/{n}")
    parts.append(f"{row.get('round_time_s', 0.0):.2f} s")
    return "  ".join(parts)


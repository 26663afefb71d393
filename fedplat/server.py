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
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from omegaconf import DictConfig

from fedplat import checkpoint, faults, groups, records
from fedplat.config import import_object, to_json
from fedplat.errors import RunAborted
from fedplat.privacy.capture import MessageCapture
from fedplat.records import CONTROL, metrics_of, payload_bytes, with_control
from fedplat.results import RunRecorder
from fedplat.strategy import ClientInfo, Strategy

log = logging.getLogger("fedplat")

#: Keys of a round's row written by the server; strategy metrics may not reuse them.
COUNT_KEYS = ("num-examples", "num-val-examples", "num-test-examples")


@dataclass
class Exchange:
    """Outcome of sending one payload per client and collecting the answers."""

    replies: dict[int, RecordDict] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    late: list[int] = field(default_factory=list)
    bytes_down: dict[int, int] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    pack_seconds: float = 0.0
    node_compute_s: float = 0.0  # slowest node's handler time (group replies)


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

    `val_*` metrics are weighted by `num-val-examples`; `test_*` metrics by `num-test-examples`
    when a client reports it (test results sent with a train reply, whose `num-examples` is the
    training count), else by `num-examples`; all others by `num-examples`.
    """
    out: dict[str, float] = {}
    keys = sorted({k for m in per_client.values() for k in m if k not in COUNT_KEYS})
    for key in keys:
        def weight_of(m: Mapping[str, float], key: str = key) -> float:
            if key.startswith("val_"):
                return float(m.get("num-val-examples", 1.0))
            if key.startswith("test_") and "num-test-examples" in m:
                return float(m["num-test-examples"])
            return float(m.get("num-examples", 1.0))

        vals = [(m[key], weight_of(m)) for _, m in sorted(per_client.items())
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
        self.clients_of: dict[int, list[int]] = {}
        self.strategy: Strategy | None = None
        poll = cfg.simulation.get("poll_interval_s")
        if poll is not None and hasattr(grid, "pull_interval"):
            # Flower's in-memory grid sleeps 0.1 s between polls for replies: with grouped
            # clients a round is a couple of exchanges, and that sleep would dominate it.
            grid.pull_interval = float(poll)
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
                raise RunAborted(f"only {len(nodes)} of {expected} nodes connected within "
                                 f"{deadline_s:.0f} s; start more SuperNodes or lower "
                                 "num_clients")
            time.sleep(0.05)

    def handshake(self, resume_dir: Path | None = None) -> dict[int, ClientInfo]:
        """Send the config to every node; learn client ids and data sizes.

        With `resume_dir`, clients also restore their private state from that checkpoint.
        """
        expected = int(self.cfg.num_clients)
        nodes = self._wait_for_nodes(groups.num_nodes(self.cfg),
                                     float(self.cfg.simulation.get("node_wait_s", 120.0)))
        control = {"stage": "setup", "config": to_json(self.cfg),
                   "resume-dir": str(resume_dir or "")}
        msgs = [Message(RecordDict({CONTROL: ConfigRecord(control)}),
                        dst_node_id=n, message_type=MessageType.QUERY) for n in nodes]
        infos: dict[int, ClientInfo] = {}
        for rep in self.grid.send_and_receive(msgs, timeout=self.timeout):
            node = rep.metadata.src_node_id
            if rep.has_error():
                raise RunAborted(f"node {node} could not set up: "
                                 f"{short_reason(rep.error.reason)}")
            served = [rec for key, rec in sorted(rep.content.items()) if key.startswith("info")]
            for info in served:
                assert isinstance(info, ConfigRecord)
                cid = int(info["partition-id"])
                if cid in infos:
                    raise RunAborted(f"two nodes report client id {cid}; give every SuperNode "
                                     "its own --node-config partition-id")
                self.node_of[cid] = node
                self.clients_of.setdefault(node, []).append(cid)
                infos[cid] = ClientInfo(cid, int(info["num-train"]), int(info["num-val"]),
                                        int(info["num-test"]), list(info["label-counts"]))
        if sorted(infos) != list(range(expected)):
            raise RunAborted(f"clients report ids {sorted(infos)}, expected 0..{expected - 1}; "
                             "check each node's partition-id and num_clients")
        return infos

    # -- one exchange ---------------------------------------------------------------------------

    def exchange(self, payloads: Mapping[int, RecordDict], message_type: str,
                 rnd: int, phase: str = "") -> Exchange:
        """Send each client its payload; collect replies, failures and late clients.

        Clients served by the same node travel in one packed message (`fedplat.groups`); a
        node with one selected client gets the plain format. Bytes are attributed per client
        (a record shared by a group counts once, split between its clients).
        """
        ex = Exchange()
        extra = {"phase": phase} if phase else {}
        by_node: dict[int, list[int]] = {}
        for cid in sorted(payloads):
            by_node.setdefault(self.node_of[cid], []).append(cid)
        msgs = []
        sent_to: dict[int, list[int]] = {}
        sent: dict[int, RecordDict] = {}  # what each captured client received (audits)
        t_pack = time.perf_counter()
        for node, cids in sorted(by_node.items()):
            audit = {c: self.capture.control(rnd, message_type, c) for c in cids}
            for c in cids:
                if self.capture.wants(rnd, message_type, c):
                    sent[c] = with_control(payloads[c], cid=c, round=rnd, **extra, **audit[c])
            if len(cids) == 1:
                content = with_control(payloads[cids[0]], cid=cids[0], round=rnd, **extra,
                                       **audit[cids[0]])
                ex.bytes_down[cids[0]] = payload_bytes(content)
            else:
                content, shares = groups.pack({c: payloads[c] for c in cids},
                                              client_control=audit, round=rnd, **extra)
                ex.bytes_down.update(shares)
            msg = Message(content, dst_node_id=node, message_type=message_type)
            msgs.append(msg)
            sent_to[node] = cids
        ex.pack_seconds = time.perf_counter() - t_pack
        t0 = time.perf_counter()
        replies = self.grid.send_and_receive(msgs, timeout=self.timeout)
        ex.seconds = time.perf_counter() - t0
        for rep in replies:
            cids = sent_to[rep.metadata.src_node_id]
            if rep.has_error():
                for cid in cids:
                    ex.failures[cid] = short_reason(rep.error.reason)
            elif groups.is_group(rep.content):
                contents, errors = groups.unpack(rep.content)
                compute = float(rep.content[CONTROL].get("compute-s", 0.0))
                ex.node_compute_s = max(ex.node_compute_s, compute)
                for cid, why in errors.items():
                    ex.failures[cid] = short_reason(why)
                for cid, content in contents.items():
                    ex.replies[cid] = content
                    ex.bytes_up[cid] = payload_bytes(content)
            else:
                ex.replies[cids[0]] = rep.content
                ex.bytes_up[cids[0]] = payload_bytes(rep.content)
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

    def _step(self, strategy: Strategy, stage: str, rnd: int, sampled: list[int],
              offline: list[int], row: dict[str, Any]) -> dict[str, float]:
        """Every exchange of one train or evaluate step (`strategy.phases`), aggregated.

        Offline clients (`faults.dropout_prob`) are left out of every exchange of the step.
        """
        cids = [c for c in sampled if c not in offline]
        row[f"num_{stage}_clients"] = len(sampled)
        row[f"dropped_{stage}"] = len(sampled) - len(cids)
        clients = row.setdefault("per_client", {})
        for cid in sampled:
            if cid in offline:
                clients.setdefault(str(cid), {})[f"dropped_{stage}"] = True
        if not cids:
            self._record(row)
            raise RunAborted(f"round {rnd}: all {len(sampled)} sampled clients were offline "
                             f"for {stage} (faults.dropout_prob)")
        extra: dict[str, float] = {}
        for phase in strategy.phases(stage, rnd):
            if phase:
                payloads = strategy.configure_phase(stage, phase, rnd, cids)
            elif stage == MessageType.TRAIN:
                payloads = strategy.configure_train(rnd, cids)
            else:
                payloads = strategy.configure_evaluate(rnd, cids)
            ex = self._stage(strategy, stage, rnd, payloads, row, phase)
            if phase:
                extra.update(strategy.aggregate_phase(stage, phase, rnd, ex.replies,
                                                      ex.failures))
            elif stage == MessageType.TRAIN:
                extra.update(strategy.aggregate_train(rnd, ex.replies, ex.failures))
            else:
                extra.update(strategy.aggregate_evaluate(rnd, ex.replies, ex.failures))
        return extra

    def _stage(self, strategy: Strategy, stage: str, rnd: int,
               payloads: Mapping[int, RecordDict], row: dict[str, Any],
               phase: str = "") -> Exchange:
        """One exchange.

        Replies of the main exchange pass `strategy.check_reply` (phase replies, whose content
        is the strategy's own protocol, get the generic non-finite check); a rejected reply
        counts as that client's failure. The main exchange's metrics go into `row`; every
        exchange's failures, rejections, late clients and bytes are added up per stage and
        per client.
        """
        ex = self.exchange(payloads, stage, rnd, phase)
        rejected = 0
        for cid in sorted(ex.replies):
            content = ex.replies[cid]
            problem = records.non_finite(content) if phase else \
                strategy.check_reply(stage, cid, content)
            if problem is not None:
                del ex.replies[cid]
                ex.failures[cid] = f"rejected reply: {problem}"
                rejected += 1
                log.warning("round %d: rejected the %s reply of client %d: %s", rnd,
                            f"{stage} ({phase})" if phase else stage, cid, problem)
        per_client = {cid: metrics_of(rd) for cid, rd in ex.replies.items()}
        if not phase:
            row.update(aggregate_metrics(per_client))
        for key, value in ((f"failures_{stage}", len(ex.failures)),
                           (f"rejected_{stage}", rejected),
                           (f"late_{stage}", len(ex.late)),
                           (f"bytes_down_{stage}", sum(ex.bytes_down.values())),
                           (f"bytes_up_{stage}", sum(ex.bytes_up.values())),
                           (f"exchange_s_{stage}", ex.seconds),
                           (f"pack_s_{stage}", ex.pack_seconds)):
            row[key] = row.get(key, 0) + value
        if ex.node_compute_s:
            key = f"node_compute_s_{stage}"
            row[key] = row.get(key, 0.0) + ex.node_compute_s
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

    def save_checkpoint(self, rnd: int, strategy: Strategy) -> bool:
        """Ask every node to save its clients' state, then save the server's (see checkpoint)."""
        directory = checkpoint.round_dir(self.recorder.run_dir, rnd)
        msgs = [Message(RecordDict({CONTROL: ConfigRecord({"stage": "checkpoint",
                                                           "dir": str(directory)})}),
                        dst_node_id=n, message_type=MessageType.QUERY)
                for n in sorted(self.clients_of)]
        replies = list(self.grid.send_and_receive(msgs, timeout=self.timeout))
        bad = [short_reason(r.error.reason) for r in replies if r.has_error()]
        if bad or len(replies) < len(msgs):
            log.warning("round %d: checkpoint skipped (%d of %d nodes saved their clients' "
                        "state%s)", rnd, len(replies) - len(bad), len(msgs),
                        f"; {bad[0]}" if bad else "")
            return False
        checkpoint.save_server(self.recorder.run_dir, rnd, strategy.state_dict())
        return True

    def run(self) -> Strategy:
        """Set up, then run `num_rounds` rounds; return the strategy (for its summary)."""
        cfg = self.cfg
        resumed = checkpoint.latest(self.recorder.run_dir) if cfg.get("resume") else None
        clients = self.handshake(resumed[1] if resumed else None)
        self.recorder.log_clients(
            [clients[c].label_counts for c in sorted(clients)],
            {"num_train": [clients[c].num_train for c in sorted(clients)],
             "num_val": [clients[c].num_val for c in sorted(clients)],
             "num_test": [clients[c].num_test for c in sorted(clients)]})
        strategy_cls = import_object(cfg.strategy._target_, "strategy._target_")
        strategy: Strategy = strategy_cls(cfg)
        strategy.setup(clients)
        self.strategy = strategy
        first = 1
        if resumed is not None:
            strategy.load_state_dict(checkpoint.load_server(resumed[1])["strategy"])
            first = resumed[0] + 1
            log.info("resuming after round %d from %s", resumed[0], resumed[1])
        num_rounds, every = int(cfg.num_rounds), int(cfg.eval_every)
        save_every = int(cfg.get("checkpoint_every", 0))
        for rnd in range(first, num_rounds + 1):
            self.recorder.round_started()
            t0 = time.perf_counter()
            row: dict[str, Any] = {"round": rnd}
            sampled = strategy.sample_train(rnd)
            offline = faults.dropped(cfg, rnd, sorted(self.node_of))
            extra = self._step(strategy, MessageType.TRAIN, rnd, sampled, offline, row)
            self.capture.check(rnd)
            eval_cids = strategy.sample_evaluate(rnd)  # empty: fraction_evaluate=0
            if eval_cids and (rnd % every == 0 or rnd == num_rounds):
                extra = {**extra, **self._step(strategy, MessageType.EVALUATE, rnd, eval_cids,
                                               offline, row)}
            clash = set(extra) & set(row)
            if clash:
                raise RuntimeError(f"strategy metrics {sorted(clash)} clash with server keys")
            row.update(extra)
            row["round_time_s"] = time.perf_counter() - t0
            self._record(row)
            log.info("%s", progress_line(row, num_rounds))
            if save_every and rnd % save_every == 0 and rnd < num_rounds:
                self.save_checkpoint(rnd, strategy)
        return strategy


def progress_line(row: Mapping[str, Any], num_rounds: int) -> str:
    """`round  3/30  train_loss 0.5321  test_acc 0.8123  clients 10/10  1.23 s`."""
    parts = [f"round {row['round']:>{len(str(num_rounds))}}/{num_rounds}"]
    for key, label in (("train_loss", "train_loss"), ("test_loss", "test_loss"),
                       ("test_accuracy", "test_acc"), ("test_accuracy_mean", "client_mean")):
        if isinstance(row.get(key), int | float):
            parts.append(f"{label} {row[key]:.4f}")
    n = row.get("num_train_clients", 0)
    ok = (n - row.get("failures_train", 0) - row.get("late_train", 0)
          - row.get("dropped_train", 0))
    parts.append(f"clients {ok}/{n}")
    parts.append(f"{row.get('round_time_s', 0.0):.2f} s")
    return "  ".join(parts)


"""How the work of several clients travels in one Flower message, and back.

A Flower message costs far more than a small model's local training step: the engine polls,
serialises the node's whole context, dispatches to a Ray worker and back. Simulating 100
clients as 100 nodes pays that per client and round, so a simulated node may serve several
clients (`fedplat.transport.placement`) and receive all of its selected clients' work in one
message. Both ends go through this module only: the server calls `encode_batch` and
`decode_replies`, the node calls `decode_batch` and `encode_replies`. Neither end branches on
the format.

Two formats, chosen by `encode_batch` from the number of clients:

* plain (one client): the client's payload records plus the control record (`cid`, `round`,
  `exchange`, and per-client control such as a privacy audit's subset size). A deployment with
  one client per SuperNode only ever sees this format. The plain reply is the client's reply;
  a client that raises makes the node's handler raise, which Flower turns into an error reply.
* packed (several clients): records `r0, r1, ...` hold every distinct record of the payloads
  **once** (strategies that send the same global model to every client build one record object
  for all of them, so it travels once per node instead of once per client); the control record
  has `cids`, `layout` (a JSON map `{cid: {payload key: record name}}`) and `client-control`.
  Packed replies use the same layout plus `errors` (`{cid: reason}`): one client's failure is
  that client's failure, not its node's.
* stacked rows (packed only): clients trained together (`simulation.batched=true`) reply with
  `RowRecord`s (`fedplat.core.records`), rows of one stacked tensor. The rows of every such
  record with the same names, dtypes and shapes travel as **one** ArrayRecord `s0, s1, ...`
  whose arrays have a leading client axis, and the layout names a client's row as `s0#3`.
  The server gets each client's row back as a RowRecord of views into the received stack: 500
  clients of a small model cost 6 Flower Arrays each way instead of 3,000, which at that scale
  cost more than the training. The values are bit for bit those sent.

A client the node found late (its own time past `simulation.round_timeout`;
`fedplat.transport.node.run_clients`) has no reply: a plain reply is then only a control
record with `late-s` (the client's own seconds), a packed one lists it in `late`
(`{cid: seconds}`), and `decode_replies` returns it in `Replies.late`.

Replies also carry each client's device facts (where it trained; `fedplat.transport.node`):
in the control record of a plain reply, as `devices` (`{cid: facts}`) in a packed one.
`decode_replies` takes them out, so strategies and privacy capture see the client's reply as
the client wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from fedplat.core.records import CONTROL, RowRecord, record_values, scalar, stacked_array

#: Control key marking a packed message.
GROUP_KEY = "group"
#: Separates a stack's record name from a row in a packed layout (`s0#3`: row 3 of `s0`).
ROW = "#"


@dataclass
class Batch:
    """The clients' work in one message, as a node sees it after `decode_batch`."""

    server_round: int
    exchange: str
    payloads: dict[int, RecordDict]
    #: Per-client control entries (e.g. a privacy audit's subset size); {} when none.
    controls: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: True when the message used the packed format (several clients).
    packed: bool = False


@dataclass
class Replies:
    """Per-client replies of one node, as the server sees them after `decode_replies`."""

    contents: dict[int, RecordDict] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    #: The node's handler time for a packed reply (0 for a plain one).
    compute_s: float = 0.0
    #: Where each client ran: `device` (`cpu`, `cuda:0`) and, on CUDA, `peak-mem` (bytes)
    #: and `device-name`; {} for a client whose node sent none.
    devices: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Clients the node found late, with their own time in seconds (no content, no error).
    late: dict[int, float] = field(default_factory=dict)


def record_bytes(record: object) -> int:
    """Bytes of tensor data in one record (0 for config and metric records)."""
    return record.count_bytes() if isinstance(record, ArrayRecord) else 0


def payload_bytes(content: RecordDict) -> int:
    """Bytes of tensor data (plus key names) in a message's ArrayRecords.

    Config and metric records are small and left out; this is the figure that grows with the
    model and that studies of communication cost compare.
    """
    return sum(rec.count_bytes() for rec in content.array_records.values())


def is_packed(content: RecordDict) -> bool:
    """True for a packed message or reply."""
    control = content.get(CONTROL)
    return isinstance(control, ConfigRecord) and bool(control.get(GROUP_KEY, False))


def _plain(content: RecordDict, control: Mapping[str, Any]) -> RecordDict:
    """A shallow copy of `content` (without any control record) plus `control`."""
    out = RecordDict({k: v for k, v in content.items() if k != CONTROL})
    out[CONTROL] = ConfigRecord(dict(control))
    return out


def as_sent(payload: RecordDict, cid: int, server_round: int, exchange: str,
            client_control: Mapping[str, Any] | None = None) -> RecordDict:
    """The plain message a client receives: what a single-client node gets on the wire.

    Privacy audits save exactly this for a captured client, whichever format carried it.
    """
    control: dict[str, Any] = {"cid": cid, "round": server_round}
    if exchange:
        control["exchange"] = exchange
    control.update(client_control or {})
    return _plain(payload, control)


def _pack(contents: Mapping[int, RecordDict], control: dict[str, Any], *,
          count: bool = True) -> tuple[RecordDict, dict[int, int]]:
    """Packed content with each distinct record object once, and each client's byte share.

    A record shared by m clients counts 1/m to each (the remainder spread over the first
    ones), so the shares add up to what actually travels. With `count=False` (replies: the
    server counts what it receives) the shares are all 0.
    """
    names: dict[int, str] = {}
    users: dict[int, int] = {}
    out = RecordDict()
    layout: dict[str, dict[str, str]] = {}
    stacks: dict[tuple[Any, ...], list[dict[str, np.ndarray]]] = {}
    stack_names: dict[tuple[Any, ...], str] = {}
    for cid in sorted(contents):
        entry: dict[str, str] = {}
        for key, record in contents[cid].items():
            if key == CONTROL:
                continue
            rows = record.rows() if isinstance(record, RowRecord) and not record.built else {}
            if rows:
                kind = tuple((k, v.dtype.str, v.shape) for k, v in rows.items())
                members = stacks.setdefault(kind, [])
                name = stack_names.setdefault(kind, f"s{len(stack_names)}")
                entry[key] = f"{name}{ROW}{len(members)}"
                members.append(rows)
                continue
            ident = id(record)
            if ident not in names:
                names[ident] = f"r{len(names)}"
                out[names[ident]] = record
            users[ident] = users.get(ident, 0) + 1
            entry[key] = names[ident]
        layout[str(cid)] = entry
    shares = dict.fromkeys(sorted(contents), 0)
    seen: dict[int, int] = {}  # users of a record handed their share so far
    for cid in sorted(contents) if count else ():
        for key, record in contents[cid].items():
            if key == CONTROL:
                continue
            if id(record) not in users:  # a stacked row: its own bytes
                shares[cid] += record_bytes(record)
                continue
            size, m = record_bytes(record), users[id(record)]
            i = seen.get(id(record), 0)
            seen[id(record)] = i + 1
            shares[cid] += size // m + (1 if i < size % m else 0)  # shares add up exactly
    for kind, members in stacks.items():
        out[stack_names[kind]] = ArrayRecord(array_dict={
            k: stacked_array([rows[k] for rows in members]) for k, _, _ in kind},
            keep_input=False)
    out[CONTROL] = ConfigRecord({GROUP_KEY: True, "cids": sorted(int(c) for c in contents),
                                 "layout": json.dumps(layout), **control})
    return out, shares


def _unpack(content: RecordDict) -> dict[int, RecordDict]:
    """Per-client contents of a packed message; clients sharing a record get the same object."""
    control = content[CONTROL]
    assert isinstance(control, ConfigRecord)
    layout = json.loads(str(control["layout"]))
    stacked: dict[str, tuple[dict[str, np.ndarray], np.ndarray, int]] = {}

    def record(name: str) -> Any:
        if ROW not in name:
            return content[name]
        stack, row = name.split(ROW)
        if stack not in stacked:
            values = content[stack]
            assert isinstance(values, ArrayRecord)
            arrays = record_values(values)
            finite = np.ones(len(next(iter(arrays.values()))), dtype=bool)
            for v in arrays.values():  # each row's check, for every row in one pass
                if v.dtype.kind == "f" and v.size:
                    finite &= np.isfinite(v.reshape(len(v), -1)).all(axis=1)
            first = RowRecord({k: v[0] for k, v in arrays.items()})
            stacked[stack] = arrays, finite, first.count_bytes()  # every row's bytes
        arrays, finite, count = stacked[stack]
        i = int(row)
        return RowRecord({k: v[i] for k, v in arrays.items()}, finite=bool(finite[i]),
                         count=count)

    return {int(cid): RecordDict({key: record(name) for key, name in entry.items()})
            for cid, entry in layout.items()}


# -- server -> node -----------------------------------------------------------------------------


def encode_batch(payloads: Mapping[int, RecordDict], server_round: int, exchange: str,
                 controls: Mapping[int, Mapping[str, Any]] | None = None
                 ) -> tuple[RecordDict, dict[int, int]]:
    """One message's content for the clients of one node, and each client's bytes down."""
    controls = controls or {}
    if len(payloads) == 1:
        (cid, payload), = payloads.items()
        content = as_sent(payload, cid, server_round, exchange, controls.get(cid))
        return content, {cid: payload_bytes(content)}
    control: dict[str, Any] = {"round": server_round, "client-control": json.dumps(
        {str(c): dict(v) for c, v in controls.items() if v})}
    if exchange:
        control["exchange"] = exchange
    return _pack(payloads, control)


def decode_batch(content: RecordDict) -> Batch:
    """The per-client payloads and controls of a message, in either format."""
    control = content[CONTROL]
    assert isinstance(control, ConfigRecord)
    server_round = int(scalar(control["round"]))
    exchange = str(control.get("exchange", ""))
    if is_packed(content):
        raw = json.loads(str(control.get("client-control", "{}")))
        return Batch(server_round, exchange, _unpack(content),
                     {int(c): dict(v) for c, v in raw.items()}, packed=True)
    cid = int(scalar(control["cid"]))
    own = {k: v for k, v in control.items() if k not in ("cid", "round", "exchange")}
    payload = RecordDict({k: v for k, v in content.items() if k != CONTROL})
    return Batch(server_round, exchange, {cid: payload}, {cid: own} if own else {})


# -- node -> server -----------------------------------------------------------------------------


def encode_replies(batch: Batch, replies: Mapping[int, RecordDict], errors: Mapping[int, str],
                   compute_s: float,
                   devices: Mapping[int, Mapping[str, Any]] | None = None,
                   late: Mapping[int, float] | None = None) -> RecordDict:
    """A node's reply to `batch`, in the format the batch came in.

    A plain batch's client either replied (its content is the reply, plus a control record
    with its device facts when given), was late (a control record with `late-s` only) or
    failed, which the caller handles by raising (Flower's error reply); so only packed replies
    carry errors.
    """
    devices = devices or {}
    late = late or {}
    if not batch.packed:
        (cid,) = batch.payloads
        if cid in late:
            return RecordDict({CONTROL: ConfigRecord({"late-s": float(late[cid])})})
        if cid not in devices:
            return replies[cid]
        return _plain(replies[cid], devices[cid])
    control: dict[str, Any] = {
        "errors": json.dumps({str(c): str(e) for c, e in errors.items()}),
        "compute-s": compute_s}
    if late:
        control["late"] = json.dumps({str(c): float(t) for c, t in late.items()})
    if devices:
        control["devices"] = json.dumps({str(c): dict(f) for c, f in devices.items()})
    content, _ = _pack(replies, control, count=False)
    return content


def decode_replies(content: RecordDict, cids: list[int]) -> Replies:
    """Per-client replies and errors of a node's reply to a message sent to `cids`."""
    if not is_packed(content):
        control = content.get(CONTROL)
        if not isinstance(control, ConfigRecord):
            return Replies({cids[0]: content})
        if "late-s" in control:
            return Replies(late={cids[0]: float(scalar(control["late-s"]))})
        reply = RecordDict({k: v for k, v in content.items() if k != CONTROL})
        return Replies({cids[0]: reply}, devices={cids[0]: dict(control)})
    control = content[CONTROL]
    assert isinstance(control, ConfigRecord)
    errors = {int(c): str(e) for c, e in json.loads(str(control.get("errors", "{}"))).items()}
    devices = {int(c): dict(f) for c, f in json.loads(str(control.get("devices", "{}"))).items()}
    late = {int(c): float(t) for c, t in json.loads(str(control.get("late", "{}"))).items()}
    return Replies(_unpack(content), errors, float(scalar(control.get("compute-s", 0.0))),
                   devices, late)

"""Client groups: one simulated node serves several clients, one message per node and stage.

A Flower message costs far more than a small model's local training step: the engine polls,
serialises the node's whole context, dispatches to a Ray worker and back. Simulating 100
clients as 100 nodes pays that per client and round. Here node `p` serves clients
`p*k .. p*k+k-1` (`k = simulation.clients_per_node`), and the server packs the payloads of all
of a node's selected clients into one message. Strategies do not see any of this: they still
build one payload per client and receive one reply per client, and every client's private state
stays namespaced by client id in the node's Context.state (`fedplat.client.ClientState`).

Wire format of a group message (a node with a single selected client gets the plain format,
so deployments with one client per SuperNode see no change):

* records `r0, r1, ...`: every distinct record of the packed payloads, **once**. Strategies that
  send the same global model to every client build one record object for all of them
  (`{cid: content for cid in cids}`); it travels once per node instead of once per client.
* the control record: `cids` (the clients, in order) and `layout`, a JSON map
  `{cid: {payload key: record name}}`.

Group replies use the same layout, plus `errors` (`{cid: reason}`) for clients whose handler
raised: one client's failure is that client's failure, not its node's.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from omegaconf import DictConfig

from fedplat.errors import UserError
from fedplat.records import CONTROL

#: Control key marking a packed message.
GROUP_KEY = "group"


def ray_workers(cfg: DictConfig) -> int:
    """Clients the Ray backend runs at once: CPUs (and GPUs) over the per-client resources."""
    sim = cfg.simulation
    cpus = float(sim.ray_num_cpus) if sim.get("ray_num_cpus") else float(os.cpu_count() or 1)
    workers = max(1, math.floor(cpus / float(sim.num_cpus) + 1e-9))
    gpus_each = float(sim.num_gpus)
    if gpus_each > 0 and sim.get("ray_num_gpus") is not None:
        workers = min(workers, max(1, math.floor(float(sim.ray_num_gpus) / gpus_each + 1e-9)))
    return workers


def resolve_clients_per_node(cfg: DictConfig) -> int:
    """Turn `simulation.clients_per_node` (`auto` or an int >= 1) into an int, in place.

    `auto`: on Ray, as many nodes as the backend runs clients at once (each worker then gets one
    message per stage and round, which is the fewest messages that keep every worker busy);
    inline, 1 (the debugging backend keeps one message per client).
    """
    sim = cfg.simulation
    value = sim.get("clients_per_node", 1)
    n = int(cfg.num_clients)
    if value is None or str(value) == "auto":
        k = math.ceil(n / ray_workers(cfg)) if sim.backend == "ray" else 1
    else:
        try:
            k = int(value)
        except (TypeError, ValueError):
            k = 0
        if k < 1 or str(k) != str(value).strip():
            raise UserError(f"simulation.clients_per_node={value}: expected 'auto' or an "
                            "integer >= 1")
    k = max(1, min(k, n))
    sim.clients_per_node = k
    return k


def num_nodes(cfg: DictConfig) -> int:
    """Nodes needed to serve `num_clients` clients, `clients_per_node` each."""
    return math.ceil(int(cfg.num_clients) / int(cfg.simulation.get("clients_per_node", 1)))


def members(cfg: DictConfig, partition_id: int) -> list[int]:
    """The client ids node `partition_id` serves."""
    k = int(cfg.simulation.get("clients_per_node", 1))
    n = int(cfg.num_clients)
    return list(range(partition_id * k, min(n, (partition_id + 1) * k)))


def is_group(content: RecordDict) -> bool:
    """True for a packed message or reply."""
    control = content.get(CONTROL)
    return isinstance(control, ConfigRecord) and bool(control.get(GROUP_KEY, False))


def record_bytes(record: object) -> int:
    """Bytes of tensor data in one record (0 for config and metric records)."""
    return record.count_bytes() if isinstance(record, ArrayRecord) else 0


def pack(payloads: Mapping[int, RecordDict], errors: Mapping[int, str] | None = None,
         client_control: Mapping[int, Mapping[str, Any]] | None = None,
         **control: int | float | str | bool) -> tuple[RecordDict, dict[int, int]]:
    """Pack per-client contents into one RecordDict; each distinct record object appears once.

    Returns the packed content and each client's share of its tensor bytes: a record shared by
    m clients counts 1/m to each, so the shares add up to what actually travels.
    """
    names: dict[int, str] = {}
    users: dict[int, int] = {}
    out = RecordDict()
    layout: dict[str, dict[str, str]] = {}
    for cid in sorted(payloads):
        entry: dict[str, str] = {}
        for key, record in payloads[cid].items():
            if key == CONTROL:
                continue
            ident = id(record)
            if ident not in names:
                names[ident] = f"r{len(names)}"
                out[names[ident]] = record
            users[ident] = users.get(ident, 0) + 1
            entry[key] = names[ident]
        layout[str(cid)] = entry
    shares = dict.fromkeys(sorted(payloads), 0)
    seen: dict[int, int] = {}  # users of a record handed their share so far
    for cid in sorted(payloads):
        for key, record in payloads[cid].items():
            if key == CONTROL:
                continue
            size, m = record_bytes(record), users[id(record)]
            i = seen.get(id(record), 0)
            seen[id(record)] = i + 1
            shares[cid] += size // m + (1 if i < size % m else 0)  # shares add up exactly
    out[CONTROL] = ConfigRecord({
        GROUP_KEY: True, "cids": sorted(int(c) for c in payloads), "layout": json.dumps(layout),
        "errors": json.dumps({str(c): str(e) for c, e in (errors or {}).items()}),
        "client-control": json.dumps({str(c): dict(v) for c, v in (client_control or {}).items()
                                      if v}),
        **control})
    return out, shares


def client_controls(content: RecordDict) -> dict[int, dict[str, Any]]:
    """Per-client control entries of a packed message (e.g. a privacy audit's subset size)."""
    control = content[CONTROL]
    assert isinstance(control, ConfigRecord)
    raw = json.loads(str(control.get("client-control", "{}")))
    return {int(c): dict(v) for c, v in raw.items()}


def unpack(content: RecordDict) -> tuple[dict[int, RecordDict], dict[int, str]]:
    """Per-client contents and per-client errors of a packed message or reply.

    Clients that share a record get the same record object (read it, do not mutate it).
    """
    control = content[CONTROL]
    assert isinstance(control, ConfigRecord)
    layout = json.loads(str(control["layout"]))
    errors = {int(c): str(e) for c, e in json.loads(str(control.get("errors", "{}"))).items()}
    out: dict[int, RecordDict] = {}
    for cid, entry in layout.items():
        out[int(cid)] = RecordDict({key: content[name] for key, name in entry.items()})
    return out, errors

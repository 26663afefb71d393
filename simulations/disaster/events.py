"""The disruption schedule: a time-varying network precomputed from (graph, events, seed).

The network's history does not depend on learning, so the whole timeline is computed before
round 1: which nodes are active and which links exist in every round. The learner only asks
`graph_at(t)`. This also means that the victims of a drop are known in advance, which is what
lets `victims_hold_data: false` turn them into relays from round 1 (the paper's
connectivity-only arm) while they drop at exactly the same round as in the data arm.

Event types (each a dict in `disruption.events`, applied at the start of `round`, several
events of one round in listed order):

- node_drop: removes nodes for good (their edges vanish, their data leaves the system):
  chosen by `select` with `fraction`/`count`, or `nodes`; or, with `rate`, every alive node
  drops with that probability each round from `round` to `until`.
- node_offline: nodes leave for `duration` rounds and come back with the model they had.
- link_drop: removes links: a `fraction` of the alive links, explicit `edges`, every link of
  nodes chosen by `select`, or each link with probability `rate` per round until `until`.
- link_up: restores links: explicit `edges` (added if new) or `restore: true` (all dropped).
- battery: nodes (all, or chosen by `select`) get a battery of `capacity` (+- `spread`); each
  round costs `idle_cost` + `message_cost` x degree; an empty battery drops the node.

Selectors (`select`): random, top_degree (hubs), peripheral (lowest degree), betweenness, or
explicit (`nodes`); computed on the network of that moment; ties by node id (`tie_break: id`)
or seeded (`tie_break: random`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from fedplat.core import seeding
from fedplat.errors import UserError
from simulations.disaster.topology import Topology

log = logging.getLogger("fedplat")

EVENT_TYPES: tuple[str, ...] = ("node_drop", "node_offline", "link_drop", "link_up", "battery")
SELECTORS: tuple[str, ...] = ("random", "top_degree", "peripheral", "betweenness", "explicit")
TIE_BREAKS: tuple[str, ...] = ("id", "random")

#: Sub-stream of seeding.SCENARIO used for event randomness.
_EVENTS_STREAM = 2

Edge = tuple[int, int]


def _edge(u: int, v: int) -> Edge:
    return (u, v) if u < v else (v, u)


@dataclass(frozen=True)
class AppliedEvent:
    """What an event actually did, for logs, metrics and plots."""

    round: int
    type: str
    nodes: tuple[int, ...] = ()
    edges: tuple[Edge, ...] = ()
    index: int = -1  # position in disruption.events (-1: consequence, e.g. a return)

    def describe(self) -> str:
        """One short line."""
        what = []
        if self.nodes:
            shown = ", ".join(map(str, self.nodes[:10])) + (" ..." if len(self.nodes) > 10 else "")
            what.append(f"{len(self.nodes)} node(s) [{shown}]")
        if self.edges:
            what.append(f"{len(self.edges)} link(s)")
        return f"round {self.round}: {self.type} " + (", ".join(what) or "(nothing)")


# --------------------------------------------------------------------------------------------
# Static validation: each event on its own, against n and num_rounds.


def _where(i: int, key: str) -> str:
    return f"disruption.events[{i}].{key}"


def _ev_int(ev: Mapping[str, Any], i: int, key: str, lo: int, hi: int | None = None,
            hint: str = "") -> int:
    v = ev.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise UserError(f"{_where(i, key)}={v!r} must be an integer")
    if v < lo or (hi is not None and v > hi):
        raise UserError(f"{_where(i, key)}={v} is out of range: must be in "
                        f"[{lo}, {'inf' if hi is None else hi}]{hint}")
    return v


def _ev_float(ev: Mapping[str, Any], i: int, key: str, lo: float, hi: float | None = None,
              lo_open: bool = False) -> float:
    v = ev.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise UserError(f"{_where(i, key)}={v!r} must be a finite number")
    if (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
        left = "(" if lo_open else "["
        raise UserError(f"{_where(i, key)}={v} is out of range: must be in "
                        f"{left}{lo}, {'inf' if hi is None else hi}]")
    return float(v)


def _ev_nodes(ev: Mapping[str, Any], i: int, n: int) -> list[int]:
    nodes = ev.get("nodes")
    if not isinstance(nodes, Sequence) or isinstance(nodes, str):
        raise UserError(f"{_where(i, 'nodes')}={nodes!r} must be a list of node ids")
    out = []
    for v in nodes:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n:
            raise UserError(f"{_where(i, 'nodes')} names unknown node {v!r}; the network has "
                            f"nodes 0..{n - 1}")
        out.append(int(v))
    return out


def _ev_edges(ev: Mapping[str, Any], i: int, n: int) -> list[Edge]:
    edges = ev.get("edges")
    if not isinstance(edges, Sequence) or isinstance(edges, str):
        raise UserError(f"{_where(i, 'edges')}={edges!r} must be a list of [u, v] pairs")
    out = []
    for e in edges:
        if (not isinstance(e, Sequence) or isinstance(e, str) or len(e) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in e)):
            raise UserError(f"{_where(i, 'edges')} holds {e!r}; each edge is a pair [u, v]")
        u, v = int(e[0]), int(e[1])
        for x in (u, v):
            if not 0 <= x < n:
                raise UserError(f"{_where(i, 'edges')} names unknown node {x}; the network "
                                f"has nodes 0..{n - 1}")
        out.append(_edge(u, v))
    return out


def _check_selector(ev: Mapping[str, Any], i: int, n: int, *, required: bool = True) -> None:
    select = ev.get("select", "explicit" if "nodes" in ev else None)
    if select is None:
        if required:
            raise UserError(f"{_where(i, 'select')} is missing (choose from: "
                            f"{', '.join(SELECTORS)})")
        return
    if select not in SELECTORS:
        raise UserError(f"{_where(i, 'select')}={select!r} is not valid (choose from: "
                        f"{', '.join(SELECTORS)})")
    if ev.get("tie_break", "id") not in TIE_BREAKS:
        raise UserError(f"{_where(i, 'tie_break')}={ev.get('tie_break')!r} is not valid "
                        f"(choose from: {', '.join(TIE_BREAKS)})")
    if select == "explicit":
        if "nodes" not in ev:
            raise UserError(f"{_where(i, 'select')}=explicit needs {_where(i, 'nodes')}=[...]")
        _ev_nodes(ev, i, n)
        return
    given = [k for k in ("fraction", "count") if ev.get(k) is not None]
    if len(given) != 1:
        raise UserError(f"disruption.events[{i}] ({ev.get('type')}, select={select}) needs "
                        "exactly one of fraction (in [0, 1]) or count")
    if given[0] == "fraction":
        _ev_float(ev, i, "fraction", 0.0, 1.0)
    else:
        _ev_int(ev, i, "count", 0, n)


def validate_events(events: Sequence[Mapping[str, Any]], n: int, num_rounds: int) -> None:
    """Check every event's fields (types, ranges, node ids, rounds within the run)."""
    if not isinstance(events, Sequence) or isinstance(events, str):
        raise UserError("disruption.events must be a list of events, e.g. "
                        "[{round: 50, type: node_drop, select: top_degree, fraction: 0.1}]")
    for i, ev in enumerate(events):
        if not isinstance(ev, Mapping):
            raise UserError(f"disruption.events[{i}]={ev!r} must be a mapping with type and "
                            "round")
        kind = ev.get("type")
        if kind not in EVENT_TYPES:
            raise UserError(f"{_where(i, 'type')}={kind!r} is not valid (choose from: "
                            f"{', '.join(EVENT_TYPES)})")
        server_round = ev.get("round", 1 if kind == "battery" else None)
        if isinstance(server_round, bool) or not isinstance(server_round, int) or server_round < 1:
            raise UserError(f"{_where(i, 'round')}={server_round!r} must be a round number >= 1")
        if server_round > num_rounds:
            raise UserError(f"{_where(i, 'round')}={server_round} is beyond the run "
                            f"(num_rounds={num_rounds}); use a round in [1, {num_rounds}] "
                            "or run longer")
        rate = ev.get("rate")
        if rate is not None:
            if kind not in ("node_drop", "link_drop"):
                raise UserError(f"{_where(i, 'rate')} only applies to node_drop and link_drop")
            _ev_float(ev, i, "rate", 0.0, 1.0)
            until = ev.get("until")
            if until is not None:
                _ev_int(ev, i, "until", server_round, num_rounds,
                        hint=f" (from the event's round to num_rounds={num_rounds})")
        if kind in ("node_drop", "node_offline"):
            if rate is None:
                _check_selector(ev, i, n)
            if not isinstance(ev.get("victims_hold_data", True), bool):
                raise UserError(f"{_where(i, 'victims_hold_data')} must be true or false")
            if kind == "node_offline":
                _ev_int(ev, i, "duration", 1)
        elif kind == "link_drop":
            if rate is None:
                ways = [k for k in ("fraction", "edges", "select") if ev.get(k) is not None]
                if len(ways) != 1:
                    raise UserError(f"disruption.events[{i}] (link_drop) needs exactly one of "
                                    "fraction (random links), edges, select (all links of the "
                                    "chosen nodes) or rate")
                if ways[0] == "fraction":
                    _ev_float(ev, i, "fraction", 0.0, 1.0)
                elif ways[0] == "edges":
                    _ev_edges(ev, i, n)
                else:
                    _check_selector(ev, i, n)
        elif kind == "link_up":
            if ev.get("edges") is not None:
                _ev_edges(ev, i, n)
            elif not ev.get("restore", False):
                raise UserError(f"disruption.events[{i}] (link_up) needs edges=[[u, v], ...] or "
                                "restore: true")
        elif kind == "battery":
            _ev_float(ev, i, "capacity", 0.0, lo_open=True)
            _ev_float(ev, i, "spread", 0.0, 1.0) if "spread" in ev else None
            for key in ("idle_cost", "message_cost"):
                if key in ev:
                    _ev_float(ev, i, key, 0.0)
            if ev.get("select") is not None or ev.get("nodes") is not None:
                _check_selector(ev, i, n)


# --------------------------------------------------------------------------------------------
# Selection on the network of the moment.


def _alive_graph(nodes: set[int], edges: set[Edge]) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(sorted(nodes))
    g.add_edges_from(e for e in edges if e[0] in nodes and e[1] in nodes)
    return g


def select_nodes(graph: nx.Graph, select: str, k: int, rng: np.random.Generator,
                 tie_break: str = "id") -> list[int]:
    """The k nodes of `graph` chosen by `select` (random/top_degree/peripheral/betweenness).

    Ties in the score are broken by node id (smallest first), or by a seeded random order with
    `tie_break="random"`. Returned sorted by node id.
    """
    nodes = sorted(graph.nodes)
    k = min(k, len(nodes))
    if k <= 0:
        return []
    if select == "random":
        return sorted(int(v) for v in rng.choice(nodes, size=k, replace=False))
    if select == "top_degree":
        score = {v: -graph.degree(v) for v in nodes}
    elif select == "peripheral":
        score = {v: graph.degree(v) for v in nodes}
    elif select == "betweenness":
        bc = nx.betweenness_centrality(graph)
        score = {v: -bc[v] for v in nodes}
    else:
        raise ValueError(f"unknown selector {select}")
    tie = ({v: i for i, v in enumerate(nodes)} if tie_break == "id"
           else {v: float(r) for v, r in zip(nodes, rng.random(len(nodes)))})
    return sorted(sorted(nodes, key=lambda v: (score[v], tie[v]))[:k])


# --------------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """Active nodes and links in every round 1..num_rounds, plus what happened when.

    `relays` are the nodes that never hold data: victims of drops with
    `victims_hold_data: false` (known in advance because the timeline is precomputed).
    """

    topology: Topology
    num_rounds: int
    events: list[AppliedEvent] = field(default_factory=list)
    relays: frozenset[int] = frozenset()
    _rounds: list[int] = field(default_factory=list)  # change points (ascending)
    _states: list[tuple[frozenset[int], frozenset[Edge]]] = field(default_factory=list)
    _graphs: dict[int, nx.Graph] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of nodes in the initial network."""
        return self.topology.n

    def _index(self, t: int) -> int:
        if not 1 <= t <= self.num_rounds:
            raise ValueError(f"round {t} outside 1..{self.num_rounds}")
        lo, hi = 0, len(self._rounds) - 1
        while lo < hi:  # last change point <= t
            mid = (lo + hi + 1) // 2
            if self._rounds[mid] <= t:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def active_at(self, t: int) -> frozenset[int]:
        """Nodes present in round t."""
        return self._states[self._index(t)][0]

    def edges_at(self, t: int) -> frozenset[Edge]:
        """Links between nodes present in round t."""
        active, edges = self._states[self._index(t)]
        return frozenset(e for e in edges if e[0] in active and e[1] in active)

    def graph_at(self, t: int) -> nx.Graph:
        """The network of round t (present nodes, their links, link weights).

        Cached: do not modify it.
        """
        i = self._index(t)
        if i not in self._graphs:
            active, edges = self._states[i]
            g = _alive_graph(set(active), set(edges))
            base = self.topology.graph
            for u, v in g.edges:
                if base.has_edge(u, v) and "weight" in base.edges[u, v]:
                    g.edges[u, v]["weight"] = base.edges[u, v]["weight"]
            self._graphs[i] = g
        return self._graphs[i]

    def dropped_by(self, t: int) -> frozenset[int]:
        """Nodes removed for good at or before round t."""
        out: set[int] = set()
        for ev in self.events:
            if ev.round <= t and ev.type in ("node_drop", "battery"):
                out.update(ev.nodes)
        return frozenset(out)

    def event_rounds(self) -> list[int]:
        """Rounds in which some scheduled event changed the network."""
        return sorted({ev.round for ev in self.events if ev.index >= 0})


def build_timeline(topology: Topology, events: Sequence[Mapping[str, Any]], num_rounds: int,
                   seed: int, *, allow_empty: bool = False) -> Timeline:
    """Precompute the network of every round (raises UserError for impossible events)."""
    n = topology.n
    validate_events(events, n, num_rounds)
    base_edges = {_edge(int(u), int(v)) for u, v in topology.graph.edges}
    edges: set[Edge] = set(base_edges)
    dropped_links: set[Edge] = set()
    dead: set[int] = set()
    offline_until: dict[int, int] = {}
    battery: dict[int, float] = {}
    battery_cost: dict[int, tuple[float, float]] = {}
    pending_battery_deaths: list[int] = []
    applied: list[AppliedEvent] = []
    relays: set[int] = set()
    tl = Timeline(topology, num_rounds)

    def present() -> set[int]:
        return set(range(n)) - dead - set(offline_until)

    def choose(ev: Mapping[str, Any], i: int, t: int, pool: set[int]) -> list[int]:
        select = ev.get("select", "explicit" if "nodes" in ev else "random")
        if select == "explicit":
            nodes = _ev_nodes(ev, i, n)
            gone = [v for v in nodes if v not in pool]
            if gone:
                raise UserError(f"{_where(i, 'nodes')} names node(s) {gone} that are not "
                                f"present at round {t} (already dropped or offline)")
            return sorted(set(nodes))
        k = (int(ev["count"]) if ev.get("count") is not None
             else round(float(ev["fraction"]) * len(pool)))
        if k == 0 and ev.get("fraction", 0):
            log.warning("disruption.events[%d]: fraction %s of %d present nodes rounds to 0 "
                        "nodes; nothing happens", i, ev.get("fraction"), len(pool))
        if k >= len(pool) and ev["type"] == "node_drop" and not allow_empty and pool:
            raise UserError(f"disruption.events[{i}] removes {k} of the {len(pool)} nodes "
                            f"present at round {t}, leaving none; lower its fraction/count or "
                            "set disruption.allow_empty=true")
        rng = seeding.rng(seed, seeding.SCENARIO, _EVENTS_STREAM, i, t)
        return select_nodes(_alive_graph(pool, edges), select, k, rng,
                            str(ev.get("tie_break", "id")))

    prev: tuple[frozenset[int], frozenset[Edge]] | None = None
    for t in range(1, num_rounds + 1):
        back = sorted(v for v, until in offline_until.items() if until <= t)
        for v in back:
            del offline_until[v]
        if back:
            applied.append(AppliedEvent(t, "node_return", tuple(back)))
        if pending_battery_deaths:
            victims = sorted(v for v in pending_battery_deaths if v not in dead)
            dead.update(victims)
            for v in victims:
                offline_until.pop(v, None)
            applied.append(AppliedEvent(t, "battery", tuple(victims)))
            pending_battery_deaths = []
        for i, ev in enumerate(events):
            kind = str(ev["type"])
            start = int(ev.get("round", 1))
            rate = ev.get("rate")
            if rate is not None:
                until = int(ev.get("until") or num_rounds)
                if not start <= t <= until:
                    continue
                rng = seeding.rng(seed, seeding.SCENARIO, _EVENTS_STREAM, i, t)
                if kind == "node_drop":
                    pool = sorted(present())
                    hit = [v for v, r in zip(pool, rng.random(len(pool))) if r < float(rate)]
                    if hit:
                        dead.update(hit)
                        if not ev.get("victims_hold_data", True):
                            relays.update(hit)
                        applied.append(AppliedEvent(t, kind, tuple(hit), index=i))
                else:
                    now = present()
                    pool_e = sorted(e for e in edges if e[0] in now and e[1] in now)
                    hit_e = [e for e, r in zip(pool_e, rng.random(len(pool_e)))
                             if r < float(rate)]
                    if hit_e:
                        edges.difference_update(hit_e)
                        dropped_links.update(hit_e)
                        applied.append(AppliedEvent(t, kind, edges=tuple(hit_e), index=i))
                continue
            if start != t:
                continue
            if kind == "node_drop":
                victims = choose(ev, i, t, present())
                dead.update(victims)
                if not ev.get("victims_hold_data", True):
                    relays.update(victims)
                applied.append(AppliedEvent(t, kind, tuple(victims), index=i))
            elif kind == "node_offline":
                victims = choose(ev, i, t, present())
                for v in victims:
                    offline_until[v] = t + int(ev["duration"])
                applied.append(AppliedEvent(t, kind, tuple(victims), index=i))
            elif kind == "link_drop":
                alive = present()
                alive_edges = sorted(e for e in edges if e[0] in alive and e[1] in alive)
                if ev.get("edges") is not None:
                    hit_e = [e for e in _ev_edges(ev, i, n) if e in edges]
                elif ev.get("select") is not None:
                    chosen = set(choose(ev, i, t, alive))
                    hit_e = [e for e in alive_edges if e[0] in chosen or e[1] in chosen]
                else:
                    k = round(float(ev["fraction"]) * len(alive_edges))
                    rng = seeding.rng(seed, seeding.SCENARIO, _EVENTS_STREAM, i, t)
                    pick = rng.choice(len(alive_edges), size=k, replace=False) if k else []
                    hit_e = sorted(alive_edges[j] for j in pick)
                edges.difference_update(hit_e)
                dropped_links.update(hit_e)
                applied.append(AppliedEvent(t, kind, edges=tuple(hit_e), index=i))
            elif kind == "link_up":
                new = (_ev_edges(ev, i, n) if ev.get("edges") is not None
                       else sorted(dropped_links))
                added = sorted(set(new) - edges)
                edges.update(added)
                dropped_links.difference_update(added)
                applied.append(AppliedEvent(t, kind, edges=tuple(added), index=i))
            elif kind == "battery":
                pool = present()
                powered = (choose(ev, i, t, pool)
                           if ev.get("select") is not None or ev.get("nodes") is not None
                           else sorted(pool))
                rng = seeding.rng(seed, seeding.SCENARIO, _EVENTS_STREAM, i, t)
                cap, spread = float(ev["capacity"]), float(ev.get("spread", 0.0))
                draws = rng.uniform(cap * (1 - spread), cap * (1 + spread), size=len(powered))
                for v, c in zip(powered, draws):
                    battery[v] = float(c)
                    battery_cost[v] = (float(ev.get("idle_cost", 1.0)),
                                       float(ev.get("message_cost", 0.0)))
                applied.append(AppliedEvent(t, "battery_on", tuple(powered), index=i))
        state = (frozenset(present()), frozenset(edges))
        if prev is None or state != prev:
            tl._rounds.append(t)
            tl._states.append(state)
            prev = state
        if battery:  # drain at the end of the round; an empty battery drops the node next round
            alive = state[0]
            degree = dict.fromkeys(alive, 0)
            for a, b in edges:
                if a in alive and b in alive:
                    degree[a] += 1
                    degree[b] += 1
            for v in sorted(battery):
                if v in dead or v not in alive:
                    continue  # offline nodes are idle
                idle, per_msg = battery_cost[v]
                battery[v] -= idle + per_msg * degree[v]
                if battery[v] <= 0 and t < num_rounds:
                    pending_battery_deaths.append(v)
    tl.events = applied
    tl.relays = frozenset(relays)
    return tl


def describe_events(timeline: Timeline) -> list[str]:
    """One line per event that changed something."""
    return [ev.describe() for ev in timeline.events if ev.nodes or ev.edges]

"""Initial communication graphs of a peer-to-peer network (all seeded).

`build_graph(cfg.topology)` returns an undirected `networkx.Graph` on nodes 0..n-1 and, for
graphs that have them, node positions (random geometric graphs: positions are what make them
useful for disasters, where radio range decides who can talk). An edge may carry a `weight`
("trust", from an edge-list file), which the weight rules multiply in and renormalise.

The graph is only the starting point: `events.Timeline` turns it into the time-varying network
the learner sees (node drops, link failures, batteries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from fedplat.errors import UserError

TOPOLOGIES: tuple[str, ...] = (
    "barabasi_albert",
    "erdos_renyi",
    "watts_strogatz",
    "random_geometric",
    "ring",
    "grid",
    "star",
    "complete",
    "edge_list",
)


@dataclass(frozen=True)
class Topology:
    """An initial graph on nodes 0..n-1, with optional 2-D positions."""

    kind: str
    graph: nx.Graph
    positions: dict[int, tuple[float, float]] | None = None

    @property
    def n(self) -> int:
        """Number of nodes."""
        return self.graph.number_of_nodes()

    def describe(self) -> str:
        """One line for logs and the summary."""
        g = self.graph
        return (f"{self.kind}: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges, "
                f"mean degree {2 * g.number_of_edges() / max(g.number_of_nodes(), 1):.2f}, "
                f"{nx.number_connected_components(g)} component(s)")


def _int(t: Mapping[str, Any], key: str, lo: int | None = None, hi: int | None = None,
         why: str = "") -> int:
    v = t.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise UserError(f"topology.{key}={v!r} must be an integer")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise UserError(f"topology.{key}={v} is out of range for {t.get('type')}: must be in "
                        f"{rng}{why}")
    return v


def _float(t: Mapping[str, Any], key: str, lo: float, hi: float | None = None) -> float:
    v = t.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise UserError(f"topology.{key}={v!r} must be a finite number")
    if v < lo or (hi is not None and v > hi):
        raise UserError(f"topology.{key}={v} is out of range for {t.get('type')}: must be in "
                        f"[{lo}, {'inf' if hi is None else hi}]")
    return float(v)


def read_edge_list(path: str | Path, n: int) -> list[tuple[int, int, float]]:
    """Parse `u v [weight]` lines (`#` starts a comment); nodes must lie in 0..n-1.

    Raises a one-line `UserError` naming the file and line for anything wrong, in particular
    an edge naming a node the network does not have.
    """
    p = Path(str(path)).expanduser()
    if not str(path):
        raise UserError("topology.type=edge_list needs topology.path=FILE ('u v [weight]' "
                        "per line)")
    if not p.is_file():
        raise UserError(f"topology.path={path}: no such file")
    edges: list[tuple[int, int, float]] = []
    for lineno, raw in enumerate(p.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) not in (2, 3):
            raise UserError(f"{p}:{lineno}: expected 'u v [weight]', got {raw.strip()!r}")
        try:
            u, v = int(parts[0]), int(parts[1])
            w = float(parts[2]) if len(parts) == 3 else 1.0
        except ValueError:
            raise UserError(f"{p}:{lineno}: node ids must be integers and the weight a "
                            f"number, got {raw.strip()!r}") from None
        for node in (u, v):
            if not 0 <= node < n:
                raise UserError(f"{p}:{lineno}: edge names unknown node {node}; the network "
                                f"has nodes 0..{n - 1} (num_clients={n})")
        if u == v:
            raise UserError(f"{p}:{lineno}: self-loop {u}-{v} is not an edge")
        if not (math.isfinite(w) and w > 0):
            raise UserError(f"{p}:{lineno}: edge weight {w} must be a positive number")
        edges.append((u, v, w))
    return edges


def validate_topology(t: Mapping[str, Any]) -> None:
    """Check `topology.*` without building anything large (raises UserError)."""
    kind = t.get("type")
    if kind not in TOPOLOGIES:
        raise UserError(f"topology.type={kind!r} is not valid (choose from: "
                        f"{', '.join(TOPOLOGIES)})")
    n = _int(t, "n", lo=1)
    if kind == "barabasi_albert":
        _int(t, "m", lo=1, hi=n - 1,
             why=f" (Barabasi-Albert needs 1 <= m < n; n={n}: lower topology.m or add nodes)")
    elif kind == "erdos_renyi":
        _float(t, "p", 0.0, 1.0)
    elif kind == "watts_strogatz":
        _int(t, "k", lo=1, hi=n - 1, why=f" (each node's ring neighbours; n={n})")
        _float(t, "p", 0.0, 1.0)
    elif kind == "random_geometric":
        _float(t, "radius", 0.0)
    elif kind == "grid":
        rows = t.get("rows")
        if rows is not None:
            rows = _int(t, "rows", lo=1)
            if n % rows:
                raise UserError(f"topology.rows={rows} does not divide n={n}; a grid needs "
                                "n = rows x cols")
    elif kind == "edge_list":
        read_edge_list(str(t.get("path") or ""), n)
    _int(t, "seed", lo=0, hi=2**32 - 1)


def _grid_shape(n: int, rows: int | None) -> tuple[int, int]:
    if rows is None:
        rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)
    return rows, n // rows


def build_graph(t: Mapping[str, Any]) -> Topology:
    """Build the configured initial graph (validated first)."""
    validate_topology(t)
    kind, n, seed = str(t["type"]), int(t["n"]), int(t["seed"])
    positions: dict[int, tuple[float, float]] | None = None
    if kind == "barabasi_albert":
        g = nx.barabasi_albert_graph(n, int(t["m"]), seed=seed)
    elif kind == "erdos_renyi":
        g = nx.gnp_random_graph(n, float(t["p"]), seed=seed)
    elif kind == "watts_strogatz":
        g = nx.watts_strogatz_graph(n, int(t["k"]), float(t["p"]), seed=seed)
    elif kind == "random_geometric":
        g = nx.random_geometric_graph(n, float(t["radius"]), seed=seed)
        positions = {int(i): (float(p[0]), float(p[1]))
                     for i, p in nx.get_node_attributes(g, "pos").items()}
    elif kind == "ring":
        g = nx.cycle_graph(n) if n >= 3 else nx.path_graph(n)
    elif kind == "grid":
        rows, cols = _grid_shape(n, t.get("rows"))
        lattice = nx.grid_2d_graph(rows, cols)
        g = nx.convert_node_labels_to_integers(lattice, ordering="sorted")
        positions = {r * cols + c: (float(c), float(-r)) for r, c in lattice.nodes}
    elif kind == "star":
        g = nx.star_graph(n - 1) if n >= 2 else nx.empty_graph(1)
    elif kind == "complete":
        g = nx.complete_graph(n)
    else:  # edge_list
        g = nx.empty_graph(n)
        for u, v, w in read_edge_list(str(t["path"]), n):
            g.add_edge(u, v, weight=w)
    clean = nx.Graph()
    clean.add_nodes_from(range(n))
    for u, v, data in g.edges(data=True):
        if "weight" in data and data["weight"] != 1.0:
            clean.add_edge(int(u), int(v), weight=float(data["weight"]))
        else:
            clean.add_edge(int(u), int(v))
    return Topology(kind, clean, positions)

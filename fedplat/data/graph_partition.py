"""Subgraph partitioners: which nodes of the global graph each client holds (FED-PUB, §4).

* `metis_disjoint`: METIS cuts the graph into K parts; client k holds part k and the
  **induced** subgraph (edges with both ends in the part). Edges between parts are dropped:
  they are the links missing between clients' subgraphs.
* `metis_overlapping`: METIS cuts the graph into C = K / clients_per_community communities;
  each community serves `clients_per_community` clients, each holding a uniform random
  `sample_ratio` share of the community's nodes (induced subgraph). Client id =
  community * clients_per_community + index. Clients of one community overlap (two independent
  50 % samples share about 25 % of the community, i.e. half of each client's nodes); clients of
  different communities share no node.

METIS comes from `pymetis` (binary wheels). Its output is deterministic for a fixed graph and
`metis_seed`, but differs between METIS builds, so partitions are not the authors' bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedplat import seeding
from fedplat.errors import UserError


@dataclass(frozen=True)
class GraphPartition:
    """Sorted global node ids per client, and each client's METIS community when known."""

    nodes: list[np.ndarray]
    community: list[int] | None = None


def metis(edge_index: np.ndarray, num_nodes: int, parts: int, seed: int) -> np.ndarray:
    """METIS part (0..parts-1) of every node; `edge_index` holds both edge directions."""
    if parts == 1:
        return np.zeros(num_nodes, dtype=np.int64)
    try:
        import pymetis
    except ImportError:
        raise UserError("METIS partitioning needs pymetis, which is not installed: "
                        "pip install 'fedplat[graph]' (or pip install pymetis)") from None
    src, dst = edge_index
    order = np.lexsort((dst, src))
    starts = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=num_nodes))])
    adjacency = pymetis.CSRAdjacency(starts.astype(np.int64), dst[order].astype(np.int64))
    _, membership = pymetis.part_graph(parts, adjacency=adjacency,
                                       options=pymetis.Options(seed=int(seed)))
    return np.asarray(membership, dtype=np.int64)


def metis_disjoint(edge_index: np.ndarray, num_nodes: int, num_clients: int,
                   metis_seed: int) -> GraphPartition:
    """One METIS part per client."""
    part = metis(edge_index, num_nodes, num_clients, metis_seed)
    return GraphPartition([np.flatnonzero(part == k) for k in range(num_clients)])


def metis_overlapping(edge_index: np.ndarray, num_nodes: int, num_clients: int,
                      metis_seed: int, clients_per_community: int, sample_ratio: float,
                      sample_seed: int) -> GraphPartition:
    """`clients_per_community` random `sample_ratio` samples of each METIS community."""
    rng = seeding.rng(sample_seed, seeding.PARTITION, 0x0E)
    communities = num_clients // clients_per_community
    part = metis(edge_index, num_nodes, communities, metis_seed)
    nodes: list[np.ndarray] = []
    community: list[int] = []
    for c in range(communities):
        members = np.flatnonzero(part == c)
        take = max(1, round(sample_ratio * len(members)))
        for _ in range(clients_per_community):
            nodes.append(np.sort(rng.choice(members, take, replace=False)))
            community.append(c)
    return GraphPartition(nodes, community)


@dataclass(frozen=True)
class GraphPartitionerSpec:
    """A subgraph partition function, its parameters and their check."""

    fn: Callable[..., GraphPartition]
    params: tuple[str, ...]
    validate: Callable[[dict[str, Any], int, int], None]


def _int(params: dict[str, Any], key: str, lo: int) -> int:
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise UserError(f"partition.{key}={v!r} must be an integer >= {lo}")
    return v


def _check_disjoint(params: dict[str, Any], num_clients: int, num_nodes: int) -> None:
    _int(params, "metis_seed", 0)
    if num_clients > num_nodes:
        raise UserError(f"num_clients={num_clients} exceeds the {num_nodes} nodes of the graph; "
                        "use fewer clients")


def _check_overlapping(params: dict[str, Any], num_clients: int, num_nodes: int) -> None:
    _int(params, "metis_seed", 0)
    _int(params, "sample_seed", 0)
    per = _int(params, "clients_per_community", 1)
    ratio = params["sample_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise UserError(f"partition.sample_ratio={ratio!r} must be in (0, 1]")
    if num_clients % per:
        raise UserError(f"num_clients={num_clients} is not a multiple of "
                        f"partition.clients_per_community={per}; the overlapping setting "
                        "gives every METIS community the same number of clients")
    if num_clients // per > num_nodes:
        raise UserError(f"{num_clients // per} communities exceed the {num_nodes} nodes of the "
                        "graph; use fewer clients")


#: Registered subgraph partitioners (`partition=<name>` with a graph dataset).
GRAPH_PARTITIONERS: dict[str, GraphPartitionerSpec] = {
    "metis_disjoint": GraphPartitionerSpec(metis_disjoint, ("metis_seed",), _check_disjoint),
    "metis_overlapping": GraphPartitionerSpec(
        metis_overlapping,
        ("metis_seed", "clients_per_community", "sample_ratio", "sample_seed"),
        _check_overlapping),
}


def get_graph_partitioner(name: str, dataset: str) -> GraphPartitionerSpec:
    """The subgraph partitioner `name`, or a `UserError` naming the valid ones."""
    try:
        return GRAPH_PARTITIONERS[name]
    except KeyError:
        raise UserError(f"partition '{name}' does not apply to graph dataset '{dataset}' "
                        f"(choose from: {', '.join(sorted(GRAPH_PARTITIONERS))})") from None


def graph_partition_params(spec: GraphPartitionerSpec,
                           part_cfg: dict[str, Any]) -> dict[str, Any]:
    """The parameters `spec` takes, read from the partition config (missing = UserError)."""
    missing = [p for p in spec.params if p not in part_cfg]
    if missing:
        raise UserError(f"partition '{part_cfg.get('name')}' needs {', '.join(missing)}")
    return {p: part_cfg[p] for p in spec.params}

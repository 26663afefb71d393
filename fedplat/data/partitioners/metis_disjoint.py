"""`partition=metis_disjoint`: one METIS part of the graph per client (FED-PUB, section 4).

Client k holds part k and its **induced** subgraph (edges with both ends in the part). Edges
between parts are dropped: they are the links missing between clients' subgraphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedplat.data.base import GRAPH, GraphDataset
from fedplat.data.graphs import metis
from fedplat.data.partitioners.base import GraphPartition, Partitioner, is_int
from fedplat.errors import UserError


def metis_disjoint(edge_index: np.ndarray, num_nodes: int, num_clients: int,
                   metis_seed: int) -> GraphPartition:
    """One METIS part per client."""
    part = metis(edge_index, num_nodes, num_clients, metis_seed)
    return GraphPartition([np.flatnonzero(part == k) for k in range(num_clients)])


def partition(graph: GraphDataset, num_shares: int, rng: np.random.Generator,
              **params: Any) -> GraphPartition:
    """`metis_disjoint` of the global graph (`rng` unused: METIS has `metis_seed`)."""
    return metis_disjoint(graph.edge_index, graph.num_nodes, num_shares, **params)


def check_seed(params: dict[str, Any], key: str) -> None:
    """`partition.<key>` is an integer >= 0, or one error line."""
    if not is_int(params[key], 0):
        raise UserError(f"partition.{key}={params[key]!r} must be an integer >= 0")


def check(params: dict[str, Any], num_clients: int, num_classes: int, num_nodes: int) -> None:
    """metis_seed >= 0 and at most one client per node."""
    check_seed(params, "metis_seed")
    if num_clients > num_nodes:
        raise UserError(f"num_clients={num_clients} exceeds the {num_nodes} nodes of the graph; "
                        "use fewer clients")


PARTITIONER = Partitioner("metis_disjoint", partition, ("metis_seed",), check, kind=GRAPH)

"""`partition=metis_overlapping`: overlapping random samples of METIS communities (FED-PUB).

METIS cuts the graph into C = K / clients_per_community communities; each community serves
`clients_per_community` clients, each holding a uniform random `sample_ratio` share of the
community's nodes (induced subgraph). Client id = community * clients_per_community + index.
Clients of one community overlap (two independent 50 % samples share about 25 % of the
community, i.e. half of each client's nodes); clients of different communities share no node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedplat.core import seeding
from fedplat.data.base import GRAPH, GraphDataset
from fedplat.data.graphs import metis
from fedplat.data.partitioners.base import GraphPartition, Partitioner, is_int
from fedplat.data.partitioners.metis_disjoint import check_seed
from fedplat.errors import UserError


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


def partition(graph: GraphDataset, num_shares: int, rng: np.random.Generator,
              **params: Any) -> GraphPartition:
    """`metis_overlapping` of the global graph (`rng` unused: the seeds are parameters)."""
    return metis_overlapping(graph.edge_index, graph.num_nodes, num_shares, **params)


def check(params: dict[str, Any], num_clients: int, num_classes: int, num_nodes: int) -> None:
    """Seeds >= 0, clients_per_community >= 1 dividing num_clients, sample_ratio in (0, 1]."""
    check_seed(params, "metis_seed")
    check_seed(params, "sample_seed")
    per = params["clients_per_community"]
    if not is_int(per, 1):
        raise UserError(f"partition.clients_per_community={per!r} must be an integer >= 1")
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


PARTITIONER = Partitioner(
    "metis_overlapping", partition,
    ("metis_seed", "clients_per_community", "sample_ratio", "sample_seed"), check, kind=GRAPH)

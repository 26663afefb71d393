"""DecAvg: decentralized averaging over a node's closed neighbourhood (pure functions).

In every round each alive node i replaces its model by a weighted average over
N̄_i = {i} + {alive neighbours whose message arrived}, then trains on its own data (relays,
holding no data, do not train), then sends its model to its neighbours. The weight rules
(rows always sum to 1):

| rule | W_ij, j ∈ N̄_i |
|---|---|
| uniform | 1 / |N̄_i| |
| data_size | |D_j| / Σ_{k∈N̄_i} |D_k| (relays get weight 0 in others' averages) |
| metropolis_hastings | 1 / (1 + max(deg_i, deg_j)) for j != i, W_ii = 1 - Σ_{j≠i} W_ij |

Degrees are those of the current alive graph, so MH stays symmetric and doubly stochastic on
it (each component converges to its own average). `data_size` has a zero-data guard: when the
whole neighbourhood holds no data (a relay surrounded by relays) the row falls back to
`uniform` (default: relays keep forwarding) or `keep_own`, and never divides by zero. Optional
link weights ("trust") multiply the neighbours' weights, then the row is renormalised.

`strategy=decavg` (conf/strategy/decavg.yaml) holds the rule's settings; the scenario checks
them (`simulations.disaster.config`) and the shards apply these functions every round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch

WEIGHT_RULES: tuple[str, ...] = ("uniform", "data_size", "metropolis_hastings")
FALLBACKS: tuple[str, ...] = ("uniform", "keep_own")


@dataclass(frozen=True)
class Row:
    """One node's aggregation row.

    `members`: the node first, then its neighbours by id; `weights`: float64, summing to 1.
    """

    members: tuple[int, ...]
    weights: np.ndarray
    fallback: bool = False


def row_weights(
    i: int,
    neighbours: Sequence[int],
    *,
    rule: str,
    sizes: Mapping[int, float] | Sequence[float] | np.ndarray,
    degrees: Mapping[int, int] | Sequence[int] | np.ndarray | None = None,
    fallback: str = "uniform",
    link_weights: Mapping[int, float] | None = None,
) -> Row:
    """Weights of node i's closed neighbourhood under `rule`.

    `neighbours` are the neighbours whose messages i actually has (a lost neighbour is simply
    absent). `sizes[j]` is j's number of training samples (0 for a relay); `degrees[j]` is j's
    degree in the current alive graph (Metropolis-Hastings only). `link_weights[j]` multiplies
    W_ij for j != i before the row is renormalised.
    """
    members = (int(i), *sorted(int(j) for j in neighbours if int(j) != int(i)))
    k = len(members)
    used_fallback = False
    if rule == "uniform":
        w = np.full(k, 1.0 / k)
    elif rule == "data_size":
        s = np.array([float(sizes[j]) for j in members], dtype=np.float64)
        total = float(s.sum())
        if total > 0:
            w = s / total
        else:  # zero-data guard: never divide by zero
            used_fallback = k > 1
            if fallback == "keep_own":
                w = np.zeros(k)
                w[0] = 1.0
            elif fallback == "uniform":
                w = np.full(k, 1.0 / k)
            else:
                raise ValueError(f"unknown zero_data_fallback {fallback!r}")
    elif rule == "metropolis_hastings":
        if degrees is None:
            raise ValueError("metropolis_hastings needs degrees")
        di = int(degrees[i])
        w = np.zeros(k)
        for pos, j in enumerate(members[1:], start=1):
            w[pos] = 1.0 / (1.0 + max(di, int(degrees[j])))
        w[0] = 1.0 - float(w[1:].sum())
    else:
        raise ValueError(f"unknown weight rule {rule!r}")
    if link_weights:
        scale = np.array([1.0] + [float(link_weights.get(j, 1.0)) for j in members[1:]])
        w = w * scale
        w = w / w.sum()
    return Row(members, w, used_fallback)


def mix(row: Row, vectors: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Σ_j W_ij x_j over the row's members.

    Accumulated in float64 in member order, so the result does not depend on how nodes are
    spread over workers.
    """
    if len(row.members) == 1 and row.weights[0] == 1.0:
        return vectors[row.members[0]]
    stack = torch.stack([vectors[j] for j in row.members]).to(torch.float64)
    w = torch.from_numpy(np.ascontiguousarray(row.weights, dtype=np.float64))
    return (w @ stack).to(vectors[row.members[0]].dtype)


def mixing_matrix(graph: nx.Graph, *, rule: str, sizes: Mapping[int, float] | Sequence[float],
                  fallback: str = "uniform", use_link_weights: bool = True
                  ) -> tuple[np.ndarray, list[int], int]:
    """Dense W over `graph`'s nodes (sorted): row i holds node i's weights.

    Returns (W, node order, number of rows that used the zero-data fallback). For analysis and
    tests; the runner computes rows node by node from the messages that arrived.
    """
    nodes = sorted(int(v) for v in graph.nodes)
    pos = {v: p for p, v in enumerate(nodes)}
    degrees = {v: graph.degree(v) for v in nodes}
    w = np.zeros((len(nodes), len(nodes)))
    fallbacks = 0
    for v in nodes:
        nbrs = sorted(int(u) for u in graph.neighbors(v))
        lw = ({u: float(graph.edges[v, u].get("weight", 1.0)) for u in nbrs}
              if use_link_weights else None)
        row = row_weights(v, nbrs, rule=rule, sizes=sizes, degrees=degrees, fallback=fallback,
                          link_weights=lw)
        fallbacks += int(row.fallback)
        for j, x in zip(row.members, row.weights):
            w[pos[v], pos[j]] = x
    return w, nodes, fallbacks


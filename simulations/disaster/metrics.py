"""Per-round metrics of a P2P network: connectivity, accuracy spread, consensus.

Pure functions of the alive graph and the nodes' results, so they are tested on hand-built
graphs. Components are numbered by size (0 = the giant component; ties by smallest node id).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np


def components(graph: nx.Graph) -> list[list[int]]:
    """Connected components as sorted node lists, largest first (ties: smallest id first)."""
    comps = [sorted(int(v) for v in c) for c in nx.connected_components(graph)]
    return sorted(comps, key=lambda c: (-len(c), c[0]))


def component_labels(comps: Sequence[Sequence[int]]) -> dict[int, int]:
    """Node -> index of its component in `comps`."""
    return {v: k for k, comp in enumerate(comps) for v in comp}


def graph_metrics(graph: nx.Graph) -> dict[str, Any]:
    """giant_size, giant_frac (of alive nodes), n_components, n_isolated, alive, edges."""
    comps = components(graph)
    n = graph.number_of_nodes()
    giant = len(comps[0]) if comps else 0
    return {
        "alive": n,
        "edges": graph.number_of_edges(),
        "giant_size": giant,
        "giant_frac": giant / n if n else math.nan,
        "n_components": len(comps),
        "n_isolated": sum(1 for v in graph.nodes if graph.degree(v) == 0),
    }


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def accuracy_metrics(acc: Mapping[int, float], comps: Sequence[Sequence[int]],
                     relays: Iterable[int]) -> dict[str, float]:
    """Mean/std/min/max over alive nodes, over holders and relays, inside/outside the giant."""
    relay_set = set(relays)
    vals = np.array([acc[v] for v in sorted(acc)], dtype=np.float64)
    giant = set(comps[0]) if comps else set()
    out = {
        "acc_mean": float(vals.mean()) if len(vals) else math.nan,
        "acc_std": float(vals.std()) if len(vals) else math.nan,
        "acc_min": float(vals.min()) if len(vals) else math.nan,
        "acc_max": float(vals.max()) if len(vals) else math.nan,
        "acc_mean_holders": _mean(a for v, a in acc.items() if v not in relay_set),
        "acc_mean_relays": _mean(a for v, a in acc.items() if v in relay_set),
        "acc_giant": _mean(a for v, a in acc.items() if v in giant),
        "acc_outside_giant": _mean(a for v, a in acc.items() if v not in giant),
    }
    return out


def consensus_means(parts: Iterable[Mapping[int, tuple[int, np.ndarray]]]
                    ) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Combine per-shard (count, sum) by label into means and counts."""
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for part in parts:
        for lab, (c, s) in part.items():
            if lab in sums:
                sums[lab] = sums[lab] + s
                counts[lab] += c
            else:
                sums[lab] = np.array(s, dtype=np.float64)
                counts[lab] = c
    return {lab: sums[lab] / counts[lab] for lab in sums}, counts


def consensus_distance(models: Mapping[int, np.ndarray]) -> float:
    """(1/|S|) Σ_i ||w_i - w̄||_2 over the given models (0 for identical models)."""
    if not models:
        return math.nan
    stack = np.stack([np.asarray(models[v], dtype=np.float64) for v in sorted(models)])
    return float(np.linalg.norm(stack - stack.mean(axis=0), axis=1).mean())


def component_table(comps: Sequence[Sequence[int]], acc: Mapping[int, float],
                    relays: Iterable[int], consensus: Mapping[int, float],
                    limit: int = 20) -> list[dict[str, Any]]:
    """The `limit` largest components: size, holders, mean accuracy, consensus distance."""
    relay_set = set(relays)
    out = []
    for k, comp in enumerate(comps[:limit]):
        out.append({
            "size": len(comp),
            "holders": sum(1 for v in comp if v not in relay_set),
            "acc": _mean(acc[v] for v in comp if v in acc),
            "consensus": consensus.get(k, 0.0 if len(comp) == 1 else math.nan),
        })
    return out

"""`dataset=sbm`: a seeded stochastic-block-model graph, the offline graph default.

Generated here with numpy (no download, no scikit-learn, no PyTorch Geometric). Blocks are
planted communities with their own label mix and feature offset, so a personalised method has
something to find (specs/datasets.md section 2.7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.core import seeding
from fedplat.data.graphs import RawGraph, check_positive, graph_spec, undirected
from fedplat.errors import UserError


def sbm_graph(blocks: int, nodes_per_block: int, num_classes: int, num_features: int, *,
              intra_degree: float, inter_degree: float, homophily: float, label_alpha: float,
              feature_signal: float, block_shift: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A planted-partition graph: (x, y, edge_index, block), fully determined by `seed`.

    Each block (planted community) draws its own label mix from Dir(label_alpha). Edges are
    independent: inside a block a node has on average `intra_degree` neighbours, a fraction
    `homophily` of them with its own label; across blocks `inter_degree`. Features are
    class means (scale `feature_signal`) plus a per-block offset (scale `block_shift`) plus
    unit Gaussian noise, so both the labels and the feature distribution shift between
    communities, as between METIS communities of a real citation graph.
    """
    rng = seeding.rng(seed, seeding.SCENARIO, 0x5B)
    n = blocks * nodes_per_block
    block = np.repeat(np.arange(blocks), nodes_per_block)
    mix = rng.dirichlet(np.full(num_classes, label_alpha), size=blocks)
    y = np.concatenate([rng.choice(num_classes, nodes_per_block, p=mix[b])
                        for b in range(blocks)]).astype(np.int64)
    nb = nodes_per_block
    # Per-pair edge probabilities that give the requested expected degrees.
    frac_same = np.mean([(np.bincount(y[block == b], minlength=num_classes) ** 2).sum()
                         for b in range(blocks)]) / nb**2
    p_same = min(1.0, homophily * intra_degree / max(frac_same * nb, 1.0))
    p_diff = min(1.0, (1 - homophily) * intra_degree / max((1 - frac_same) * nb, 1.0))
    p_out = min(1.0, inter_degree / max(n - nb, 1))
    edges = []
    for a in range(blocks):  # block pairs one at a time: memory O(nodes_per_block^2)
        ya = y[a * nb:(a + 1) * nb]
        for b in range(a, blocks):
            yb = y[b * nb:(b + 1) * nb]
            if a == b:
                prob = np.where(ya[:, None] == yb[None, :], p_same, p_diff)
                hit = np.triu(rng.random((nb, nb)) < prob, k=1)
            else:
                hit = rng.random((nb, nb)) < p_out
            src, dst = np.nonzero(hit)
            edges.append(np.stack([src + a * nb, dst + b * nb]))
    edge_index = undirected(np.concatenate(edges, axis=1), n)
    means = rng.standard_normal((num_classes, num_features)) * feature_signal
    shifts = rng.standard_normal((blocks, num_features)) * block_shift
    x = (means[y] + shifts[block] + rng.standard_normal((n, num_features))).astype(np.float32)
    return x, y, edge_index, block


def check_sbm_config(ds: DictConfig) -> None:
    """Range checks of the generator's keys (one line per problem)."""
    for key in ("blocks", "nodes_per_block", "num_classes", "num_features"):
        check_positive(ds, key, integer=True)
    for key in ("intra_degree", "label_alpha"):
        check_positive(ds, key)
    for key in ("inter_degree", "feature_signal", "block_shift"):
        check_positive(ds, key, lo=-1e-300)
    h = ds.get("homophily")
    if isinstance(h, bool) or not isinstance(h, int | float) or not 0 <= h <= 1:
        raise UserError(f"dataset.homophily={h!r} must be in [0, 1]")


def _build(ds: DictConfig, cache: Path) -> RawGraph:
    x, y, ei, block = sbm_graph(
        int(ds.blocks), int(ds.nodes_per_block), int(ds.num_classes),
        int(ds.num_features), intra_degree=float(ds.intra_degree),
        inter_degree=float(ds.inter_degree), homophily=float(ds.homophily),
        label_alpha=float(ds.label_alpha), feature_signal=float(ds.feature_signal),
        block_shift=float(ds.block_shift), seed=int(ds.seed))
    return RawGraph(x, y, ei, int(ds.num_classes), block)


SPECS = (graph_spec("sbm", _build, check_sbm_config),)

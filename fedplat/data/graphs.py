"""Graph preprocessing shared by the graph datasets (node classification on one global graph).

Every graph dataset (`fedplat.data.datasets.sbm`, `fedplat.data.datasets.pyg`) only produces
raw arrays (features, labels, edges); `graph_spec` turns them into a registered dataset whose
`load` gives a `GraphDataset`: the largest connected component, optionally row-normalised
features (as FED-PUB's data generators do), and a random global train/val/test node split
drawn before partitioning (paper: 20/40/40). Cutting the graph into client subgraphs is the
job of the graph partitioners (`fedplat.data.partitioners.metis_*`), which use `metis` below.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from fedplat.core import seeding
from fedplat.data import sources
from fedplat.data.base import GRAPH, DatasetInfo, DatasetSpec, GraphDataset
from fedplat.data.provenance import DataSource
from fedplat.errors import UserError


@dataclass(frozen=True)
class RawGraph:
    """A graph as its source gives it: before preprocessing and the global split."""

    x: np.ndarray
    y: np.ndarray
    edge_index: np.ndarray
    num_classes: int
    block: np.ndarray | None = None
    source: DataSource | None = None


# --- preprocessing ----------------------------------------------------------------------------


def undirected(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Both directions of every edge, self-loops and duplicates removed, sorted by (src, dst)."""
    src, dst = edge_index
    keep = src != dst
    pairs = np.concatenate([np.stack([src[keep], dst[keep]]), np.stack([dst[keep], src[keep]])],
                           axis=1)
    codes = np.unique(pairs[0].astype(np.int64) * num_nodes + pairs[1])
    return np.stack([codes // num_nodes, codes % num_nodes]).astype(np.int64)


def induced_subgraph(edge_index: np.ndarray, nodes: np.ndarray,
                     num_nodes: int) -> np.ndarray:
    """Edges with both ends in `nodes` (sorted global ids), relabelled to 0..len(nodes)-1."""
    local = np.full(num_nodes, -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    src, dst = local[edge_index[0]], local[edge_index[1]]
    keep = (src >= 0) & (dst >= 0)
    return np.stack([src[keep], dst[keep]])


def largest_component(x: np.ndarray, y: np.ndarray, edge_index: np.ndarray,
                      block: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Keep the largest connected component (PyG's `LargestConnectedComponents`)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(y)
    adj = sp.coo_matrix((np.ones(edge_index.shape[1]), (edge_index[0], edge_index[1])),
                        shape=(n, n))
    count, comp = connected_components(adj, directed=False)
    if count <= 1:
        return x, y, edge_index, block
    nodes = np.flatnonzero(comp == np.bincount(comp).argmax())
    return (x[nodes], y[nodes], induced_subgraph(edge_index, nodes, n),
            None if block is None else block[nodes])


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1 (PyG's `NormalizeFeatures`; all-zero rows stay zero)."""
    s = x.sum(axis=1, keepdims=True)
    s[s == 0] = 1.0
    out: np.ndarray = (x / s).astype(np.float32)
    return out


def global_split(num_nodes: int, train: float, test: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Random node split: round(train*N) train, round(test*N) test, the rest validation."""
    perm = rng.permutation(num_nodes)
    n_train, n_test = round(train * num_nodes), round(test * num_nodes)
    split = np.ones(num_nodes, dtype=np.int8)  # validation by default
    split[perm[:n_train]] = 0
    split[perm[n_train:n_train + n_test]] = 2
    return split


def split_seed(ds: DictConfig) -> int:
    """Seed of the global node split (`dataset.split_seed`)."""
    return int(ds.get("split_seed", 0))


def preprocess(name: str, raw: RawGraph, ds: DictConfig) -> GraphDataset:
    """Undirected edges, largest component, optional row normalisation, global node split."""
    x, y, block = raw.x, raw.y, raw.block
    edge_index = undirected(raw.edge_index, len(y))
    if ds.get("lcc", True):
        x, y, edge_index, block = largest_component(x, y, edge_index, block)
    if ds.get("normalize_features", False):
        x = normalize_rows(x)
    rng = seeding.rng(split_seed(ds), seeding.SPLIT, 0x6A)
    split = global_split(len(y), float(ds.split_train), float(ds.split_test), rng)
    info = DatasetInfo(name, (int(x.shape[1]),), raw.num_classes, GRAPH, len(y))
    return GraphDataset(info, x.astype(np.float32), y, edge_index, split, block, raw.source)


# --- config checks ----------------------------------------------------------------------------


def check_split_config(ds: DictConfig) -> None:
    """Range checks of the global node split, common to every graph dataset."""
    train, test = ds.get("split_train"), ds.get("split_test")
    for key, v in (("split_train", train), ("split_test", test)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
            raise UserError(f"dataset.{key}={v!r} must be a fraction in (0, 1)")
    assert isinstance(train, int | float) and isinstance(test, int | float)
    if train + test >= 1:
        raise UserError(f"dataset.split_train + dataset.split_test = {train + test:g} leaves "
                        "no validation nodes; keep their sum below 1")


def check_positive(ds: DictConfig, key: str, integer: bool = False, lo: float = 0.0) -> None:
    """`dataset.<key>` is a number (an integer if `integer`) above `lo`, or one error line."""
    v = ds.get(key)
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or not v > lo:
        kind = "an integer" if integer else "a number"
        raise UserError(f"dataset.{key}={v!r} must be {kind} > {lo:g}")


# --- a registered graph dataset -----------------------------------------------------------------


def _no_keys(ds: DictConfig) -> None:
    return None


def _key(ds: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(ds, resolve=True), sort_keys=True)


def graph_spec(name: str, build: Callable[[DictConfig, Path], RawGraph],
               check_keys: Callable[[DictConfig], None] = _no_keys,
               declared: Callable[[DictConfig], DatasetInfo] | None = None) -> DatasetSpec:
    """A `DatasetSpec` for a graph source: checks, preprocessing and a per-process cache.

    `build(ds, cache)` returns the raw graph; `check_keys(ds)` checks the source's own keys
    (after the global split's). The preprocessed graph is cached per config, so `info`,
    `check` and every client of a process share one load. `declared(ds)` describes a graph
    read from files without reading them (see `DatasetSpec.declared`).
    """

    @functools.lru_cache(maxsize=4)
    def cached(key: str, cache: str) -> GraphDataset:
        ds = OmegaConf.create(json.loads(key))
        assert isinstance(ds, DictConfig)
        return preprocess(name, build(ds, Path(cache)), ds)

    def load(ds: DictConfig, cache: Path) -> GraphDataset:
        check_split_config(ds)
        check_keys(ds)
        return cached(_key(ds), str(cache))

    def info(ds: DictConfig) -> DatasetInfo:
        return load(ds, sources.cache_dir(None)).info

    def check(ds: DictConfig) -> None:
        load(ds, sources.cache_dir(None))

    def declared_info(ds: DictConfig) -> DatasetInfo:
        check_split_config(ds)
        check_keys(ds)
        assert declared is not None
        return declared(ds)

    return DatasetSpec(name, info, check, load, None if declared is None else declared_info)


# --- METIS ------------------------------------------------------------------------------------


def metis(edge_index: np.ndarray, num_nodes: int, parts: int, seed: int) -> np.ndarray:
    """METIS part (0..parts-1) of every node; `edge_index` holds both edge directions.

    From `pymetis` (binary wheels). Deterministic for a fixed graph and seed, but different
    METIS builds give different parts, so partitions are not the FED-PUB authors' bit for bit.
    """
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

"""Graph datasets for node classification: one global graph, later cut into client subgraphs.

Each loader returns a `GraphDataset`: the preprocessed global graph (largest connected
component, optionally row-normalised features, as FED-PUB's data generators do) with a random
global train/val/test node split drawn before partitioning (paper: 20/40/40). Partitioning into
client subgraphs lives in `fedplat.data.graph_partition`.

Sources (specs/datasets.md sections 2.6-2.7):

* `sbm`: a seeded stochastic-block-model graph generated here with numpy (no download, no
  scikit-learn, no PyTorch Geometric), the offline default. Blocks are planted communities
  with their own label mix and feature offset, so a personalised method has something to find.
* `cora`, `citeseer`, `pubmed` (Planetoid) and `computers`, `photo` (Amazon) through PyTorch
  Geometric. Raw files are looked up in `dataset.root`, `$FEDPLAT_DATA_DIR/<dir>` and
  `../shared/data/<dir>`, then **copied** into the cache, because PyG writes its processed
  files next to the raw ones and the user's (or the shared) folder must stay untouched. Without
  local files they download into the cache only when `dataset.allow_download=true`.
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from fedplat import seeding
from fedplat.data import sources
from fedplat.data.datasets import DatasetInfo, DatasetSpec
from fedplat.errors import UserError

#: `DatasetInfo.kind` of graph datasets (models and partitioners dispatch on it).
GRAPH = "graph"


@dataclass(frozen=True)
class GraphDataset:
    """A preprocessed global graph with its global node split.

    `edge_index` holds both directions of every undirected edge and no self-loops.
    `split[v]` is 0 (train), 1 (val) or 2 (test). `block` is the planted community of each
    node for synthetic graphs (None for real ones).
    """

    info: DatasetInfo
    x: np.ndarray  # (N, F) float32
    y: np.ndarray  # (N,) int64
    edge_index: np.ndarray  # (2, E) int64
    split: np.ndarray  # (N,) int8
    block: np.ndarray | None = None

    @property
    def num_nodes(self) -> int:
        """Number of nodes N."""
        return len(self.y)


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
    return (x / s).astype(np.float32)


def global_split(num_nodes: int, train: float, test: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Random node split: round(train*N) train, round(test*N) test, the rest validation."""
    perm = rng.permutation(num_nodes)
    n_train, n_test = round(train * num_nodes), round(test * num_nodes)
    split = np.ones(num_nodes, dtype=np.int8)  # validation by default
    split[perm[:n_train]] = 0
    split[perm[n_train:n_train + n_test]] = 2
    return split


# --- synthetic stochastic block model ----------------------------------------------------------


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


# --- PyTorch Geometric sources ----------------------------------------------------------------


@dataclass(frozen=True)
class PygSource:
    """Where PyG keeps one dataset: its loader, folder names and raw files."""

    loader: str  # "planetoid" | "amazon"
    pyg_name: str  # name passed to the PyG class
    folder: str  # searched as <dir>/<folder>/raw/
    raw_files: tuple[str, ...]
    num_features: int
    num_classes: int
    group: str  # subdirectory of the data roots ("planetoid", "amazon")


def _planetoid(name: str, key: str, feats: int, classes: int) -> PygSource:
    files = tuple(f"ind.{key}.{s}" for s in ("x", "y", "tx", "ty", "allx", "ally", "graph",
                                               "test.index"))
    return PygSource("planetoid", name, name, files, feats, classes, "planetoid")


PYG_SOURCES: dict[str, PygSource] = {
    "cora": _planetoid("Cora", "cora", 1433, 7),
    "citeseer": _planetoid("CiteSeer", "citeseer", 3703, 6),
    "pubmed": _planetoid("PubMed", "pubmed", 500, 3),
    "computers": PygSource("amazon", "Computers", "Computers",
                           ("amazon_electronics_computers.npz",), 767, 10, "amazon"),
    "photo": PygSource("amazon", "Photo", "Photo", ("amazon_electronics_photo.npz",), 745, 8,
                       "amazon"),
}


def _raw_dir(src: PygSource, ds: DictConfig) -> Path | None:
    """The first folder holding all raw files: <d>/<Name>/raw, <d>/<Name> or <d> itself."""
    for d in sources.candidate_dirs(src.group, ds.get("root") or None):
        for cand in (d / src.folder / "raw", d / src.folder, d / "raw", d):
            if all((cand / f).is_file() for f in src.raw_files):
                return cand
    return None


def _require_pyg(what: str) -> None:
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs PyTorch Geometric: pip install 'fedplat[graph]'") from None


def _load_pyg(src: PygSource, ds: DictConfig, cache: Path) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Raw (x, y, edge_index) through PyG, processed inside the cache only."""
    _require_pyg(f"dataset '{ds.name}'")
    root = cache / src.group
    target = root / src.folder / "raw"
    found = _raw_dir(src, ds)
    have_cached = all((target / f).is_file() for f in src.raw_files)
    if found is not None and found.resolve() != target.resolve():
        target.mkdir(parents=True, exist_ok=True)
        for f in src.raw_files:
            if not (target / f).is_file() or \
                    (target / f).stat().st_size != (found / f).stat().st_size:
                shutil.copyfile(found / f, target / f)
    elif found is None and not have_cached and not ds.get("allow_download", False):
        dirs = ", ".join(str(d) for d in sources.candidate_dirs(src.group,
                                                                ds.get("root") or None))
        raise UserError(f"{src.pyg_name} raw files not found in [{dirs}] (as "
                        f"<dir>/{src.folder}/raw/{src.raw_files[0]}, ...); set "
                        "dataset.root=DIR or dataset.allow_download=true on a machine that "
                        "is online")
    try:
        if src.loader == "planetoid":
            from torch_geometric.datasets import Planetoid

            data = Planetoid(str(root), src.pyg_name)[0]
        else:
            from torch_geometric.datasets import Amazon

            data = Amazon(str(root), src.pyg_name)[0]
    except (OSError, ValueError, EOFError) as exc:  # offline download, corrupt pickle, ...
        raise UserError(f"could not load {src.pyg_name} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); provide the raw "
                        f"files in dataset.root or check the network") from None
    return (data.x.numpy().astype(np.float32), data.y.numpy().astype(np.int64),
            data.edge_index.numpy().astype(np.int64))


# --- the registered loaders -------------------------------------------------------------------


def _key(ds: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(ds, resolve=True), sort_keys=True)


def split_seed(ds: DictConfig) -> int:
    """Seed of the global node split (`dataset.split_seed`)."""
    return int(ds.get("split_seed", 0))


def _finish(name: str, x: np.ndarray, y: np.ndarray, edge_index: np.ndarray,
            ds: DictConfig, num_classes: int, block: np.ndarray | None = None) -> GraphDataset:
    edge_index = undirected(edge_index, len(y))
    if ds.get("lcc", True):
        x, y, edge_index, block = largest_component(x, y, edge_index, block)
    if ds.get("normalize_features", False):
        x = normalize_rows(x)
    rng = seeding.rng(split_seed(ds), seeding.SPLIT, 0x6A)
    split = global_split(len(y), float(ds.split_train), float(ds.split_test), rng)
    info = DatasetInfo(name, (int(x.shape[1]),), num_classes, GRAPH, len(y))
    return GraphDataset(info, x.astype(np.float32), y, edge_index, split, block)


@functools.lru_cache(maxsize=4)
def _load_cached(key: str, cache: str) -> GraphDataset:
    ds = OmegaConf.create(json.loads(key))
    assert isinstance(ds, DictConfig)
    name = str(ds.name)
    if name == "sbm":
        x, y, ei, block = sbm_graph(
            int(ds.blocks), int(ds.nodes_per_block), int(ds.num_classes),
            int(ds.num_features), intra_degree=float(ds.intra_degree),
            inter_degree=float(ds.inter_degree), homophily=float(ds.homophily),
            label_alpha=float(ds.label_alpha), feature_signal=float(ds.feature_signal),
            block_shift=float(ds.block_shift), seed=int(ds.seed))
        return _finish(name, x, y, ei, ds, int(ds.num_classes), block)
    src = PYG_SOURCES[name]
    x, y, ei = _load_pyg(src, ds, Path(cache))
    return _finish(name, x, y, ei, ds, src.num_classes)


def load_graph(ds: DictConfig, cache: Path) -> GraphDataset:
    """The preprocessed global graph of the configured dataset (cached per process)."""
    check_graph_config(ds)
    return _load_cached(_key(ds), str(cache))


def _info(ds: DictConfig) -> DatasetInfo:
    return load_graph(ds, sources.cache_dir(None)).info


def _check(ds: DictConfig) -> None:
    load_graph(ds, sources.cache_dir(None))


def _positive(ds: DictConfig, key: str, integer: bool = False, lo: float = 0.0) -> None:
    v = ds.get(key)
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or not v > lo:
        kind = "an integer" if integer else "a number"
        raise UserError(f"dataset.{key}={v!r} must be {kind} > {lo:g}")


def check_graph_config(ds: DictConfig) -> None:
    """Range checks of a graph dataset's keys (one line per problem)."""
    train, test = ds.get("split_train"), ds.get("split_test")
    for key, v in (("split_train", train), ("split_test", test)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
            raise UserError(f"dataset.{key}={v!r} must be a fraction in (0, 1)")
    assert isinstance(train, int | float) and isinstance(test, int | float)
    if train + test >= 1:
        raise UserError(f"dataset.split_train + dataset.split_test = {train + test:g} leaves "
                        "no validation nodes; keep their sum below 1")
    if str(ds.name) == "sbm":
        for key in ("blocks", "nodes_per_block", "num_classes", "num_features"):
            _positive(ds, key, integer=True)
        for key in ("intra_degree", "label_alpha"):
            _positive(ds, key)
        for key in ("inter_degree", "feature_signal", "block_shift"):
            _positive(ds, key, lo=-1e-300)
        h = ds.get("homophily")
        if isinstance(h, bool) or not isinstance(h, int | float) or not 0 <= h <= 1:
            raise UserError(f"dataset.homophily={h!r} must be in [0, 1]")


#: Nodes of each published graph (before `dataset.lcc` keeps its largest component).
PYG_NUM_NODES: dict[str, int] = {"cora": 2708, "citeseer": 3327, "pubmed": 19717,
                                 "computers": 13752, "photo": 7650}


def _declared(ds: DictConfig) -> DatasetInfo:
    check_graph_config(ds)
    name = str(ds.name)
    src = PYG_SOURCES[name]
    return DatasetInfo(name, (src.num_features,), src.num_classes, GRAPH, PYG_NUM_NODES[name])


#: Graph datasets, merged into `fedplat.data.datasets.DATASETS` (SBM is generated: no files).
GRAPH_DATASETS: dict[str, DatasetSpec] = {
    "sbm": DatasetSpec(_info, _check, load_graph),
    **{name: DatasetSpec(_info, _check, load_graph, _declared) for name in PYG_SOURCES},
}


def is_graph(info: DatasetInfo) -> bool:
    """Whether a dataset is a graph (node classification on one global graph)."""
    return info.kind == GRAPH


__all__: list[str] = ["GRAPH", "GRAPH_DATASETS", "GraphDataset", "check_graph_config",
                      "global_split", "induced_subgraph", "is_graph", "largest_component",
                      "load_graph", "normalize_rows", "sbm_graph", "undirected"]

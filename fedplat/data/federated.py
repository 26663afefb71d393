"""A federated view of a dataset: one train/val/test split per client.

The pooled dataset (its train and test parts together) is partitioned over clients by the
configured partitioner, and each client's share is cut into train/val/test, so a client's test
data follows its own distribution (what personalised-FL papers evaluate). Everything is a
function of the config and the seed, so any process (a Ray worker, a SuperNode) rebuilds the
same partition from `partition-id` alone; within a process the result is cached.

Graph datasets (`DatasetInfo.kind == "graph"`) take another builder with the same interface:
the global graph carries a global node split, a subgraph partitioner gives each client a set
of nodes, and each client gets its induced subgraph (`GraphClientData`: one full batch, with
train/val/test node masks inherited from the global split).

Semi-supervised settings: `split.label_ratio` keeps the labels of a random share of each
client's training split; the rest becomes `x_unlabeled`, whose labels never leave this module
(a client's `y_train` and label counts cover its labeled samples only). `split.server_sources`
makes the first M shares (users) labeled datasets held by the server instead of clients.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from fedplat import seeding
from fedplat.data import sources
from fedplat.data.datasets import (
    DatasetInfo,
    RawDataset,
    dataset_info,
    load_raw,
    reads_data_files,
)
from fedplat.data.graph_partition import get_graph_partitioner, graph_partition_params
from fedplat.data.graphs import GraphDataset, induced_subgraph, is_graph
from fedplat.data.partition import (
    PARTITIONERS,
    PartitionerSpec,
    get_partitioner,
    label_split,
    partition_params,
    split_client,
)
from fedplat.errors import UserError


@dataclass(frozen=True)
class ClientData:
    """One client's tensors (features float32, labels int64)."""

    cid: int
    info: DatasetInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    #: Training samples whose labels are hidden (`split.label_ratio` < 1); no labels exist here.
    x_unlabeled: torch.Tensor | None = None

    @property
    def num_train(self) -> int:
        """Number of labeled training samples."""
        return len(self.y_train)

    @property
    def num_unlabeled(self) -> int:
        """Number of training samples without labels."""
        return 0 if self.x_unlabeled is None else len(self.x_unlabeled)

    @property
    def x_train_all(self) -> torch.Tensor:
        """Every training sample, labeled ones first, labels ignored (unsupervised use)."""
        if self.x_unlabeled is None or len(self.x_unlabeled) == 0:
            return self.x_train
        return torch.cat([self.x_train, self.x_unlabeled])

    def to(self, device: torch.device) -> ClientData:
        """A copy with every tensor on `device`."""
        if self.x_train.device == device:
            return self
        return ClientData(
            self.cid, self.info,
            *(t.to(device) for t in (self.x_train, self.y_train, self.x_val, self.y_val,
                                     self.x_test, self.y_test)),
            None if self.x_unlabeled is None else self.x_unlabeled.to(device),
        )


@dataclass
class FederatedDataset:
    """Pooled arrays plus each client's (train, val, test) index arrays."""

    info: DatasetInfo
    x: np.ndarray
    y: np.ndarray
    #: Per client (labeled train, val, test) indices into x/y.
    splits: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    #: Per client: training indices whose labels are hidden (empty unless label_ratio < 1).
    unlabeled: list[np.ndarray] = field(default_factory=list)
    #: Per server source: indices of a labeled dataset held by the server (split.server_sources).
    server: list[np.ndarray] = field(default_factory=list)
    _clients: dict[int, ClientData] = field(default_factory=dict, repr=False)

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return len(self.splits)

    def client(self, cid: int) -> ClientData:
        """Client `cid`'s tensors (built once, then cached)."""
        if not 0 <= cid < self.num_clients:
            raise UserError(f"client id {cid} is outside [0, {self.num_clients - 1}]")
        if cid not in self._clients:
            tensors = []
            for idx in self.splits[cid]:
                tensors += [torch.from_numpy(np.ascontiguousarray(self.x[idx])),
                            torch.from_numpy(np.ascontiguousarray(self.y[idx]))]
            hidden = self.unlabeled[cid] if self.unlabeled else np.zeros(0, dtype=np.int64)
            x_unl = torch.from_numpy(np.ascontiguousarray(self.x[hidden]))  # features only
            self._clients[cid] = ClientData(cid, self.info, *tensors, x_unl)
        return self._clients[cid]

    @property
    def num_server_sources(self) -> int:
        """Number of labeled datasets held by the server."""
        return len(self.server)

    def server_source(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of server source `m` (all of that user's samples)."""
        idx = self.server[m]
        return (torch.from_numpy(np.ascontiguousarray(self.x[idx])),
                torch.from_numpy(np.ascontiguousarray(self.y[idx])))

    def label_counts(self, part: int = 0) -> np.ndarray:
        """(num_clients, num_classes) label histogram of part 0=train, 1=val, 2=test."""
        return np.stack([
            np.bincount(self.y[s[part]], minlength=self.info.num_classes) for s in self.splits
        ])


@dataclass(frozen=True)
class GraphClientData:
    """One client's subgraph: node features, local edges, labels and split node indices.

    Offers the interface of `ClientData` that the generic apps use (`num_train`, `y_train`,
    `y_val`, `y_test`, `info`, `to`); training and evaluation use the whole subgraph as one
    batch (`fedplat.training.train_graph`). `global_ids` maps local to global node ids.
    """

    cid: int
    info: DatasetInfo
    x: torch.Tensor  # (n, F) float32
    edge_index: torch.Tensor  # (2, E) int64, local ids, both directions
    y: torch.Tensor  # (n,) int64
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    test_idx: torch.Tensor
    global_ids: torch.Tensor

    @property
    def num_nodes(self) -> int:
        """Nodes in this client's subgraph."""
        return len(self.y)

    @property
    def num_train(self) -> int:
        """Number of training nodes."""
        return len(self.train_idx)

    @property
    def y_train(self) -> torch.Tensor:
        """Labels of the training nodes."""
        return self.y[self.train_idx]

    @property
    def y_val(self) -> torch.Tensor:
        """Labels of the validation nodes."""
        return self.y[self.val_idx]

    @property
    def y_test(self) -> torch.Tensor:
        """Labels of the test nodes."""
        return self.y[self.test_idx]

    def to(self, device: torch.device) -> GraphClientData:
        """A copy with every tensor on `device`."""
        if self.x.device == device:
            return self
        return GraphClientData(
            self.cid, self.info,
            *(t.to(device) for t in (self.x, self.edge_index, self.y, self.train_idx,
                                     self.val_idx, self.test_idx, self.global_ids)))


@dataclass
class FederatedGraph:
    """The global graph plus each client's node set (same interface as FederatedDataset)."""

    info: DatasetInfo
    graph: GraphDataset
    nodes: list[np.ndarray]
    community: list[int] | None = None
    _clients: dict[int, GraphClientData] = field(default_factory=dict, repr=False)

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return len(self.nodes)

    def client(self, cid: int) -> GraphClientData:
        """Client `cid`'s induced subgraph (built once, then cached)."""
        if not 0 <= cid < self.num_clients:
            raise UserError(f"client id {cid} is outside [0, {self.num_clients - 1}]")
        if cid not in self._clients:
            g, nodes = self.graph, self.nodes[cid]
            split = g.split[nodes]
            edges = induced_subgraph(g.edge_index, nodes, g.num_nodes)
            self._clients[cid] = GraphClientData(
                cid, self.info, torch.from_numpy(np.ascontiguousarray(g.x[nodes])),
                torch.from_numpy(np.ascontiguousarray(edges)),
                torch.from_numpy(np.ascontiguousarray(g.y[nodes])),
                *(torch.from_numpy(np.flatnonzero(split == s)) for s in (0, 1, 2)),
                torch.from_numpy(nodes.astype(np.int64)))
        return self._clients[cid]

    def client_groups(self) -> list[int] | None:
        """A known community per client, for evaluating methods that should find them.

        Synthetic graphs: the planted block holding most of the client's nodes. Otherwise the
        METIS community of the overlapping setting; None when there is no such ground truth.
        """
        block = self.graph.block
        if block is not None:
            return [int(np.bincount(block[n]).argmax()) for n in self.nodes]
        return None if self.community is None else list(self.community)

    def label_counts(self, part: int = 0) -> np.ndarray:
        """(num_clients, num_classes) label histogram of part 0=train, 1=val, 2=test nodes."""
        g = self.graph
        return np.stack([np.bincount(g.y[n[g.split[n] == part]],
                                     minlength=self.info.num_classes) for n in self.nodes])


def build_federated_graph(cfg: DictConfig, graph: GraphDataset) -> FederatedGraph:
    """Cut the global graph into client subgraphs with the configured subgraph partitioner."""
    n = int(cfg.num_clients)
    spec = get_graph_partitioner(str(cfg.partition.name), graph.info.name)
    params = graph_partition_params(spec, OmegaConf.to_container(cfg.partition, resolve=True))
    spec.validate(params, n, graph.num_nodes)
    part = spec.fn(graph.edge_index, graph.num_nodes, n, **params)
    for cid, nodes in enumerate(part.nodes):
        if not np.any(graph.split[nodes] == 0):
            raise UserError(f"client {cid} has no training nodes ({len(nodes)} nodes in its "
                            f"subgraph) with partition '{cfg.partition.name}' and "
                            f"{n} clients; use fewer clients or a larger dataset.split_train")
    return FederatedGraph(graph.info, graph, part.nodes, part.community)


def data_key(cfg: DictConfig) -> str:
    """The part of the config that determines the federated data (a cache key)."""
    keys = ("dataset", "partition", "split", "num_clients", "seed", "cache_dir")
    return json.dumps({k: OmegaConf.to_container(cfg[k], resolve=True)
                       if isinstance(cfg[k], DictConfig) else cfg[k] for k in keys},
                      sort_keys=True)


def label_ratio_of(cfg: DictConfig) -> float:
    """`split.label_ratio` (1 = every training label kept; absent in old configs)."""
    return float(cfg.split.get("label_ratio", 1.0))


def server_sources_of(cfg: DictConfig) -> int:
    """`split.server_sources`: how many shares (users) the server holds as labeled data."""
    return int(cfg.split.get("server_sources", 0))


def check_share_count(info: DatasetInfo, spec: PartitionerSpec, name: str, num_clients: int,
                      server_sources: int) -> None:
    """Enough samples (or natural users) for the clients plus the server's sources."""
    total = num_clients + server_sources
    asked = (f"the {total} requested (num_clients={num_clients} + split.server_sources="
             f"{server_sources})" if server_sources else f"num_clients={num_clients}")
    if spec.groups:
        if info.num_groups == 0:
            raise UserError(f"partition '{name}' needs a dataset with natural users (e.g. "
                            f"dataset=wisdm); dataset '{info.name}' has none")
        if total > info.num_groups:
            raise UserError(f"dataset '{info.name}' has {info.num_groups} users, fewer than "
                            f"{asked}; lower num_clients")
    if total > info.num_samples:
        what = f"num_clients={num_clients}" if not server_sources else \
            f"num_clients + split.server_sources = {total}"
        raise UserError(f"{what} exceeds the {info.num_samples} samples of dataset "
                        f"'{info.name}'; use fewer clients")


def build_federated(cfg: DictConfig) -> FederatedDataset | FederatedGraph:
    """Load the dataset, partition it over the clients (and server sources), split each share."""
    raw = load_raw(cfg.dataset, sources.cache_dir(cfg.get("cache_dir") or None))
    if isinstance(raw, GraphDataset):
        return build_federated_graph(cfg, raw)
    assert isinstance(raw, RawDataset)
    x = np.concatenate([raw.x_train, raw.x_test])
    y = np.concatenate([raw.y_train, raw.y_test])
    n, m = int(cfg.num_clients), server_sources_of(cfg)
    spec = get_partitioner(str(cfg.partition.name))
    check_share_count(raw.info, spec, str(cfg.partition.name), n, m)
    params = partition_params(spec, OmegaConf.to_container(cfg.partition, resolve=True))
    spec.validate(params, n + m, raw.info.num_classes, len(y))
    if spec.presplit:
        splits = _presplit(spec, params, raw, cfg, n + m)
        sizes = [sum(len(a) for a in t) for t in splits]
    else:
        parts = spec.fn(y, n + m, seeding.rng(cfg.seed, seeding.PARTITION), **params)
        split_rng = seeding.rng(cfg.seed, seeding.SPLIT)
        splits = [split_client(p, float(cfg.split.val), float(cfg.split.test), split_rng)
                  for p in parts]
        sizes = [len(p) for p in parts]
    server = [np.sort(np.concatenate(t)) for t in splits[:m]]
    splits, sizes = splits[m:], sizes[m:]
    for k, share in enumerate(server):
        if len(share) == 0:
            raise UserError(f"server source {k} gets no samples; use fewer clients or "
                            "another partition")
    for cid, (train, _, _) in enumerate(splits):
        if len(train) == 0:
            raise UserError(f"client {cid} gets no training samples ({sizes[cid]} in "
                            "total); use fewer clients, another partition or smaller "
                            "split.val/split.test")
    ratio = label_ratio_of(cfg)
    labeled, unlabeled = [], []
    for cid, (train, val, test) in enumerate(splits):
        lab, unl = label_split(train, ratio, seeding.rng(cfg.seed, seeding.LABELS, cid))
        labeled.append((lab, val, test))
        unlabeled.append(unl)
    return FederatedDataset(raw.info, x, y, labeled, unlabeled, server)


def _presplit(spec: PartitionerSpec, params: dict[str, Any], raw: RawDataset, cfg: DictConfig,
              num_shares: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run a partitioner that splits the dataset's train and test parts separately.

    Indices come back relative to each part and are mapped onto the pooled arrays (train part
    first). A dataset without a test part (digits, the 5,000-digit MNIST) first gets one: a
    seeded random `split.test` share of its samples.
    """
    y_train, y_test = raw.y_train, raw.y_test
    n_train = len(y_train)
    train_ids = np.arange(n_train)
    test_ids = n_train + np.arange(len(y_test))
    if len(y_test) == 0:
        perm = seeding.rng(cfg.seed, seeding.SPLIT, 1).permutation(n_train)
        n_test = round(float(cfg.split.test) * n_train)
        if n_test == 0:
            raise UserError(f"partition '{cfg.partition.name}' needs a test part and dataset "
                            f"'{cfg.dataset.name}' has none; set split.test > 0 to hold one out")
        test_ids, train_ids = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    y = np.concatenate([y_train, y_test])
    if spec.groups:
        assert raw.g_train is not None
        g = np.concatenate([raw.g_train, raw.g_test if raw.g_test is not None
                            else np.zeros(0, dtype=raw.g_train.dtype)])
        params = {**params, "g_train": g[train_ids], "g_test": g[test_ids]}
    triples = spec.fn(y[train_ids], y[test_ids], num_shares,
                      seeding.rng(cfg.seed, seeding.PARTITION), **params)
    return [(train_ids[a], train_ids[b], test_ids[c]) for a, b, c in triples]


@functools.lru_cache(maxsize=2)
def _cached(key: str) -> FederatedDataset | FederatedGraph:
    return build_federated(OmegaConf.create(json.loads(key)))


def load_federated(cfg: DictConfig) -> FederatedDataset | FederatedGraph:
    """`build_federated`, cached per process: a worker loads and partitions data once."""
    return _cached(data_key(cfg))


def validate_data_config(cfg: DictConfig) -> None:
    """Check dataset and partition settings without loading the data."""
    info = dataset_info(cfg.dataset)
    n, m = int(cfg.num_clients), server_sources_of(cfg)
    name = str(cfg.partition.name)
    if is_graph(info):
        if m or label_ratio_of(cfg) < 1.0:
            raise UserError(f"split.server_sources and split.label_ratio apply to feature "
                            f"datasets, not to graph dataset '{info.name}'; leave them at 0 "
                            "and 1")
        # Building is cheap for graphs (one METIS call) and finds every data problem up front,
        # e.g. a client without training nodes; the result is cached for the run.
        get_graph_partitioner(name, info.name)
        if reads_data_files(info.name):
            load_federated(cfg)
        return
    if name not in PARTITIONERS:
        raise UserError(f"partition '{name}' needs a graph dataset (dataset=sbm, cora, ...); "
                        f"for dataset '{info.name}' choose from: "
                        f"{', '.join(sorted(PARTITIONERS))}")
    spec = get_partitioner(str(cfg.partition.name))
    check_share_count(info, spec, str(cfg.partition.name), n, m)
    params = partition_params(spec, OmegaConf.to_container(cfg.partition, resolve=True))
    spec.validate(params, n + m, info.num_classes, info.num_samples)

"""A federated view of a dataset: one train/val/test split per client.

The configured partitioner (`fedplat.data.partitioners`) gives every client its (train, val,
test) indices into the pooled arrays (the dataset's train part, then its test part): most
partition the pooled samples and cut each share into train/val/test, so a client's test data
follows its own distribution (what personalised-FL papers evaluate); some keep the dataset's
official test part. Everything is a
function of the config and the seed, so any process (a Ray worker, a SuperNode) rebuilds the
same partition from `partition-id` alone; within a process the result is cached.

Graph datasets (`DatasetInfo.kind == "graph"`) take another builder with the same interface:
the global graph carries a global node split, a subgraph partitioner gives each client a set
of nodes, and each client gets its induced subgraph (`GraphClientData`: one full batch, with
train/val/test node masks inherited from the global split).

Semi-supervised settings: `split.label_ratio` keeps the labels of a random share of each
client's training split; the rest becomes `x_unlabeled`, whose labels never leave this module
(a client's `y_train` and label counts cover its labeled samples only). `split.server_shares`
makes the first M shares of the partition (users, for `partition=natural`) labeled datasets
held by the server instead of clients: server-held labeled data, for methods that need it.
"""

from __future__ import annotations

import functools
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from fedplat.core import seeding
from fedplat.data import sources
from fedplat.data.base import DatasetInfo, GeneratedUsers, GraphDataset, RawDataset, is_graph
from fedplat.data.datasets import dataset_info, get_spec, load_raw, reads_data_files
from fedplat.data.graphs import induced_subgraph
from fedplat.data.partitioners import (
    GraphPartition,
    Partitioner,
    SampleData,
    get_partitioner,
    partition_params,
)
from fedplat.data.partitioners.flower import impl_of, with_impl
from fedplat.data.provenance import DataSource, combined_sha256, data_line, file_records
from fedplat.data.shared import opened
from fedplat.data.splits import label_split
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
            self.cid, self.info, self.x_train.to(device), self.y_train.to(device),
            self.x_val.to(device), self.y_val.to(device), self.x_test.to(device),
            self.y_test.to(device),
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
    #: Per server share: indices of a labeled dataset held by the server (split.server_shares).
    server: list[np.ndarray] = field(default_factory=list)
    #: What the loader read (recorded by the run).
    source: DataSource | None = None
    #: Samples of the dataset's own train part: x/y hold them first, then its test part.
    num_source_train: int = 0
    #: The dataset's official test part held out from every client (`split.central_test`):
    #: x/y then hold the train part only. None: the test part is pooled with the rest.
    x_central: np.ndarray | None = None
    y_central: np.ndarray | None = None
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
            x_tr, y_tr, x_va, y_va, x_te, y_te = tensors
            self._clients[cid] = ClientData(cid, self.info, x_tr, y_tr, x_va, y_va, x_te, y_te,
                                            x_unl)
        return self._clients[cid]

    @property
    def num_server_shares(self) -> int:
        """Number of labeled datasets held by the server."""
        return len(self.server)

    def central_test(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The held-out official test part (`split.central_test`), None when not held out."""
        if self.x_central is None or self.y_central is None:
            return None
        return torch.from_numpy(self.x_central), torch.from_numpy(self.y_central)

    def server_share(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of server share `m` (all of that share's samples, labeled)."""
        idx = self.server[m]
        return (torch.from_numpy(np.ascontiguousarray(self.x[idx])),
                torch.from_numpy(np.ascontiguousarray(self.y[idx])))

    def label_counts(self, part: int = 0) -> np.ndarray:
        """(num_clients, num_classes) label histogram of part 0=train, 1=val, 2=test."""
        return np.stack([
            np.bincount(self.y[s[part]], minlength=self.info.num_classes) for s in self.splits
        ])

    def usage(self) -> dict[str, Any]:
        """How the partition used the dataset's own train and test parts.

        Per part: `total` samples, `assigned` (given to some client, in any of its train, val
        or test splits, or to a server share) and `unassigned` (given to no one: partitioners
        that give int(n * p) samples per share round down, so a few are left over). Then the
        clients' split sizes summed over clients. Duplicates count once.
        """
        used = np.zeros(len(self.y), dtype=bool)
        for tri in self.splits:
            for idx in tri:
                used[idx] = True
        for idx in (*self.unlabeled, *self.server):
            used[idx] = True
        n_train = self.num_source_train or len(self.y)
        out: dict[str, Any] = {}
        for name, sl in (("train", slice(0, n_train)), ("test", slice(n_train, len(self.y)))):
            total = len(self.y[sl])
            assigned = int(used[sl].sum())
            out[name] = {"total": total, "assigned": assigned, "unassigned": total - assigned}
        out["clients"] = {
            "train": int(sum(len(t[0]) for t in self.splits)),
            "unlabeled": int(sum(len(u) for u in self.unlabeled)),
            "val": int(sum(len(t[1]) for t in self.splits)),
            "test": int(sum(len(t[2]) for t in self.splits)),
        }
        if self.server:
            out["server"] = int(sum(len(s) for s in self.server))
        return out


#: Bytes of client tensors a `GeneratedFederatedDataset` keeps between calls (least recently
#: used clients leave first): enough for a round's sampled clients, bounded for any population.
GENERATED_CACHE_BYTES = 64 * 2**20


def _nbytes(data: ClientData) -> int:
    """Bytes of a client's tensors."""
    return sum(t.nbytes for t in (data.x_train, data.y_train, data.x_val, data.y_val,
                                  data.x_test, data.y_test))


@dataclass
class GeneratedFederatedDataset:
    """One client per user of a `GeneratedUsers` dataset, each generated when first asked for.

    The interface of `FederatedDataset` (`client`, `label_counts`, `usage`, ...) without the
    pooled arrays: memory grows with the clients in use, not with the population. Client k is
    user k; its training part is cut into train and a random `val_fraction` of validation
    (seeded by (seed, client)); its test part is the user's own.
    """

    info: DatasetInfo
    users: GeneratedUsers
    num_clients: int
    val_fraction: float
    seed: int
    cache_bytes: int = GENERATED_CACHE_BYTES
    _clients: OrderedDict[int, ClientData] = field(default_factory=OrderedDict, repr=False)
    _cached_bytes: int = field(default=0, repr=False)

    @property
    def source(self) -> DataSource | None:
        """What the loader generated (recorded by the run)."""
        return self.users.source

    @property
    def num_server_shares(self) -> int:
        """Generated datasets have no server-held shares."""
        return 0

    def server_share(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Never: a generated dataset has no server shares (validation refuses them)."""
        raise UserError(f"server share {m} does not exist: dataset '{self.info.name}' is "
                        "generated per user and has no server shares")

    def num_val(self) -> np.ndarray:
        """Validation samples per client (a share of each user's training part)."""
        n_train = self.users.num_train[:self.num_clients]
        n_val: np.ndarray = np.minimum(np.round(self.val_fraction * n_train), n_train - 1)
        return n_val.astype(np.int64)

    def client(self, cid: int) -> ClientData:
        """Client `cid`'s tensors: generated, then kept while the cache bound allows."""
        if not 0 <= cid < self.num_clients:
            raise UserError(f"client id {cid} is outside [0, {self.num_clients - 1}]")
        cached = self._clients.get(cid)
        if cached is not None:
            self._clients.move_to_end(cid)
            return cached
        x, y = self.users.generate(cid)
        n_train = int(self.users.num_train[cid])
        n_val = min(round(self.val_fraction * n_train), n_train - 1)
        if n_val:
            order = seeding.rng(self.seed, seeding.PARTITION, cid).permutation(n_train)
            val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        else:  # no validation part: no draw (a seeded generator costs ~0.2 ms per client)
            val, train = np.zeros(0, dtype=np.int64), np.arange(n_train)
        t = torch.from_numpy
        data = ClientData(cid, self.info, t(x[train]), t(y[train]), t(x[val]), t(y[val]),
                          t(x[n_train:]), t(y[n_train:]), torch.zeros((0, *x.shape[1:])))
        size = _nbytes(data)
        while self._clients and self._cached_bytes + size > self.cache_bytes:
            _, old = self._clients.popitem(last=False)
            self._cached_bytes -= _nbytes(old)
        if size <= self.cache_bytes:
            self._clients[cid] = data
            self._cached_bytes += size
        return data

    def central_test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every client's test part pooled: the central test set of a per-user dataset.

        LEAF's test set is the union of its users' held-out samples (each user's split keeps
        them out of its training part), so the global model's accuracy on it is LEAF's test
        accuracy. Made from the users' samples directly (not through the client cache).
        """
        xs, ys = [], []
        for cid in range(self.num_clients):
            x, y = self.users.generate(cid)
            n_train = int(self.users.num_train[cid])
            xs.append(x[n_train:])
            ys.append(y[n_train:])
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    def label_counts(self, part: int = 0) -> np.ndarray:
        """(num_clients, num_classes) label histogram of part 0=train, 1=val, 2=test.

        Generates every client (time grows with the population; memory does not).
        """
        c = self.info.num_classes
        out = np.zeros((self.num_clients, c), dtype=np.int64)
        for cid in range(self.num_clients):
            data = self.client(cid)
            labels = (data.y_train, data.y_val, data.y_test)[part]
            out[cid] = np.bincount(labels.numpy(), minlength=c)
        return out

    def usage(self) -> dict[str, Any]:
        """Every generated sample goes to its user's client (from the sizes, nothing generated)."""
        n_train = self.users.num_train[:self.num_clients]
        n_test = self.users.num_test[:self.num_clients]
        n_val = self.num_val()
        out: dict[str, Any] = {}
        for name, sizes in (("train", n_train), ("test", n_test)):
            total = int(sizes.sum())
            out[name] = {"total": total, "assigned": total, "unassigned": 0}
        out["clients"] = {"train": int((n_train - n_val).sum()), "unlabeled": 0,
                          "val": int(n_val.sum()), "test": int(n_test.sum())}
        return out


def build_generated(cfg: DictConfig, users: GeneratedUsers) -> GeneratedFederatedDataset:
    """Clients of a per-user generated dataset: `partition=natural` only, all labels kept."""
    check_generated(cfg, users.info)
    params = partition_params(get_partitioner("natural", users.info), partition_config(cfg))
    return GeneratedFederatedDataset(users.info, users, int(cfg.num_clients),
                                     float(params.get("val_fraction", 0.0)), int(cfg.seed))


def check_generated(cfg: DictConfig, info: DatasetInfo) -> None:
    """A per-user generated dataset takes `partition=natural`, no server shares, all labels."""
    name = str(cfg.partition.name)
    if name != "natural":
        raise UserError(f"dataset '{info.name}' is generated per user: use partition=natural "
                        f"(one client per user), not partition={name}")
    if server_shares_of(cfg) or label_ratio_of(cfg) < 1.0:
        raise UserError(f"dataset '{info.name}' is generated per user: leave "
                        "split.server_shares at 0 and split.label_ratio at 1")
    if int(cfg.num_clients) > info.num_groups:
        fix = "raise dataset.num_users" if "num_users" in cfg.dataset else "lower num_clients"
        raise UserError(f"dataset '{info.name}' has {info.num_groups} users, fewer than "
                        f"num_clients={cfg.num_clients}; {fix}")


@dataclass(frozen=True)
class GraphClientData:
    """One client's subgraph: node features, local edges, labels and split node indices.

    Offers the interface of `ClientData` that the generic apps use (`num_train`, `y_train`,
    `y_val`, `y_test`, `info`, `to`); training and evaluation use the whole subgraph as one
    batch (`fedplat.training.loops.train_graph`). `global_ids` maps local to global node ids.
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
    def source(self) -> DataSource | None:
        """What the loader read (recorded by the run)."""
        return self.graph.source

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
                torch.from_numpy(np.flatnonzero(split == 0)),
                torch.from_numpy(np.flatnonzero(split == 1)),
                torch.from_numpy(np.flatnonzero(split == 2)),
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

    def usage(self) -> dict[str, Any]:
        """Nodes of each part of the global split: total, assigned to a client, unassigned.

        A node in several clients' subgraphs (overlapping partitions) counts once; the
        clients' node counts summed over clients are under `clients`.
        """
        g = self.graph
        used = np.zeros(g.num_nodes, dtype=bool)
        for n in self.nodes:
            used[n] = True
        out: dict[str, Any] = {}
        for code, name in enumerate(("train", "val", "test")):
            part = g.split == code
            total, assigned = int(part.sum()), int((part & used).sum())
            out[name] = {"total": total, "assigned": assigned, "unassigned": total - assigned}
        out["clients"] = {name: int(sum(int((g.split[n] == code).sum()) for n in self.nodes))
                          for code, name in enumerate(("train", "val", "test"))}
        return out


def build_federated_graph(cfg: DictConfig, graph: GraphDataset) -> FederatedGraph:
    """Cut the global graph into client subgraphs with the configured subgraph partitioner."""
    n = int(cfg.num_clients)
    spec = get_partitioner(str(cfg.partition.name), graph.info)
    params = partition_params(spec, partition_config(cfg))
    spec.validate(params, n, graph.info.num_classes, graph.num_nodes)
    part: GraphPartition = spec.partition(graph, n, seeding.rng(cfg.seed, seeding.PARTITION),
                                          **params)
    for cid, nodes in enumerate(part.nodes):
        if not np.any(graph.split[nodes] == 0):
            raise UserError(f"client {cid} has no training nodes ({len(nodes)} nodes in its "
                            f"subgraph) with partition '{cfg.partition.name}' and "
                            f"{n} clients; use fewer clients or a larger dataset.split_train")
    return FederatedGraph(graph.info, graph, part.nodes, part.community)


def partition_config(cfg: DictConfig) -> dict[str, Any]:
    """The `partition` group as a plain dict (what `partition_params` reads from)."""
    out = OmegaConf.to_container(cfg.partition, resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def data_key(cfg: DictConfig) -> str:
    """The part of the config that determines the federated data (a cache key)."""
    keys = ("dataset", "partition", "split", "num_clients", "seed", "cache_dir")
    return json.dumps({k: OmegaConf.to_container(cfg[k], resolve=True)
                       if isinstance(cfg[k], DictConfig) else cfg[k] for k in keys},
                      sort_keys=True)


def label_ratio_of(cfg: DictConfig) -> float:
    """`split.label_ratio` (1 = every training label kept; absent in old configs)."""
    return float(cfg.split.get("label_ratio", 1.0))


def central_test_of(cfg: DictConfig) -> bool:
    """`split.central_test`: hold the dataset's test part out as a central test set.

    Absent (old configs) = false. One error line when it is not a boolean.
    """
    value = cfg.split.get("central_test", False)
    if not isinstance(value, bool):
        raise UserError(f"split.central_test={value!r} must be true or false")
    return value


def server_shares_of(cfg: DictConfig) -> int:
    """`split.server_shares`: how many shares of the partition the server holds, labeled."""
    return int(cfg.split.get("server_shares", 0))


def check_share_count(info: DatasetInfo, spec: Partitioner[Any, Any], name: str,
                      num_clients: int, server_shares: int) -> None:
    """Enough samples (or natural users) for the clients plus the server's shares."""
    total = num_clients + server_shares
    asked = (f"the {total} requested (num_clients={num_clients} + split.server_shares="
             f"{server_shares})" if server_shares else f"num_clients={num_clients}")
    if spec.groups:
        if info.num_groups == 0:
            raise UserError(f"partition '{name}' needs a dataset with natural users (e.g. "
                            f"dataset=wisdm); dataset '{info.name}' has none")
        if total > info.num_groups:
            raise UserError(f"dataset '{info.name}' has {info.num_groups} users, fewer than "
                            f"{asked}; lower num_clients")
    if total > info.num_samples:
        what = f"num_clients={num_clients}" if not server_shares else \
            f"num_clients + split.server_shares = {total}"
        raise UserError(f"{what} exceeds the {info.num_samples} samples of dataset "
                        f"'{info.name}'; use fewer clients")


#: What `load_federated` returns: samples, a graph, or samples generated per user.
Federated = FederatedDataset | FederatedGraph | GeneratedFederatedDataset


def build_federated(cfg: DictConfig) -> Federated:
    """Load the dataset, partition it over the clients (and server shares), split each share."""
    raw = load_raw(cfg.dataset, sources.cache_dir(cfg.get("cache_dir") or None))
    if isinstance(raw, GraphDataset):
        return build_federated_graph(cfg, raw)
    if isinstance(raw, GeneratedUsers):
        return build_generated(cfg, raw)
    assert isinstance(raw, RawDataset)
    held_out: tuple[np.ndarray, np.ndarray] | None = None
    if central_test_of(cfg):
        if len(raw.y_test) == 0:
            raise UserError(f"split.central_test=true holds out a dataset's official test part, "
                            f"and dataset '{raw.info.name}' has none; set "
                            "split.central_test=false")
        # The clients share the training part only; the test part is the central test set.
        held_out = (raw.x_test, raw.y_test)
        raw = RawDataset(raw.info, raw.x_train, raw.y_train, raw.x_test[:0], raw.y_test[:0],
                         raw.g_train, None if raw.g_test is None else raw.g_test[:0],
                         raw.source)
    # No copy when there is no test part (digits): the pooled array is the training part.
    x = raw.x_train if len(raw.x_test) == 0 else np.concatenate([raw.x_train, raw.x_test])
    y = raw.y_train if len(raw.y_test) == 0 else np.concatenate([raw.y_train, raw.y_test])
    n, m = int(cfg.num_clients), server_shares_of(cfg)
    name = str(cfg.partition.name)
    spec = with_impl(get_partitioner(name, raw.info), partition_config(cfg))
    check_share_count(raw.info, spec, name, n, m)
    params = partition_params(spec, partition_config(cfg))
    spec.validate(params, n + m, raw.info.num_classes, len(y))
    groups = None
    if raw.g_train is not None:
        groups = np.concatenate([raw.g_train, raw.g_test if raw.g_test is not None
                                 else np.zeros(0, dtype=raw.g_train.dtype)])
    data = SampleData(y, int(cfg.seed), num_train=len(raw.y_train), groups=groups,
                      val=float(cfg.split.val), test=float(cfg.split.test),
                      dataset=str(cfg.dataset.name), partition=name)
    splits = spec.partition(data, n + m, seeding.rng(cfg.seed, seeding.PARTITION), **params)
    sizes = [sum(len(a) for a in t) for t in splits]
    server = [np.sort(np.concatenate(t)) for t in splits[:m]]
    splits, sizes = splits[m:], sizes[m:]
    for k, share in enumerate(server):
        if len(share) == 0:
            raise UserError(f"server share {k} gets no samples; use fewer clients or "
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
    return FederatedDataset(raw.info, x, y, labeled, unlabeled, server, raw.source,
                            len(raw.y_train), *(held_out or (None, None)))


#: Seconds each data key took to load and partition in this process (when it was built).
_BUILD_SECONDS: dict[str, float] = {}


@functools.lru_cache(maxsize=2)
def _cached(key: str) -> Federated:
    shared = opened(key)  # the driver's copy, when it shared one with this worker
    if shared is not None:
        return FederatedDataset(*shared)
    t0 = time.perf_counter()
    out = build_federated(OmegaConf.create(json.loads(key)))
    _BUILD_SECONDS[key] = time.perf_counter() - t0
    return out


def timed_load(cfg: DictConfig) -> tuple[Federated, float]:
    """`load_federated` and the `time.perf_counter()` value at which its loading began.

    When an earlier call in this process built the data (config validation builds a graph's
    partition up front), the returned start lies that build's duration before this call, so a
    run's `startup_s` counts the data loading wherever it happened.
    """
    t0 = time.perf_counter()
    key = data_key(cfg)
    fed = _cached(key)
    here = time.perf_counter() - t0
    return fed, t0 - max(0.0, _BUILD_SECONDS.get(key, 0.0) - here)


def load_federated(cfg: DictConfig) -> Federated:
    """`build_federated`, cached per process: a worker loads and partitions data once."""
    return _cached(data_key(cfg))


def federated_by_key(key: str) -> Federated:
    """`load_federated` for a caller that keeps its config's `data_key`.

    Computing the key serialises several config groups: about a millisecond, which a node paid
    per client and message.
    """
    return _cached(key)


def describe_source(src: DataSource | None, info: DatasetInfo, cache: Path) -> dict[str, Any]:
    """What every record of a run's data holds: the loader, what it read (hashed), shapes.

    A scenario that places data its own way (peer-to-peer) adds `samples`, `partition` and
    `line` (`fedplat.data.provenance.data_line`) itself.
    """
    entry: dict[str, Any] = {
        "dataset": info.name, "num_classes": info.num_classes,
        "feature_shape": list(info.input_shape),
        "loader": src.loader if src else None, "kind": src.kind if src else "unknown",
        "origin": src.origin if src else "(source not recorded by its loader)",
        "package": src.package if src else None, "subset": bool(src and src.subset),
    }
    if src is not None and src.details:
        entry["details"] = dict(src.details)
    files = file_records(src.files, cache) if src is not None else []
    entry["files"] = files
    if files:
        entry["sha256"] = combined_sha256(files)
    return entry


def describe_data(fed: Federated, cache: Path) -> dict[str, Any]:
    """The run's record of its data (summary.json `data`, run.log, the console's line).

    The loader and what it read (files with size and sha256, from the hash cache in `cache`),
    samples of the dataset's train and test parts as loaded (graphs: nodes and edges), classes,
    feature shape, and the partition's use of it (`usage`).
    """
    entry = describe_source(fed.source, fed.info, cache)
    if isinstance(fed, FederatedGraph):
        g = fed.graph
        entry["graph"] = {"nodes": g.num_nodes, "edges": int(g.edge_index.shape[1]) // 2}
        entry["samples"] = {name: int((g.split == code).sum())
                            for code, name in enumerate(("train", "val", "test"))}
    elif isinstance(fed, GeneratedFederatedDataset):
        entry["samples"] = {"train": int(fed.users.num_train[:fed.num_clients].sum()),
                            "test": int(fed.users.num_test[:fed.num_clients].sum())}
    else:
        n_train = fed.num_source_train or len(fed.y)
        entry["samples"] = {"train": n_train, "test": len(fed.y) - n_train}
        if fed.y_central is not None:  # the official test part, held out from the clients
            entry["samples"]["central_test"] = len(fed.y_central)
    entry["partition"] = fed.usage()
    entry["line"] = data_line(entry)
    return entry


def _check_server_shares(cfg: DictConfig) -> int:
    """`split.server_shares` is an integer >= 0 (absent = 0), or one error line."""
    value = cfg.split.get("server_shares", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"split.server_shares={value!r} must be an integer")
    if value < 0:
        raise UserError(f"split.server_shares={value} is out of range: must be in [0, inf]")
    return value


def validate_data_config(cfg: DictConfig) -> None:
    """Check the data keys (dataset, partition, split.server_shares) without loading data."""
    m = _check_server_shares(cfg)
    central = central_test_of(cfg)
    info = dataset_info(cfg.dataset)
    n = int(cfg.num_clients)
    name = str(cfg.partition.name)
    if central and is_graph(info):
        raise UserError(f"split.central_test applies to sample datasets, not to graph dataset "
                        f"'{info.name}' (its global node split already has a test part); "
                        "set split.central_test=false")
    if is_graph(info) and (m or label_ratio_of(cfg) < 1.0):
        raise UserError(f"split.server_shares and split.label_ratio apply to feature "
                        f"datasets, not to graph dataset '{info.name}'; leave them at 0 and 1")
    if get_spec(info.name).per_user:
        check_generated(cfg, info)
    spec = get_partitioner(name, info)
    if is_graph(info):
        # Building is cheap for graphs (one METIS call) and finds every data problem up front,
        # e.g. a client without training nodes; the result is cached for the run.
        if reads_data_files(info.name):
            load_federated(cfg)
        return
    check_share_count(info, spec, name, n, m)
    impl_of(partition_config(cfg))
    params = partition_params(spec, partition_config(cfg))
    spec.validate(params, n + m, info.num_classes, info.num_samples)

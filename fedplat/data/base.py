"""The data layer's shared types: what a dataset is, what loading one yields, how it is found.

Kept apart from the loaders (`fedplat.data.datasets.<name>`) and from the graph preprocessing
(`fedplat.data.graphs`) so that every one of them can import these types without importing
another loader: the registry imports the loaders, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data.provenance import DataSource

#: `DatasetInfo.kind` of graph datasets (models and partitioners dispatch on it).
GRAPH = "graph"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a partitioner need to know about a dataset before loading it."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    kind: str  # "vector" (flat features), "image" (C, H, W) or "graph" (node features)
    num_samples: int  # train + test parts together (graphs: number of nodes)
    #: Natural owners of the samples (users, subjects) for `partition=natural`; 0 = none.
    num_groups: int = 0


def is_graph(info: DatasetInfo) -> bool:
    """Whether a dataset is a graph (node classification on one global graph)."""
    return info.kind == GRAPH


@dataclass(frozen=True)
class RawDataset:
    """A dataset's arrays: float32 standardised features and int64 labels.

    `g_train`/`g_test` give each sample's natural owner (user or subject id) when the dataset
    has one (`DatasetInfo.num_groups > 0`), for `partition=natural`. `source` says what the
    loader read (`fedplat.data.provenance`), for the run's record.
    """

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    g_train: np.ndarray | None = None
    g_test: np.ndarray | None = None
    source: DataSource | None = None


@dataclass(frozen=True)
class GeneratedUsers:
    """A dataset generated one natural owner (user) at a time, on demand.

    For populations too large to hold as one table (100,000 users of a synthetic benchmark):
    nothing per sample exists until `generate(k)` makes user k's samples, a pure function of
    the dataset's config and k, so any process (a Ray worker on any machine) makes the same
    ones. `num_train[k]` and `num_test[k]` are user k's sample counts (known without
    generating); `generate(k)` returns its (x float32, y int64), the training part first.
    """

    info: DatasetInfo
    num_train: np.ndarray  # (users,) int64
    num_test: np.ndarray  # (users,) int64
    generate: Callable[[int], tuple[np.ndarray, np.ndarray]]
    source: DataSource | None = None


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
    source: DataSource | None = None

    @property
    def num_nodes(self) -> int:
        """Number of nodes N."""
        return len(self.y)


@dataclass(frozen=True)
class DatasetSpec:
    """How to describe, find and load one dataset (`dataset=<name>`).

    `info` is cheap (shapes and sizes); `check` raises a `UserError` saying where to put the
    files when the dataset is not available on this machine; `load` returns a `RawDataset`
    (samples), for `info.kind == "graph"` a `GraphDataset` (one global graph), or a
    `GeneratedUsers` (samples made per user on demand, for `partition=natural` only).
    """

    name: str
    info: Callable[[DictConfig], DatasetInfo]
    check: Callable[[DictConfig], None]
    load: Callable[[DictConfig, Path], RawDataset | GraphDataset | GeneratedUsers]
    #: `info` without reading a file: shapes and classes as published, `num_samples` (and
    #: `num_groups`) those of the full published dataset, for validating a config on a
    #: machine without the data (`fedplat.data.datasets.without_data_files`). None when
    #: `info` reads no file anyway.
    declared: Callable[[DictConfig], DatasetInfo] | None = None
    #: True when `load` returns `GeneratedUsers`: one client per user (`partition=natural`).
    per_user: bool = False


def always_available(ds: DictConfig) -> None:
    """`DatasetSpec.check` of generated or bundled data: nothing to find."""
    return None


def check_via_info(info: Callable[[DictConfig], DatasetInfo]) -> Callable[[DictConfig], None]:
    """`DatasetSpec.check` of a dataset whose `info` already looks for its files."""
    def check(ds: DictConfig) -> None:
        info(ds)

    return check


def standardise(x_train: np.ndarray, x_test: np.ndarray, per_channel: bool = False,
                in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scale with the training part's mean/std (per channel for colour images).

    Statistics of the training part only, so nothing about the test part leaks into training.
    The result is float32, computed in place (the same float32 operations as
    `(x - mean) / std`, so the same bits): with `in_place=True` a float32 input is itself
    scaled, which a loader passing its own temporary uses to hold one copy of the data, not
    three.
    """
    xt = x_train.astype(np.float32, copy=not in_place)
    xs = x_test.astype(np.float32, copy=not in_place)
    axes = (0, 2, 3) if per_channel else None
    mean = xt.mean(axis=axes, keepdims=per_channel)
    std = xt.std(axis=axes, keepdims=per_channel) + 1e-8
    for part in (xt, xs):
        part -= mean
        part /= std
    return xt, xs


def unit_scale(x: np.ndarray, top: float) -> np.ndarray:
    """Integer pixels over `top` as float32.

    The same bits as `(x / top).astype(np.float32)` for every uint8 value and top = 255 or 16
    (checked in tests/fedplat/data/test_base.py), without its float64 intermediate of 8 bytes
    per value (CIFAR-10: 1.2 GB).
    """
    return x.astype(np.float32) / np.float32(top)

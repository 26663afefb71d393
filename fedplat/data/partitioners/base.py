"""What every partitioner shares: its one call signature, its input and output types.

A partitioner is `Partitioner.partition(data, num_shares, rng, **params)`:

* sample partitioners (`kind == SAMPLES`) get a `SampleData` (labels and natural owners,
  never features) and return one `Share` per client: (train, val, test) indices into the
  pooled arrays (the dataset's training part, then its test part);
* graph partitioners (`kind == GRAPH`) get the `GraphDataset` and return a `GraphPartition`
  (the node set of every client's subgraph); their seeds are parameters (`metis_seed`, ...),
  so the data stay fixed across run seeds, and `rng` is not used.

Most partitioning algorithms are written for one of two inputs, and the two adaptors below
turn them into that signature: `pooled` (partition all samples, then cut each share by
`split.val`/`split.test`) and `presplit` (partition the dataset's own train and test parts
separately, keeping its official test set, as the hypernetwork papers do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from fedplat.core import seeding
from fedplat.data.base import GRAPH, GraphDataset
from fedplat.data.splits import split_client
from fedplat.errors import UserError

#: `Partitioner.kind` of partitioners that split samples (GRAPH: subgraph partitioners).
SAMPLES = "samples"

#: One client's (train, val, test) indices.
Share = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class SampleData:
    """What a sample partitioner may look at: labels (pooled), owners, and how to cut shares.

    `y` holds the dataset's training part, then its test part (`num_train` samples first;
    None: all of it is training data). `groups` gives each sample's natural owner, when the
    dataset has them. `val`/`test` are `split.val`/`split.test`; `seed` is the run seed (the
    streams of the per-share cut and of a held-out test part derive from it). `dataset` and
    `partition` name the two in error messages.
    """

    y: np.ndarray
    seed: int
    num_train: int | None = None
    groups: np.ndarray | None = None
    val: float = 0.0
    test: float = 0.0
    dataset: str = ""
    partition: str = ""

    def cut(self, shares: list[np.ndarray]) -> list[Share]:
        """Each share shuffled and cut into train/val/test by `val`/`test`, shares in order."""
        rng = seeding.rng(self.seed, seeding.SPLIT)
        return [split_client(s, self.val, self.test, rng) for s in shares]

    def parts(self) -> tuple[np.ndarray, np.ndarray]:
        """Pooled indices of the dataset's train part and test part.

        A dataset without a test part (digits, the 5,000-digit MNIST) first gets one: a seeded
        random `test` share of its samples.
        """
        n_train = len(self.y) if self.num_train is None else self.num_train
        train_ids = np.arange(n_train)
        test_ids = n_train + np.arange(len(self.y) - n_train)
        if len(test_ids) == 0:
            perm = seeding.rng(self.seed, seeding.SPLIT, 1).permutation(n_train)
            n_test = round(float(self.test) * n_train)
            if n_test == 0:
                raise UserError(f"partition '{self.partition}' needs a test part and dataset "
                                f"'{self.dataset}' has none; set split.test > 0 to hold one "
                                "out")
            test_ids, train_ids = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        return train_ids, test_ids


@dataclass(frozen=True)
class GraphPartition:
    """Sorted global node ids per client, and each client's METIS community when known."""

    nodes: list[np.ndarray]
    community: list[int] | None = None


D = TypeVar("D", SampleData, GraphDataset)
P = TypeVar("P", list[Share], GraphPartition)


@dataclass(frozen=True)
class Partitioner(Generic[D, P]):
    """One registered partitioner (`partition=<name>`): its function, parameters and checks.

    `validate(params, num_shares, num_classes, num_samples)` raises one `UserError` line per
    bad parameter before any data is loaded (`num_samples`: nodes for graphs). `groups`: the
    partitioner needs the dataset's natural owners (`DatasetInfo.num_groups > 0`).
    """

    name: str
    partition: Callable[..., P]
    params: tuple[str, ...]
    validate: Callable[[dict[str, Any], int, int, int], None]
    kind: str = SAMPLES
    groups: bool = False

    def applies_to_graphs(self) -> bool:
        """Whether this partitioner cuts a graph (else it splits samples)."""
        return self.kind == GRAPH


def pooled(fn: Callable[..., list[np.ndarray]]) -> Callable[..., list[Share]]:
    """Adapt `fn(labels, num_shares, rng, **params) -> shares` over all pooled samples.

    The dataset's own train/test division is ignored; each share is then cut by
    `split.val`/`split.test`, so a client's test data follow its own distribution.
    """
    def partition(data: SampleData, num_shares: int, rng: np.random.Generator,
                  **params: Any) -> list[Share]:
        return data.cut(fn(data.y, num_shares, rng, **params))

    partition.__doc__ = fn.__doc__
    return partition


def presplit(fn: Callable[..., list[Share]]) -> Callable[..., list[Share]]:
    """Adapt `fn(y_train, y_test, num_shares, rng, **params) -> (train, val, test) per share`.

    `fn` sees the labels of the dataset's train and test parts and returns indices relative
    to each part; they are mapped onto the pooled arrays. `split.val`/`split.test` do not apply.
    """
    def partition(data: SampleData, num_shares: int, rng: np.random.Generator,
                  **params: Any) -> list[Share]:
        train_ids, test_ids = data.parts()
        triples = fn(data.y[train_ids], data.y[test_ids], num_shares, rng, **params)
        return [(train_ids[a], train_ids[b], test_ids[c]) for a, b, c in triples]

    partition.__doc__ = fn.__doc__
    return partition


def no_check(params: dict[str, Any], num_shares: int, num_classes: int,
             num_samples: int) -> None:
    """`Partitioner.validate` of a partitioner without parameters."""
    return None


def is_int(v: Any, low: int) -> bool:
    """`v` is an integer (not a bool) >= `low`."""
    return not isinstance(v, bool) and isinstance(v, int) and v >= low


def check_fraction(params: dict[str, Any], key: str) -> None:
    """`partition.<key>` is in [0, 1), or one error line."""
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
        raise UserError(f"partition.{key}={v!r} must be in [0, 1)")

"""Partitioners: who holds which samples. Pure numpy, seeded, and guaranteed to terminate.

Every partitioner maps `(labels, num_clients, rng, **params)` to one index array per client.
They are kept here rather than taken from flwr-datasets so the default install needs no Hugging
Face `datasets`/pyarrow stack; the semantics follow flwr-datasets' Iid/Dirichlet/Pathological/
Shard partitioners (shuffled IID blocks, per-class Dirichlet proportions with a minimum size,
k classes per client, McMahan's label-sorted shards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedplat.errors import UserError

Partition = list[np.ndarray]


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> Partition:
    """Shuffle, then cut into `num_clients` near-equal blocks."""
    perm = rng.permutation(len(labels))
    return [np.sort(block) for block in np.array_split(perm, num_clients)]


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    alpha: float,
    min_size: int = 10,
    max_retries: int = 100,
) -> Partition:
    """Split each class over clients with proportions drawn from Dir(alpha).

    Resamples the whole split while some client has fewer than `min_size` samples, at most
    `max_retries` times; then gives up with a message naming the knobs to turn (it never loops
    forever, unlike a plain `while` loop).
    """
    classes = np.unique(labels)
    by_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    smallest = 0
    for _ in range(max_retries + 1):
        shares: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = by_class[c]
            props = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
            for k, part in enumerate(np.split(idx, cuts)):
                shares[k].append(part)
        parts = [np.sort(np.concatenate(s)) for s in shares]
        smallest = min(len(p) for p in parts)
        if smallest >= min_size:
            return parts
    raise UserError(
        f"dirichlet partition: after {max_retries} retries some client still holds only "
        f"{smallest} samples (< partition.min_size={min_size}); raise partition.alpha, lower "
        "partition.min_size or use fewer clients"
    )


def pathological(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, classes_per_client: int
) -> Partition:
    """Each client holds exactly `classes_per_client` classes.

    Classes are dealt round-robin over a shuffled class order, so every class is held by
    about `num_clients * k / C` clients; each class's samples are split evenly among its holders.
    With `num_clients * k < C` some classes are held by nobody and their samples stay unused.
    """
    classes = np.unique(labels)
    k = classes_per_client
    if k > len(classes):
        raise UserError(f"partition.classes_per_client={k} exceeds the {len(classes)} classes")
    order = rng.permutation(classes)
    assignment = [
        [order[(i * k + j) % len(classes)] for j in range(k)] for i in range(num_clients)
    ]
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for i, cls in enumerate(assignment):
        for c in cls:
            holders[int(c)].append(i)
    shares: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c, owners in holders.items():
        if not owners:
            continue
        idx = rng.permutation(np.flatnonzero(labels == c))
        for owner, part in zip(owners, np.array_split(idx, len(owners))):
            shares[owner].append(part)
    return [np.sort(np.concatenate(s)) for s in shares]


def shards(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, shards_per_client: int
) -> Partition:
    """McMahan et al.: sort by label, cut into equal shards, deal `shards_per_client` each."""
    num_shards = num_clients * shards_per_client
    if num_shards > len(labels):
        raise UserError(f"shards partition needs {num_shards} shards but there are only "
                        f"{len(labels)} samples; lower partition.shards_per_client or clients")
    shuffled = rng.permutation(len(labels))  # ties within a class in random order
    sorted_idx = shuffled[np.argsort(labels[shuffled], kind="stable")]
    pieces = np.array_split(sorted_idx, num_shards)
    deal = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in deal]


@dataclass(frozen=True)
class PartitionerSpec:
    """A partition function and the check of its parameters."""

    fn: Callable[..., Partition]
    params: tuple[str, ...]
    validate: Callable[[dict[str, Any], int, int, int], None]


def _no_check(params: dict[str, Any], num_clients: int, num_classes: int, n: int) -> None:
    return None


def _check_dirichlet(params: dict[str, Any], num_clients: int, num_classes: int,
                     n: int) -> None:
    alpha = params["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
        raise UserError(f"partition.alpha={alpha!r} must be > 0 (smaller = more label skew)")
    for key in ("min_size", "max_retries"):
        v = params[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"partition.{key}={v!r} must be an integer >= 0")
    if params["min_size"] * num_clients > n:
        raise UserError(f"partition.min_size={params['min_size']} x {num_clients} clients "
                        f"exceeds the {n} samples; lower partition.min_size")


def _check_pathological(params: dict[str, Any], num_clients: int, num_classes: int,
                        n: int) -> None:
    k = params["classes_per_client"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_classes:
        raise UserError(f"partition.classes_per_client={k!r} must be an integer in "
                        f"[1, {num_classes}]")


def _check_shards(params: dict[str, Any], num_clients: int, num_classes: int, n: int) -> None:
    s = params["shards_per_client"]
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
        raise UserError(f"partition.shards_per_client={s!r} must be an integer >= 1")
    if s * num_clients > n:
        raise UserError(f"partition.shards_per_client={s} x {num_clients} clients exceeds the "
                        f"{n} samples")


#: Registered partitioners (`partition=<name>`).
PARTITIONERS: dict[str, PartitionerSpec] = {
    "iid": PartitionerSpec(iid, (), _no_check),
    "dirichlet": PartitionerSpec(dirichlet, ("alpha", "min_size", "max_retries"),
                                 _check_dirichlet),
    "pathological": PartitionerSpec(pathological, ("classes_per_client",), _check_pathological),
    "shards": PartitionerSpec(shards, ("shards_per_client",), _check_shards),
}


def get_partitioner(name: str) -> PartitionerSpec:
    """The partitioner registered under `name`, or a `UserError` listing the valid names."""
    try:
        return PARTITIONERS[name]
    except KeyError:
        raise UserError(f"unknown partition '{name}' (choose from: "
                        f"{', '.join(sorted(PARTITIONERS))})") from None


def partition_params(spec: PartitionerSpec, part_cfg: dict[str, Any]) -> dict[str, Any]:
    """The parameters `spec` takes, read from the partition config (missing = UserError)."""
    missing = [p for p in spec.params if p not in part_cfg]
    if missing:
        raise UserError(f"partition '{part_cfg.get('name')}' needs {', '.join(missing)}")
    return {p: part_cfg[p] for p in spec.params}


def split_client(
    indices: np.ndarray, val: float, test: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle one client's indices and cut them into train/val/test by the given fractions."""
    perm = rng.permutation(indices)
    n_test = round(test * len(perm))
    n_val = round(val * len(perm))
    test_idx = perm[:n_test]
    val_idx = perm[n_test:n_test + n_val]
    train_idx = perm[n_test + n_val:]
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)

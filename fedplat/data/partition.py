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
#: Per client (train, val, test) indices: train and val into the dataset's training part, test
#: into its test part (partitioners that split the official train and test parts separately).
SplitPartition = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


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


def _take_label_groups(labels: np.ndarray, num_clients: int, num_classes: int, s: float,
                       size: int, groups: list[list[int]], cursor0: int,
                       block: str) -> list[np.ndarray]:
    """HyperFL's s-similarity split of one dataset part (FedPAC's `*_noniid_s` procedure).

    Samples are taken sequentially from each class's block of the label-sorted order (numpy's
    default argsort kind, as in the released code); a class whose block is used up wraps around
    to its start, so clients may share samples.
    """
    order = np.argsort(labels)
    if block == "equal":  # the released code for CIFAR/CINIC/FMNIST: assumes equal class counts
        per = int(len(labels) / num_classes)
        starts = [y * per for y in range(num_classes)]
        sizes = [per] * num_classes
    else:  # actual class blocks (identical to "equal" when classes are balanced)
        counts = np.bincount(labels, minlength=num_classes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
        sizes = counts.astype(int).tolist()
    used = [cursor0] * num_classes
    n_iid = int(size * s)
    n_non = size - n_iid
    iid_per = int(n_iid / num_classes)
    iid_last = n_iid - (num_classes - 1) * iid_per

    def take(y: int, k: int) -> np.ndarray:
        if k > sizes[y]:
            raise UserError(f"label_groups partition: class {y} has {sizes[y]} samples, fewer "
                            f"than the {k} one client needs from it; lower "
                            "partition.local_size/test_size")
        if used[y] + k > sizes[y]:
            used[y] = 0
        start = starts[y] + used[y]
        used[y] += k
        return order[start:start + k]

    parts = []
    for i in range(num_clients):
        chunks = [take(y, iid_last if y == num_classes - 1 else iid_per)
                  for y in range(num_classes)]
        group = groups[i % len(groups)]
        per = int(n_non / len(group))
        last = n_non - per * (len(group) - 1)
        chunks += [take(y, last if j == len(group) - 1 else per) for j, y in enumerate(group)]
        parts.append(np.concatenate(chunks).astype(np.int64))
    return parts


def label_groups(y_train: np.ndarray, y_test: np.ndarray, num_clients: int,
                 rng: np.random.Generator, s: float, local_size: int, test_size: int,
                 groups: list[list[int]], cursor0_train: int, cursor0_test: int,
                 block: str) -> SplitPartition:
    """HyperFL's label-group ("s-similarity") split.

    Every client holds an s% IID share of all classes plus (1 - s%) from its dominant label
    group `groups[i mod len(groups)]`. Run separately (and identically) on the training part
    and the test part, so a client's train and test label distributions match. Deterministic:
    `rng` is not used. No validation split (HyperFL has none).
    """
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    frac = float(s) / 100.0
    train = _take_label_groups(y_train, num_clients, num_classes, frac, local_size, groups,
                               cursor0_train, block)
    test = _take_label_groups(y_test, num_clients, num_classes, frac, test_size, groups,
                              cursor0_test, block)
    empty = np.zeros(0, dtype=np.int64)
    return [(tr, empty, te) for tr, te in zip(train, test)]


def assign_classes(num_clients: int, num_classes: int, classes_per_client: int,
                   rng: np.random.Generator, prop_low: float, prop_high: float,
                   extra_share: bool = False, distinct: bool = False
                   ) -> list[list[tuple[int, float]]]:
    """The class assignment of pFedHN and PeFLL: (class, proportion) pairs per client.

    Each class gets count = k*N // C (+1 with `extra_share`, as in pFedHN's latest commit)
    proportions ~ Uniform(prop_low, prop_high), normalised to sum 1. Clients pick their k
    classes one at a time, uniformly among the classes with the largest remaining count, and
    take the proportion at the end of that class's list.
    """
    count = (classes_per_client * num_clients) // num_classes + (1 if extra_share else 0)
    probs = []
    for _ in range(num_classes):
        p = rng.uniform(prop_low, prop_high, size=count)
        probs.append((p / p.sum()).tolist())
    remaining = np.full(num_classes, count)
    out = []
    for i in range(num_clients):
        chosen = []
        for _ in range(classes_per_client):
            top = np.flatnonzero(remaining == remaining.max())
            c = int(rng.choice(top))
            remaining[c] -= 1
            chosen.append(c)
        if distinct and len(set(chosen)) < len(chosen):
            raise UserError(f"by-class partition: client {i} drew class {chosen} twice; use "
                            "another seed or num_clients")
        if any(not probs[c] for c in chosen):
            raise UserError(f"by-class partition: classes_per_client x num_clients = "
                            f"{classes_per_client * num_clients} is not divisible by the "
                            f"{num_classes} classes; change num_clients")
        out.append([(c, probs[c].pop()) for c in chosen])
    return out


def split_by_class(labels: np.ndarray, assignment: list[list[tuple[int, float]]],
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Give each client int(n_c * p) shuffled samples of each of its classes, in client order."""
    num_classes = len(np.bincount(labels)) if len(labels) else 0
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)}
    cursor = dict.fromkeys(pools, 0)
    parts = []
    for pairs in assignment:
        chunks = []
        for c, p in pairs:
            pool = pools.get(c, np.zeros(0, dtype=np.int64))
            n = int(len(pool) * p)
            chunks.append(pool[cursor.get(c, 0):cursor.get(c, 0) + n])
            cursor[c] = cursor.get(c, 0) + n
        parts.append(np.sort(np.concatenate(chunks)).astype(np.int64))
    return parts


def by_class(y_train: np.ndarray, y_test: np.ndarray, num_clients: int,
             rng: np.random.Generator, classes_per_client: int, prop_low: float,
             prop_high: float, val_fraction: float, val_split: str, extra_share: bool,
             distinct_classes: bool) -> SplitPartition:
    """The by-class split of pFedHN and PeFLL (k classes per client, a share per holder).

    The validation pool is taken from the training part first (`random`: pFedHN's random
    split; `stratified`: PeFLL's, the same count of every class). The class assignment and
    proportions are drawn once and applied to the train, val and test pools alike.
    """
    num_classes = int(max(y_train.max(), y_test.max() if len(y_test) else 0)) + 1
    n = len(y_train)
    n_val = round(val_fraction * n)
    if val_split == "random":
        perm = rng.permutation(n)
        val_pool, train_pool = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    else:
        per_class = (n - n_val) // num_classes
        tr, va = [], []
        for c in range(num_classes):
            idx = rng.permutation(np.flatnonzero(y_train == c))
            tr.append(idx[:per_class])
            va.append(idx[per_class:])
        train_pool, val_pool = np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))
    assignment = assign_classes(num_clients, num_classes, classes_per_client, rng, prop_low,
                                prop_high, extra_share, distinct_classes)
    train = split_by_class(y_train[train_pool], assignment, rng)
    val = split_by_class(y_train[val_pool], assignment, rng)
    test = split_by_class(y_test, assignment, rng)
    return [(train_pool[a], val_pool[b], c) for a, b, c in zip(train, val, test)]


def natural(y_train: np.ndarray, y_test: np.ndarray, num_clients: int,
            rng: np.random.Generator, *, g_train: np.ndarray, g_test: np.ndarray,
            val_fraction: float) -> SplitPartition:
    """One share per natural owner (user/subject), owners in ascending id order.

    Share k holds the k-th owner's samples of the training part (a random `val_fraction` of
    them as validation) and of the test part, so every user is split within itself. Labels
    are not used.
    """
    owners = np.unique(np.concatenate([g_train, g_test]))
    if num_clients > len(owners):
        raise UserError(f"partition 'natural': the dataset has {len(owners)} users, fewer "
                        f"than the {num_clients} requested; lower num_clients")
    out = []
    for g in owners[:num_clients]:
        tr = rng.permutation(np.flatnonzero(g_train == g))
        n_val = round(val_fraction * len(tr))
        out.append((np.sort(tr[n_val:]), np.sort(tr[:n_val]), np.flatnonzero(g_test == g)))
    return out


def label_split(train: np.ndarray, ratio: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """(labeled, unlabeled) parts of one client's training indices.

    A uniformly random `ratio` share keeps its labels: round(ratio * n), at least one when
    ratio > 0, none when ratio = 0. The choice never looks at the labels, so the hidden labels
    cannot influence anything downstream.
    """
    n = len(train)
    k = 0 if ratio <= 0 else min(n, max(1, round(ratio * n)))
    perm = rng.permutation(n)
    return np.sort(train[perm[:k]]), np.sort(train[perm[k:]])


@dataclass(frozen=True)
class PartitionerSpec:
    """A partition function and the check of its parameters."""

    fn: Callable[..., Partition] | Callable[..., SplitPartition]
    params: tuple[str, ...]
    validate: Callable[[dict[str, Any], int, int, int], None]
    #: True: `fn(y_train, y_test, num_clients, rng, **params)` splits the dataset's own train
    #: and test parts and returns (train, val, test) per client (`SplitPartition`); the
    #: config's `split.val`/`split.test` do not apply. False: `fn(labels, num_clients, rng,
    #: **params)` partitions the pooled data and each share is then split by `split_client`.
    presplit: bool = False
    #: True: the dataset's natural owners are passed as `g_train=`, `g_test=` (per-sample user
    #: ids); only datasets with `DatasetInfo.num_groups > 0` can be partitioned this way.
    groups: bool = False


def _check_natural(params: dict[str, Any], num_clients: int, num_classes: int,
                   n: int) -> None:
    vf = params["val_fraction"]
    if isinstance(vf, bool) or not isinstance(vf, int | float) or not 0 <= vf < 1:
        raise UserError(f"partition.val_fraction={vf!r} must be in [0, 1)")


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


def _is_int(v: Any, low: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, int) and v >= low


def _check_label_groups(params: dict[str, Any], num_clients: int, num_classes: int,
                        n: int) -> None:
    s = params["s"]
    if isinstance(s, bool) or not isinstance(s, int | float) or not 0 <= s <= 100:
        raise UserError(f"partition.s={s!r} must be a percentage in [0, 100] (the IID share)")
    for key in ("local_size", "test_size"):
        if not _is_int(params[key], 1):
            raise UserError(f"partition.{key}={params[key]!r} must be an integer >= 1")
    for key in ("cursor0_train", "cursor0_test"):
        if not _is_int(params[key], 0):
            raise UserError(f"partition.{key}={params[key]!r} must be an integer >= 0")
    groups = params["groups"]
    if not isinstance(groups, list) or not groups or not all(
            isinstance(g, list) and g and all(_is_int(y, 0) and y < num_classes for y in g)
            for g in groups):
        raise UserError(f"partition.groups={groups!r} must be a non-empty list of non-empty "
                        f"label lists with labels in [0, {num_classes - 1}]")
    if params["block"] not in ("equal", "counts"):
        raise UserError(f"partition.block={params['block']!r} is not valid (choose from: "
                        "equal, counts)")


def _check_by_class(params: dict[str, Any], num_clients: int, num_classes: int,
                    n: int) -> None:
    k = params["classes_per_client"]
    if not _is_int(k, 1) or k > num_classes:
        raise UserError(f"partition.classes_per_client={k!r} must be an integer in "
                        f"[1, {num_classes}]")
    low, high = params["prop_low"], params["prop_high"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) \
            or not 0 < low <= high:
        raise UserError(f"partition.prop_low={low!r}, partition.prop_high={high!r}: need "
                        "0 < prop_low <= prop_high")
    vf = params["val_fraction"]
    if isinstance(vf, bool) or not isinstance(vf, int | float) or not 0 <= vf < 1:
        raise UserError(f"partition.val_fraction={vf!r} must be in [0, 1)")
    if params["val_split"] not in ("random", "stratified"):
        raise UserError(f"partition.val_split={params['val_split']!r} is not valid (choose "
                        "from: random, stratified)")
    for key in ("extra_share", "distinct_classes"):
        if not isinstance(params[key], bool):
            raise UserError(f"partition.{key}={params[key]!r} must be true or false")
    if not params["extra_share"] and (k * num_clients) % num_classes:
        raise UserError(f"partition.classes_per_client x num_clients = {k * num_clients} must "
                        f"be divisible by the {num_classes} classes (every class gets the same "
                        "number of holders); change num_clients")


_BY_CLASS_PARAMS = ("classes_per_client", "prop_low", "prop_high", "val_fraction", "val_split",
                    "extra_share", "distinct_classes")

#: Registered partitioners (`partition=<name>`).
PARTITIONERS: dict[str, PartitionerSpec] = {
    "iid": PartitionerSpec(iid, (), _no_check),
    "dirichlet": PartitionerSpec(dirichlet, ("alpha", "min_size", "max_retries"),
                                 _check_dirichlet),
    "pathological": PartitionerSpec(pathological, ("classes_per_client",), _check_pathological),
    "shards": PartitionerSpec(shards, ("shards_per_client",), _check_shards),
    "label_groups": PartitionerSpec(
        label_groups, ("s", "local_size", "test_size", "groups", "cursor0_train",
                       "cursor0_test", "block"), _check_label_groups, presplit=True),
    "pfedhn_by_class": PartitionerSpec(
        by_class, _BY_CLASS_PARAMS, _check_by_class, presplit=True),
    "pefll_by_class": PartitionerSpec(
        by_class, _BY_CLASS_PARAMS, _check_by_class, presplit=True),
    "natural": PartitionerSpec(natural, ("val_fraction",), _check_natural, presplit=True,
                               groups=True),
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

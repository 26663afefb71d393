"""`partition=label_groups`: HyperFL's label-group ("s-similarity") split, FedPAC's procedure."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedplat.data.partitioners.base import Partitioner, Share, is_int, presplit
from fedplat.errors import UserError


def _take_label_groups(labels: np.ndarray, num_clients: int, num_classes: int, s: float,
                       size: int, groups: list[list[int]], cursor0: int,
                       block: str) -> list[np.ndarray]:
    """HyperFL's s-similarity split of one dataset part (FedPAC's `*_noniid_s` procedure).

    Samples are taken sequentially from each class's block of the label-sorted order; a class
    whose block is used up wraps around to its start, so clients may share samples. The sort is
    stable (within a class, samples in index order). The released code uses numpy's default
    argsort, which is not stable and whose order of tied labels depends on the CPU's sort
    kernel: a partition digest pinned on one machine did not match on this project's AVX-512
    machine.
    """
    order = np.argsort(labels, kind="stable")
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
                 block: str) -> list[Share]:
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


def check(params: dict[str, Any], num_clients: int, num_classes: int, n: int) -> None:
    """Check s (a percentage), sizes >= 1, cursors >= 0, groups of valid labels and block."""
    s = params["s"]
    if isinstance(s, bool) or not isinstance(s, int | float) or not 0 <= s <= 100:
        raise UserError(f"partition.s={s!r} must be a percentage in [0, 100] (the IID share)")
    for key in ("local_size", "test_size"):
        if not is_int(params[key], 1):
            raise UserError(f"partition.{key}={params[key]!r} must be an integer >= 1")
    for key in ("cursor0_train", "cursor0_test"):
        if not is_int(params[key], 0):
            raise UserError(f"partition.{key}={params[key]!r} must be an integer >= 0")
    groups = params["groups"]
    if not isinstance(groups, list) or not groups or not all(
            isinstance(g, list) and g and all(is_int(y, 0) and y < num_classes for y in g)
            for g in groups):
        raise UserError(f"partition.groups={groups!r} must be a non-empty list of non-empty "
                        f"label lists with labels in [0, {num_classes - 1}]")
    if params["block"] not in ("equal", "counts"):
        raise UserError(f"partition.block={params['block']!r} is not valid (choose from: "
                        "equal, counts)")


PARTITIONER = Partitioner(
    "label_groups", presplit(label_groups),
    ("s", "local_size", "test_size", "groups", "cursor0_train", "cursor0_test", "block"), check)

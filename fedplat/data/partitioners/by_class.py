"""`partition=by_class`: k classes per client, each class shared by its holders in proportions.

The by-class split of the hypernetwork papers (pFedHN, Shamsian et al. 2021; PeFLL, Scott et
al. 2024). Its options select the variant: pFedHN draws the proportions from U(0.4, 0.6) and
the validation pool at random (`val_split: random`, the defaults); PeFLL uses equal shares
(`prop_low = prop_high = 0.5`), `val_split: stratified` and distinct classes per client
(`distinct_classes: true`).

What `val_split: stratified` does (measured, `tests/fedplat/data/partitioners/test_by_class.py`):
it balances the *training* pool, (n - n_val) // C samples of every class, and the validation
pool is what remains of each class. Only on balanced data (Fashion-MNIST, CIFAR-10) is that the
same count per class; on MNIST it is 620 (digit 5) to 1,940 (digit 1) of 12,000. Every share is
int(n_c * p) samples (rounded down) of the pool of class c, so a client's validation size
follows its classes and proportions (MNIST, 100 clients, PeFLL's setting: 83 to 170) and a few
samples of each pool go to no client (there: 9,900 of the 10,000 test samples are assigned;
each run records the counts in summary.json's `data.partition`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedplat.data.partitioners.base import Partitioner, Share, check_fraction, is_int, presplit
from fedplat.errors import UserError


def assign_classes(num_clients: int, num_classes: int, classes_per_client: int,
                   rng: np.random.Generator, prop_low: float, prop_high: float,
                   extra_share: bool = False, distinct: bool = False
                   ) -> list[list[tuple[int, float]]]:
    """The class assignment: (class, proportion) pairs per client.

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
             distinct_classes: bool) -> list[Share]:
    """Give each client k classes, a share per holder, of the train, val and test pools.

    The validation pool is taken from the training part first (`random`: a uniformly random
    `val_fraction`; `stratified`: the training pool keeps (n - n_val) // C samples of every
    class and the validation pool gets the rest of each class, equal per class only when the
    classes are). The class assignment and proportions are drawn once and applied to the
    train, val and test pools alike; each share rounds down, so a few samples go to no one.
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


def check(params: dict[str, Any], num_clients: int, num_classes: int, n: int) -> None:
    """Check k in [1, C], 0 < prop_low <= prop_high, val_fraction in [0, 1), C divides k * N."""
    k = params["classes_per_client"]
    if not is_int(k, 1) or k > num_classes:
        raise UserError(f"partition.classes_per_client={k!r} must be an integer in "
                        f"[1, {num_classes}]")
    low, high = params["prop_low"], params["prop_high"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) \
            or not 0 < low <= high:
        raise UserError(f"partition.prop_low={low!r}, partition.prop_high={high!r}: need "
                        "0 < prop_low <= prop_high")
    check_fraction(params, "val_fraction")
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


PARTITIONER = Partitioner(
    "by_class", presplit(by_class),
    ("classes_per_client", "prop_low", "prop_high", "val_fraction", "val_split", "extra_share",
     "distinct_classes"), check)

"""`dataset=synthetic`: Synthetic(alpha, beta) of the FedProx paper, generated per user on demand.

Li et al., "Federated Optimization in Heterogeneous Networks" (MLSys 2020), section 5.1, as
their released generator (litian96/FedProx, data/synthetic_*/generate_synthetic.py) draws it.
User k has its own softmax-regression model and its own feature distribution:

    u_k ~ N(0, alpha^2),  W_k ~ N(u_k, 1) (features x classes),  b_k ~ N(u_k, 1) (classes)
    B_k ~ N(0, beta^2),   v_k ~ N(B_k, 1) (features),  x ~ N(v_k, Sigma),  Sigma_jj = j^-1.2
    y = argmax softmax(W_k^T x + b_k)

so alpha controls how much the users' labelling models differ and beta how much their
features do (as in the released code, alpha and beta are standard deviations). `iid=true` is
the paper's Synthetic-IID: one model W ~ N(0, 1), b ~ N(0, 1) for every user and v_k = B_k
in every coordinate. User k holds int(lognormal(size_mean, size_sigma)) + min_size samples
(the released code: lognormal(4, 2) + 50), optionally capped at `max_size`; its first
int((1 - test_fraction) * n) samples are its training part (the released code: 90 %).

Nothing is generated up front: `GeneratedUsers.generate(k)` draws user k's samples from a
generator seeded by (dataset.seed, k) alone, so 100,000 users cost nothing until sampled and
any process makes the same data for user k. The sizes are one seeded vector (a prefix of it
is the same for any number of users, so user k's data does not depend on the population).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.core import seeding
from fedplat.data.base import DatasetInfo, DatasetSpec, GeneratedUsers
from fedplat.data.provenance import DataSource
from fedplat.errors import UserError

#: Stream ids under `seeding.SCENARIO` (distinct from sbm's 0x5B).
_SIZES, _USER, _SHARED = 0x5E, 0x5F, 0x60


def _number(ds: DictConfig, key: str, *, integer: bool = False, lo: float = 0.0,
            strict: bool = False) -> float:
    """`dataset.<key>` as a number >= lo (> lo if strict), or one error line."""
    v = ds.get(key)
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or v < lo or (strict and v == lo):
        kind = "an integer" if integer else "a number"
        raise UserError(f"dataset.{key}={v!r} must be {kind} {'>' if strict else '>='} {lo:g}")
    return float(v)


def check(ds: DictConfig) -> None:
    """Range checks of the generator's keys (one line per problem)."""
    for key in ("alpha", "beta"):
        _number(ds, key)
    _number(ds, "num_features", integer=True, lo=1)
    _number(ds, "num_classes", integer=True, lo=2)
    _number(ds, "num_users", integer=True, lo=1)
    _number(ds, "size_mean")
    _number(ds, "size_sigma")
    _number(ds, "min_size", integer=True, lo=1)
    cap = ds.get("max_size")
    if cap is not None and cap != 0 \
            and _number(ds, "max_size", integer=True, lo=1) < int(ds.min_size):
        raise UserError(f"dataset.max_size={cap} is below dataset.min_size="
                            f"{ds.min_size}; raise it (or 0 for no cap)")
    tf = ds.get("test_fraction")
    if isinstance(tf, bool) or not isinstance(tf, int | float) or not 0 <= tf < 1:
        raise UserError(f"dataset.test_fraction={tf!r} must be in [0, 1)")
    if not isinstance(ds.get("iid"), bool):
        raise UserError(f"dataset.iid={ds.get('iid')!r} must be true or false")
    _number(ds, "seed", integer=True)


@functools.lru_cache(maxsize=4)
def user_sizes(seed: int, num_users: int, size_mean: float, size_sigma: float, min_size: int,
               max_size: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(num_train, num_test) per user: power-law (lognormal) sizes, split as FedProx does."""
    rng = seeding.rng(seed, seeding.SCENARIO, _SIZES)
    n = rng.lognormal(size_mean, size_sigma, num_users).astype(np.int64) + min_size
    if max_size:
        n = np.minimum(n, max_size)
    train = np.maximum(1, ((1.0 - test_fraction) * n).astype(np.int64))
    train.setflags(write=False)
    test = n - train
    test.setflags(write=False)
    return train, test


def _sizes(ds: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    return user_sizes(int(ds.seed), int(ds.num_users), float(ds.size_mean),
                      float(ds.size_sigma), int(ds.min_size), int(ds.get("max_size") or 0),
                      float(ds.test_fraction))


def user_samples(k: int, n: int, *, alpha: float, beta: float, num_features: int,
                 num_classes: int, iid: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """User k's n samples (x float32 (n, features), y int64), a function of (seed, k, n) only.

    The user's parameters are drawn first, in a fixed order, so they do not depend on n.
    """
    rng = seeding.rng(seed, seeding.SCENARIO, _USER, k)
    u, b_mean = rng.normal(0.0, alpha), rng.normal(0.0, beta)
    if iid:
        shared = seeding.rng(seed, seeding.SCENARIO, _SHARED)
        w = shared.normal(0.0, 1.0, (num_features, num_classes))
        b = shared.normal(0.0, 1.0, num_classes)
        v = np.full(num_features, b_mean)
    else:
        w = rng.normal(u, 1.0, (num_features, num_classes))
        b = rng.normal(u, 1.0, num_classes)
        v = rng.normal(b_mean, 1.0, num_features)
    scale = np.arange(1, num_features + 1, dtype=np.float64) ** -0.6  # sqrt(j^-1.2)
    x = v + rng.standard_normal((n, num_features)) * scale
    y = np.argmax(x @ w + b, axis=1)  # softmax is monotone: its argmax is the logits'
    return x.astype(np.float32), y.astype(np.int64)


def info(ds: DictConfig) -> DatasetInfo:
    """`num_features` features, `num_classes` classes; `num_users` natural owners."""
    check(ds)
    train, test = _sizes(ds)
    return DatasetInfo("synthetic", (int(ds.num_features),), int(ds.num_classes), "vector",
                       int(train.sum() + test.sum()), num_groups=int(ds.num_users))


def load(ds: DictConfig, cache: Path) -> GeneratedUsers:
    """The users' sizes now; each user's samples when `generate` is called."""
    meta = info(ds)
    train, test = _sizes(ds)
    alpha, beta, iid, seed = float(ds.alpha), float(ds.beta), bool(ds.iid), int(ds.seed)
    features, classes = int(ds.num_features), int(ds.num_classes)
    sizes = train + test

    def generate(k: int) -> tuple[np.ndarray, np.ndarray]:
        return user_samples(k, int(sizes[k]), alpha=alpha, beta=beta, num_features=features,
                            num_classes=classes, iid=iid, seed=seed)

    params = {"alpha": alpha, "beta": beta, "num_features": features, "num_classes": classes,
              "iid": iid, "seed": seed}

    details = {**params, "num_users": int(ds.num_users), "size_mean": float(ds.size_mean),
               "size_sigma": float(ds.size_sigma), "min_size": int(ds.min_size),
               "max_size": int(ds.get("max_size") or 0),
               "test_fraction": float(ds.test_fraction)}
    origin = DataSource(__name__, "generated",
                        f"generated per user by fedplat's Synthetic(alpha={params['alpha']:g}, "
                        f"beta={params['beta']:g}) generator, {ds.num_users} users, "
                        f"seed={params['seed']}", details=details)
    return GeneratedUsers(meta, train, test, generate, origin)


SPECS = (DatasetSpec("synthetic", info, check, load, per_user=True),)

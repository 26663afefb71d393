"""The dataset registry: one module per dataset (or per family sharing a loader), one resolver.

Every module here exposes `SPECS`, the `DatasetSpec`s it provides; `DATASETS` collects them
by name, and `get_spec` is the one place that turns `dataset.name` into a spec (or one error
line listing what exists). Adding a dataset: a module with `SPECS`, its line in `_MODULES`,
and `conf/dataset/<name>.yaml`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.core import seeding
from fedplat.data.base import (
    DatasetInfo,
    DatasetSpec,
    GeneratedUsers,
    GraphDataset,
    RawDataset,
    is_graph,
)
from fedplat.data.datasets import (
    basic_motions,
    cifar10,
    digits,
    fashion_mnist,
    imagefolder,
    mnist,
    mnist1d,
    npz,
    pyg,
    sbm,
    shakespeare,
    synthetic,
    wisdm,
)
from fedplat.errors import UserError

_MODULES = (mnist1d, digits, mnist, fashion_mnist, cifar10, wisdm, basic_motions, sbm, pyg,
            synthetic, shakespeare, imagefolder, npz)

#: Registered datasets (`dataset=<name>`).
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for m in _MODULES for spec in m.SPECS}


def get_spec(name: str) -> DatasetSpec:
    """The spec registered under `name`, or a `UserError` listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset '{name}' (choose from: "
                        f"{', '.join(sorted(DATASETS))})") from None


#: False inside `without_data_files`: dataset_info answers from the declared shapes.
_READ_DATA_FILES: ContextVar[bool] = ContextVar("fedplat_read_data_files", default=True)


@contextlib.contextmanager
def without_data_files() -> Iterator[None]:
    """Inside this block no data file is read to describe a dataset.

    `dataset_info` returns the declared shapes of a file-based dataset and validation skips
    what needs the data itself (absent files, a graph's partition), so that a config can be
    checked on a machine without the data (`fedplat.config.compose.prepare(cfg, check_data=False)`).
    """
    token = _READ_DATA_FILES.set(False)
    try:
        yield
    finally:
        _READ_DATA_FILES.reset(token)


def reads_data_files(name: str) -> bool:
    """Whether describing dataset `name` may read its files now (see `without_data_files`)."""
    return _READ_DATA_FILES.get() or get_spec(name).declared is None


def max_samples_of(ds: DictConfig, spec: DatasetSpec | None = None) -> int:
    """`dataset.max_samples` (0 or absent: all samples), checked, or one error line.

    It applies to datasets of samples; a graph (one global graph) and a dataset generated per
    user have their own size keys, so asking it of them is an error, not a quiet no-op.
    """
    value = ds.get("max_samples", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"dataset.max_samples={value!r} must be an integer >= 0 (0: all "
                        "samples)")
    if value and spec is not None and spec.per_user:
        raise UserError(f"dataset.max_samples does not apply to dataset '{spec.name}' "
                        "(generated per user): lower dataset.num_users or its size keys")
    return int(value)


def _capped(ds: DictConfig, spec: DatasetSpec, info: DatasetInfo) -> DatasetInfo:
    """`info` with `num_samples` capped by `dataset.max_samples`."""
    cap = max_samples_of(ds, spec)
    if not cap:
        return info
    if is_graph(info):
        raise UserError(f"dataset.max_samples does not apply to graph dataset '{info.name}' "
                        "(one global graph): leave it at 0")
    return dataclasses.replace(info, num_samples=min(info.num_samples, cap))


def dataset_info(ds: DictConfig) -> DatasetInfo:
    """Shapes and sizes of the configured dataset (raises if it is not available).

    `num_samples` is capped by `dataset.max_samples`, as `load_raw` caps the samples.
    """
    spec = get_spec(str(ds.name))
    max_samples_of(ds, spec)  # a bad cap is one line before any data is looked for
    if spec.declared is not None and not _READ_DATA_FILES.get():
        return _capped(ds, spec, spec.declared(ds))
    return _capped(ds, spec, spec.info(ds))


def subset(raw: RawDataset, max_samples: int) -> RawDataset:
    """A seeded random `max_samples` of the pooled samples, each keeping its part (train/test).

    Drawn from a stream of its own (`seeding.SUBSET`, keyed by `max_samples`, not by the run
    seed): every seed of a quick check sees the same smaller data set, as it would a published
    one. Sample order within each part is kept. No draw at all when the cap is not below the
    dataset's size, so runs without it keep their numbers.
    """
    n_train, n_test = len(raw.y_train), len(raw.y_test)
    if max_samples <= 0 or max_samples >= n_train + n_test:
        return raw
    rng = seeding.rng(0, seeding.SUBSET, max_samples)
    keep = np.sort(rng.choice(n_train + n_test, size=max_samples, replace=False))
    tr, te = keep[keep < n_train], keep[keep >= n_train] - n_train
    src = raw.source
    if src is not None:
        src = dataclasses.replace(src, subset=True, details={
            **src.details, "max_samples": max_samples,
            "asked_by": f"dataset.max_samples={max_samples}"})
    return RawDataset(
        dataclasses.replace(raw.info, num_samples=max_samples),
        raw.x_train[tr], raw.y_train[tr], raw.x_test[te], raw.y_test[te],
        None if raw.g_train is None else raw.g_train[tr],
        None if raw.g_test is None else raw.g_test[te], src)


def load_raw(ds: DictConfig, cache: Path) -> RawDataset | GraphDataset | GeneratedUsers:
    """Load the configured dataset's arrays (a `dataset.max_samples` subset when asked)."""
    spec = get_spec(str(ds.name))
    spec.check(ds)
    cap = max_samples_of(ds, spec)
    raw = spec.load(ds, cache)
    if cap and isinstance(raw, RawDataset):
        return subset(raw, cap)
    if cap and isinstance(raw, GraphDataset):
        raise UserError(f"dataset.max_samples does not apply to graph dataset '{spec.name}' "
                        "(one global graph): leave it at 0")
    return raw


__all__ = ["DATASETS", "DatasetInfo", "DatasetSpec", "GraphDataset", "RawDataset",
           "dataset_info", "get_spec", "load_raw", "max_samples_of", "reads_data_files",
           "subset", "without_data_files"]

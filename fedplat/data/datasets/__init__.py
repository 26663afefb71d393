"""The dataset registry: one module per dataset (or per family sharing a loader), one resolver.

Every module here exposes `SPECS`, the `DatasetSpec`s it provides; `DATASETS` collects them
by name, and `get_spec` is the one place that turns `dataset.name` into a spec (or one error
line listing what exists). Adding a dataset: a module with `SPECS`, its line in `_MODULES`,
and `conf/dataset/<name>.yaml`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from omegaconf import DictConfig

from fedplat.data.base import DatasetInfo, DatasetSpec, GeneratedUsers, GraphDataset, RawDataset
from fedplat.data.datasets import (
    basic_motions,
    cifar10,
    digits,
    fashion_mnist,
    mnist,
    mnist1d,
    pyg,
    sbm,
    shakespeare,
    synthetic,
    wisdm,
)
from fedplat.errors import UserError

_MODULES = (mnist1d, digits, mnist, fashion_mnist, cifar10, wisdm, basic_motions, sbm, pyg,
            synthetic, shakespeare)

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


def dataset_info(ds: DictConfig) -> DatasetInfo:
    """Shapes and sizes of the configured dataset (raises if it is not available)."""
    spec = get_spec(str(ds.name))
    if spec.declared is not None and not _READ_DATA_FILES.get():
        return spec.declared(ds)
    return spec.info(ds)


def load_raw(ds: DictConfig, cache: Path) -> RawDataset | GraphDataset | GeneratedUsers:
    """Load the configured dataset's arrays."""
    spec = get_spec(str(ds.name))
    spec.check(ds)
    return spec.load(ds, cache)


__all__ = ["DATASETS", "DatasetInfo", "DatasetSpec", "GraphDataset", "RawDataset",
           "dataset_info", "get_spec", "load_raw", "reads_data_files", "without_data_files"]

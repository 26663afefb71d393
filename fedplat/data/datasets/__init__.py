"""The dataset registry: one module per dataset (or per family sharing a loader), one resolver.

Every module here exposes `SPECS`, the `DatasetSpec`s it provides; `DATASETS` collects them
by name, and `get_spec` is the one place that turns `dataset.name` into a spec (or one error
line listing what exists). Adding a dataset: a module with `SPECS`, its line in `_MODULES`,
and `conf/dataset/<name>.yaml`.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from fedplat.data.base import DatasetInfo, DatasetSpec, GraphDataset, RawDataset
from fedplat.data.datasets import (
    basic_motions,
    cifar10,
    digits,
    fashion_mnist,
    mnist,
    mnist1d,
    pyg,
    sbm,
    wisdm,
)
from fedplat.errors import UserError

_MODULES = (mnist1d, digits, mnist, fashion_mnist, cifar10, wisdm, basic_motions, sbm, pyg)

#: Registered datasets (`dataset=<name>`).
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for m in _MODULES for spec in m.SPECS}


def get_spec(name: str) -> DatasetSpec:
    """The spec registered under `name`, or a `UserError` listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset '{name}' (choose from: "
                        f"{', '.join(sorted(DATASETS))})") from None


def dataset_info(ds: DictConfig) -> DatasetInfo:
    """Shapes and sizes of the configured dataset (raises if it is not available)."""
    return get_spec(str(ds.name)).info(ds)


def load_raw(ds: DictConfig, cache: Path) -> RawDataset | GraphDataset:
    """Load the configured dataset's arrays."""
    spec = get_spec(str(ds.name))
    spec.check(ds)
    return spec.load(ds, cache)


__all__ = ["DATASETS", "DatasetInfo", "DatasetSpec", "GraphDataset", "RawDataset",
           "dataset_info", "get_spec", "load_raw"]

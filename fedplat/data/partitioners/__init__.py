"""The partitioner registry: one module per partitioner, one call signature, one resolver.

Every module here exposes `PARTITIONER`, a `Partitioner` called as
`partition(data, num_shares, rng, **params)` (see `base`); `PARTITIONERS` collects them by
name and `get_partitioner` is the one place that turns `partition.name` into a partitioner
that fits the dataset (or one error line listing those that do). Adding a partitioner: a
module with `PARTITIONER`, its line in `_MODULES`, and `conf/partition/<name>.yaml`.
"""

from __future__ import annotations

from typing import Any

from fedplat.data.base import DatasetInfo, is_graph
from fedplat.data.partitioners import (
    by_class,
    dirichlet,
    iid,
    label_groups,
    metis_disjoint,
    metis_overlapping,
    natural,
    pathological,
    shards,
)
from fedplat.data.partitioners.base import (
    SAMPLES,
    GraphPartition,
    Partitioner,
    SampleData,
    Share,
)
from fedplat.errors import UserError

_MODULES = (iid, dirichlet, pathological, shards, label_groups, by_class, natural,
            metis_disjoint, metis_overlapping)

#: Registered partitioners (`partition=<name>`), sample and graph partitioners alike.
PARTITIONERS: dict[str, Partitioner[Any, Any]] = {m.PARTITIONER.name: m.PARTITIONER
                                                  for m in _MODULES}


def names_for(info: DatasetInfo | None) -> list[str]:
    """Sorted names of the partitioners that apply to the dataset (all when `info` is None)."""
    return sorted(name for name, p in PARTITIONERS.items()
                  if info is None or p.applies_to_graphs() == is_graph(info))


def get_partitioner(name: str, info: DatasetInfo | None = None) -> Partitioner[Any, Any]:
    """The partitioner `name`, checked to fit the dataset `info` when given.

    One `UserError` line otherwise: an unknown name, a sample partitioner for a graph
    dataset or a graph partitioner for a sample dataset, each listing the names that apply.
    """
    spec = PARTITIONERS.get(name)
    valid = ", ".join(names_for(info))
    if spec is None:
        raise UserError(f"unknown partition '{name}' (choose from: {valid})")
    if info is not None and spec.applies_to_graphs() != is_graph(info):
        if is_graph(info):
            raise UserError(f"partition '{name}' does not apply to graph dataset "
                            f"'{info.name}' (choose from: {valid})")
        raise UserError(f"partition '{name}' needs a graph dataset (dataset=sbm, cora, ...); "
                        f"for dataset '{info.name}' choose from: {valid}")
    return spec


def partition_params(spec: Partitioner[Any, Any], part_cfg: dict[str, Any]) -> dict[str, Any]:
    """The parameters `spec` takes, read from the partition config (missing = UserError)."""
    missing = [p for p in spec.params if p not in part_cfg]
    if missing:
        raise UserError(f"partition '{part_cfg.get('name')}' needs {', '.join(missing)}")
    return {p: part_cfg[p] for p in spec.params}


__all__ = ["PARTITIONERS", "SAMPLES", "GraphPartition", "Partitioner", "SampleData", "Share",
           "get_partitioner", "names_for", "partition_params"]

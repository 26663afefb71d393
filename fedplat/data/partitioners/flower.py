"""`partition.impl=flwr`: Flower Datasets' own partitioners behind fedplat's partition names.

fedplat's iid, dirichlet, pathological and shards follow the same ideas as flwr-datasets'
IidPartitioner, DirichletPartitioner, PathologicalPartitioner and ShardPartitioner, but not
the same random draws (fedplat shuffles each class before its Dirichlet split, deals classes
round-robin, ...; Flower's IID shards a dataset that FederatedDataset shuffled first), so no
seed makes the splits equal. With `partition.impl=flwr` the split is Flower's: the pooled
labels become a Hugging Face `datasets.Dataset` with a `label` column, Flower's partitioner
(seeded with the run `seed`) assigns the indices, and fedplat cuts each share into
train/val/test as for its own partitioners. For `iid` the dataset is first shuffled with
`Dataset.shuffle(seed=seed)`, as `flwr_datasets.FederatedDataset(shuffle=True)` does.

Parameters map as: dirichlet `alpha`, `min_size` -> `min_partition_size` (Flower retries 10
times, its own limit; `max_retries` does not apply); pathological `classes_per_client` ->
`num_classes_per_partition` (Flower's default class_assignment_mode, "random"); shards
`shards_per_client` -> `num_shards_per_partition`.

flwr-datasets pulls Hugging Face `datasets` and pyarrow, so it is an optional extra
(`pip install 'fedplat[flwr-datasets]'`), imported only when asked for.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from typing import Any

import numpy as np

from fedplat.data.partitioners.base import Partitioner, SampleData, Share
from fedplat.errors import UserError

#: `partition.impl` values.
IMPLS = ("fedplat", "flwr")
#: fedplat partitions that have a Flower counterpart (`partition.impl=flwr` applies).
COUNTERPARTS = {"iid": "IidPartitioner", "dirichlet": "DirichletPartitioner",
                "pathological": "PathologicalPartitioner", "shards": "ShardPartitioner"}


def impl_of(part_cfg: dict[str, Any]) -> str:
    """`partition.impl` (absent: fedplat), checked, or one error line."""
    value = part_cfg.get("impl", "fedplat")
    name = part_cfg.get("name")
    if value not in IMPLS:
        raise UserError(f"partition.impl={value!r} is not valid (choose from: "
                        f"{', '.join(IMPLS)})")
    if value == "flwr":
        if name not in COUNTERPARTS:
            raise UserError(f"partition.impl=flwr applies to {', '.join(COUNTERPARTS)} (Flower "
                            f"Datasets has no counterpart of partition '{name}'); leave "
                            "partition.impl=fedplat")
        if importlib.util.find_spec("flwr_datasets") is None:
            raise UserError("partition.impl=flwr needs Flower Datasets: pip install "
                            "'fedplat[flwr-datasets]' (or pip install flwr-datasets)")
    return str(value)


def flower_shares(name: str, labels: np.ndarray, num_shares: int, seed: int,
                  params: dict[str, Any]) -> list[np.ndarray]:
    """Flower's partition of `labels` into `num_shares` index arrays (sorted)."""
    import datasets
    from flwr_datasets import partitioner as fp

    table = datasets.Dataset.from_dict({"label": labels.tolist(),
                                        "idx": np.arange(len(labels)).tolist()})
    part: Any
    if name == "iid":
        table = table.shuffle(seed=seed)  # FederatedDataset(shuffle=True) before partitioning
        part = fp.IidPartitioner(num_partitions=num_shares)
    elif name == "dirichlet":
        part = fp.DirichletPartitioner(num_partitions=num_shares, partition_by="label",
                                       alpha=float(params["alpha"]),
                                       min_partition_size=int(params["min_size"]), seed=seed)
    elif name == "pathological":
        part = fp.PathologicalPartitioner(
            num_partitions=num_shares, partition_by="label",
            num_classes_per_partition=int(params["classes_per_client"]), seed=seed)
    elif name == "shards":
        part = fp.ShardPartitioner(num_partitions=num_shares, partition_by="label",
                                   num_shards_per_partition=int(params["shards_per_client"]),
                                   seed=seed)
    else:  # impl_of refuses the others before any data is loaded
        raise UserError(f"partition.impl=flwr has no counterpart of partition '{name}'")
    part.dataset = table
    try:
        return [np.sort(np.asarray(part.load_partition(k)["idx"], dtype=np.int64))
                for k in range(num_shares)]
    except ValueError as exc:
        raise UserError(f"Flower's {COUNTERPARTS[name]} refused partition '{name}' with "
                        f"{num_shares} shares: {exc}") from None


def with_impl(spec: Partitioner[Any, Any], part_cfg: dict[str, Any]) -> Partitioner[Any, Any]:
    """`spec` itself, or (`partition.impl=flwr`) the same name and checks on Flower's split."""
    if impl_of(part_cfg) == "fedplat":
        return spec
    name = spec.name

    def partition(data: SampleData, num_shares: int, rng: np.random.Generator,
                  **params: Any) -> list[Share]:
        return data.cut(flower_shares(name, data.y, num_shares, data.seed, params))

    return replace(spec, partition=partition)

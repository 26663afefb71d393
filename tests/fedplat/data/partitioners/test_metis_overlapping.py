"""`partition=metis_overlapping`: overlapping samples of METIS communities."""

import numpy as np
import pytest

from fedplat.data.datasets.sbm import sbm_graph
from fedplat.data.graphs import metis
from fedplat.data.partitioners.metis_overlapping import PARTITIONER, metis_overlapping
from fedplat.errors import UserError

pytest.importorskip("pymetis")


def _sbm_edges():
    _, _, ei, _ = sbm_graph(4, 100, 5, 8, intra_degree=8.0, inter_degree=0.5, homophily=0.8,
                            label_alpha=1.0, feature_signal=1.0, block_shift=0.5, seed=0)
    return ei, 400


def test_overlapping_statistics():
    k, per = 20, 5
    part = metis_overlapping(
        *_sbm_edges(), num_clients=k, metis_seed=1234, clients_per_community=per,
        sample_ratio=0.5, sample_seed=7)
    communities = metis(_sbm_edges()[0], 400, k // per, 1234)
    assert part.community == [c for c in range(k // per) for _ in range(per)]  # cid = c*5+i
    sizes = np.bincount(communities)
    for cid, nodes in enumerate(part.nodes):
        c = part.community[cid]
        assert np.all(communities[nodes] == c)  # inside its community
        assert len(nodes) == round(0.5 * sizes[c])  # half of it
        assert len(np.unique(nodes)) == len(nodes)
    same, across = [], []
    for i in range(k):
        for j in range(i + 1, k):
            shared = len(np.intersect1d(part.nodes[i], part.nodes[j])) / len(part.nodes[i])
            (same if part.community[i] == part.community[j] else across).append(shared)
    assert max(across) == 0.0  # different communities share no node
    assert 0.4 < np.mean(same) < 0.6  # two 50 % samples share ~50 % of a client's nodes
    again = metis_overlapping(*_sbm_edges(), num_clients=k, metis_seed=1234,
                              clients_per_community=per, sample_ratio=0.5, sample_seed=7)
    assert all(np.array_equal(u, v) for u, v in zip(part.nodes, again.nodes))


OK = {"metis_seed": 1, "clients_per_community": 5, "sample_ratio": 0.5, "sample_seed": 1}


@pytest.mark.parametrize(("over", "num_clients", "message"), [
    ({}, 12, "num_clients=12 is not a multiple of partition.clients_per_community=5"),
    ({"sample_ratio": 0.0}, 10, "partition.sample_ratio=0.0 must be in (0, 1]"),
    ({"sample_seed": -2}, 10, "partition.sample_seed=-2 must be an integer >= 0"),
    ({"clients_per_community": 0}, 10, "partition.clients_per_community=0 must be an integer"),
    ({"clients_per_community": 1}, 500, "500 communities exceed the 400 nodes"),
])
def test_parameter_checks(over, num_clients, message):
    with pytest.raises(UserError) as info:
        PARTITIONER.validate({**OK, **over}, num_clients, 5, 400)
    assert message in str(info.value)
    PARTITIONER.validate(OK, 10, 5, 400)

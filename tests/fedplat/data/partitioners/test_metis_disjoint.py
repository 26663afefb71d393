"""`partition=metis_disjoint`: one METIS part per client, a pure function of the config."""

import numpy as np
import pytest

from fedplat.data.datasets.sbm import sbm_graph
from fedplat.data.partitioners.metis_disjoint import PARTITIONER, metis_disjoint
from fedplat.errors import UserError

pytest.importorskip("pymetis")


def _sbm_edges():
    _, _, ei, _ = sbm_graph(4, 100, 5, 8, intra_degree=8.0, inter_degree=0.5, homophily=0.8,
                            label_alpha=1.0, feature_signal=1.0, block_shift=0.5, seed=0)
    return ei, 400


def test_parts_cover_the_nodes_disjointly_and_are_a_pure_function_of_the_config():
    p1 = metis_disjoint(*_sbm_edges(), num_clients=5, metis_seed=3)
    p2 = metis_disjoint(*_sbm_edges(), num_clients=5, metis_seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(p1.nodes, p2.nodes))
    joined = np.concatenate(p1.nodes)
    assert len(p1.nodes) == 5 and np.array_equal(np.sort(joined), np.arange(400))
    assert p1.community is None


def test_parameter_checks():
    PARTITIONER.validate({"metis_seed": 0}, 10, 5, 400)
    with pytest.raises(UserError, match=r"partition\.metis_seed=-1 must be an integer >= 0"):
        PARTITIONER.validate({"metis_seed": -1}, 10, 5, 400)
    with pytest.raises(UserError, match="num_clients=401 exceeds the 400 nodes"):
        PARTITIONER.validate({"metis_seed": 0}, 401, 5, 400)

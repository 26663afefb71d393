"""Graph preprocessing: undirected edges, induced subgraphs, LCC, normalisation, split, METIS."""

import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.base import GraphDataset
from fedplat.data.datasets.sbm import sbm_graph
from fedplat.data.graphs import (
    RawGraph,
    global_split,
    graph_spec,
    induced_subgraph,
    largest_component,
    metis,
    normalize_rows,
    undirected,
)
from fedplat.errors import UserError


def test_undirected_and_induced_subgraph():
    ei = np.array([[0, 1, 2, 2, 3], [1, 0, 3, 2, 0]])
    und = undirected(ei, 4)
    assert sorted(zip(*und.tolist())) == [(0, 1), (0, 3), (1, 0), (2, 3), (3, 0), (3, 2)]
    sub = induced_subgraph(und, np.array([0, 3]), 4)  # node 0 -> 0, node 3 -> 1
    assert sorted(zip(*sub.tolist())) == [(0, 1), (1, 0)]


def test_largest_component_and_normalize_rows():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    ei = undirected(np.array([[0, 1, 3], [1, 2, 4]]), 6)  # {0,1,2}, {3,4}, {5}
    x2, y2, ei2, _ = largest_component(x, y, ei)
    assert y2.tolist() == [0, 1, 2] and x2.shape == (3, 2)
    assert sorted(zip(*ei2.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    z = normalize_rows(np.array([[1.0, 3.0], [0.0, 0.0]]))
    assert z.tolist() == [[0.25, 0.75], [0.0, 0.0]]


@pytest.mark.parametrize("n", [10, 2485, 2708])
def test_global_split_sizes_are_disjoint_and_cover(n):
    split = global_split(n, 0.2, 0.4, np.random.default_rng(0))
    counts = np.bincount(split, minlength=3)
    assert counts[0] == round(0.2 * n) and counts[2] == round(0.4 * n)
    assert counts.sum() == n  # every node in exactly one part
    again = global_split(n, 0.2, 0.4, np.random.default_rng(0))
    assert np.array_equal(split, again)


def _path_graph(ds, cache: Path) -> RawGraph:
    """Nodes 0-1-2-3 in a path plus an isolated node 4 (dropped by the LCC)."""
    x = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [5.0, 5.0]], np.float32)
    y = np.array([0, 1, 0, 1, 0])
    return RawGraph(x, y, np.array([[0, 1, 2], [1, 2, 3]]), 2)


def test_graph_spec_preprocesses_caches_and_checks(tmp_path):
    checked = []
    spec = graph_spec("path", _path_graph, lambda ds: checked.append(ds.name))
    ds = OmegaConf.create({"name": "path", "lcc": True, "normalize_features": True,
                           "split_train": 0.5, "split_test": 0.25, "split_seed": 0})
    g = spec.load(ds, tmp_path)
    assert isinstance(g, GraphDataset) and spec.name == "path"
    assert g.num_nodes == 4 and g.edge_index.shape == (2, 6)  # LCC, both directions
    assert np.allclose(g.x.sum(axis=1), 1.0)  # row-normalised
    assert np.bincount(g.split, minlength=3).tolist() == [2, 1, 1]
    assert g.info.kind == "graph" and g.info.num_samples == 4 and g.info.input_shape == (2,)
    assert spec.load(ds, tmp_path) is g and checked == ["path", "path"]
    with pytest.raises(UserError, match="leaves no validation nodes"):
        spec.load(OmegaConf.merge(ds, {"split_test": 0.5}), tmp_path)


def test_metis_recovers_sbm_blocks_and_is_deterministic():
    pytest.importorskip("pymetis")
    _, _, ei, block = sbm_graph(4, 100, 5, 8, intra_degree=8.0, inter_degree=0.5,
                                homophily=0.8, label_alpha=1.0, feature_signal=1.0,
                                block_shift=0.5, seed=0)
    a = metis(ei, 400, 4, seed=1)
    assert np.array_equal(a, metis(ei, 400, 4, seed=1))
    purity = np.mean([np.bincount(block[a == k]).max() / (a == k).sum() for k in range(4)])
    assert purity > 0.9
    assert metis(ei, 400, 1, seed=1).tolist() == [0] * 400  # one part needs no METIS


def test_metis_unavailable_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymetis", None)  # import pymetis -> ImportError
    with pytest.raises(UserError, match="METIS partitioning needs pymetis"):
        metis(np.array([[0, 1], [1, 0]]), 2, 2, seed=0)

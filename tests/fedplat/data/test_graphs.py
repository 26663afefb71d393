"""Graph datasets: SBM generator, FED-PUB preprocessing, global split, Cora from raw files."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.graphs import (
    GraphDataset,
    global_split,
    induced_subgraph,
    largest_component,
    load_graph,
    normalize_rows,
    sbm_graph,
    undirected,
)
from fedplat.data.sources import shared_data_dir
from fedplat.errors import UserError
from tests.helpers import make_cfg

CORA_RAW = shared_data_dir() / "planetoid" / "Cora" / "raw"
needs_cora = pytest.mark.skipif(
    not (CORA_RAW / "ind.cora.x").is_file(),
    reason="Cora raw files not found in ../shared/data/planetoid/Cora/raw; set FEDPLAT_DATA_DIR")

SBM = dict(blocks=3, nodes_per_block=80, num_classes=4, num_features=8, intra_degree=6.0,
           inter_degree=0.3, homophily=0.8, label_alpha=0.5, feature_signal=1.0,
           block_shift=0.5)


def sbm_cfg(**over):
    return OmegaConf.create({"name": "sbm", **SBM, "seed": 0, "lcc": True,
                             "normalize_features": False, "split_train": 0.2,
                             "split_test": 0.4, "split_seed": 1234, **over})


def test_sbm_is_seeded_and_has_its_planted_structure():
    a = sbm_graph(**SBM, seed=1)
    b = sbm_graph(**SBM, seed=1)
    c = sbm_graph(**SBM, seed=2)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[2], c[2]) or not np.array_equal(a[0], c[0])
    x, y, ei, block = a
    assert x.shape == (240, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(block).tolist() == [80, 80, 80]
    src, dst = ei
    assert not np.any(src == dst)  # no self-loops
    codes = set((src * 240 + dst).tolist())
    assert all(d * 240 + s in codes for s, d in zip(src, dst))  # both directions
    same_block = block[src] == block[dst]
    assert same_block.mean() > 0.85  # communities are dense inside, sparse across
    inside = same_block
    assert (y[src[inside]] == y[dst[inside]]).mean() > 0.6  # homophily inside blocks
    deg = len(src) / 240
    assert 4.5 < deg < 8.5  # about intra_degree + inter_degree
    # each block has its own label mix
    mixes = np.stack([np.bincount(y[block == k], minlength=4) / 80 for k in range(3)])
    assert np.abs(mixes[0] - mixes[1]).sum() > 0.2


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


def test_load_graph_sbm_info_and_split(tmp_path):
    g = load_graph(sbm_cfg(), tmp_path)
    assert isinstance(g, GraphDataset)
    assert g.info.kind == "graph" and g.info.num_classes == 4 and g.info.input_shape == (8,)
    assert g.info.num_samples == g.num_nodes <= 240
    counts = np.bincount(g.split, minlength=3)
    assert counts[0] == round(0.2 * g.num_nodes) and counts[2] == round(0.4 * g.num_nodes)
    assert g.block is not None and len(g.block) == g.num_nodes


@pytest.mark.parametrize(("over", "message"), [
    ({"split_train": 0.0}, "dataset.split_train=0.0 must be a fraction in (0, 1)"),
    ({"split_train": 0.7, "split_test": 0.3}, "leaves no validation nodes"),
    ({"blocks": 0}, "dataset.blocks=0 must be an integer > 0"),
    ({"homophily": 1.5}, "dataset.homophily=1.5 must be in [0, 1]"),
])
def test_bad_graph_dataset_values(tmp_path, over, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]").replace("+", r"\+")):
        load_graph(sbm_cfg(**over), tmp_path)


def test_missing_planetoid_files_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(tmp_path / "nothing"))
    ds = OmegaConf.create({"name": "citeseer", "root": str(tmp_path / "empty"),
                           "allow_download": False, "lcc": True, "normalize_features": True,
                           "split_train": 0.2, "split_test": 0.4, "split_seed": 1234})
    with pytest.raises(UserError) as info:
        load_graph(ds, tmp_path / "cache")
    assert "CiteSeer raw files not found" in str(info.value)
    assert "allow_download=true" in str(info.value) and "\n" not in str(info.value)


@needs_cora
def test_cora_from_raw_files_is_processed_in_the_cache_only(tmp_path):
    root = tmp_path / "user" / "Cora" / "raw"
    root.mkdir(parents=True)
    for f in CORA_RAW.iterdir():
        shutil.copyfile(f, root / f.name)
    before = sorted(os.listdir(tmp_path / "user"))
    ds = OmegaConf.create({"name": "cora", "root": str(tmp_path / "user"),
                           "allow_download": False, "lcc": True, "normalize_features": True,
                           "split_train": 0.2, "split_test": 0.4, "split_seed": 1234})
    g = load_graph(ds, tmp_path / "cache")
    assert g.num_nodes == 2485 and g.edge_index.shape == (2, 10138)  # FED-PUB's LCC
    assert g.info.input_shape == (1433,) and g.info.num_classes == 7
    assert np.allclose(g.x.sum(axis=1), 1.0, atol=1e-5)  # NormalizeFeatures
    assert np.bincount(g.split).tolist() == [497, 994, 994]
    assert sorted(os.listdir(tmp_path / "user")) == before  # nothing written beside the raw
    assert (tmp_path / "cache" / "planetoid" / "Cora" / "processed").is_dir()


@needs_cora
def test_cora_config_validates_from_the_shared_folder():
    cfg = make_cfg("dataset=cora", "partition=metis_disjoint", "model=auto")
    assert cfg.model.name == "gcn"
    assert Path(CORA_RAW).is_dir()

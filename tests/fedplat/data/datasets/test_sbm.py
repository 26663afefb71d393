"""The SBM graph: seeded planted structure, its registered loader, range checks of its keys."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.base import GraphDataset
from fedplat.data.datasets import get_spec, sbm
from fedplat.data.datasets.sbm import sbm_graph
from fedplat.errors import UserError

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


def test_load_sbm_info_and_split(tmp_path):
    g = get_spec("sbm").load(sbm_cfg(), tmp_path)
    assert isinstance(g, GraphDataset)
    assert g.info.kind == "graph" and g.info.num_classes == 4 and g.info.input_shape == (8,)
    assert g.info.num_samples == g.num_nodes <= 240
    counts = np.bincount(g.split, minlength=3)
    assert counts[0] == round(0.2 * g.num_nodes) and counts[2] == round(0.4 * g.num_nodes)
    assert g.block is not None and len(g.block) == g.num_nodes
    assert sbm.SPECS[0].load(sbm_cfg(), tmp_path) is g  # cached per process and config


@pytest.mark.parametrize(("over", "message"), [
    ({"split_train": 0.0}, "dataset.split_train=0.0 must be a fraction in (0, 1)"),
    ({"split_train": 0.7, "split_test": 0.3}, "leaves no validation nodes"),
    ({"blocks": 0}, "dataset.blocks=0 must be an integer > 0"),
    ({"label_alpha": 0}, "dataset.label_alpha=0 must be a number > 0"),
    ({"homophily": 1.5}, "dataset.homophily=1.5 must be in [0, 1]"),
])
def test_bad_sbm_values(tmp_path, over, message):
    with pytest.raises(UserError) as info:
        get_spec("sbm").load(sbm_cfg(**over), tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)

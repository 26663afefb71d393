"""WISDM v1.1: the hand-written ARFF parser, per-user stratified split, cleaning, errors."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import dataset_info, load_raw
from fedplat.data.datasets.wisdm import (
    WISDM_CLASSES,
    parse_wisdm_arff,
    stratified_group_split,
    wisdm_table,
)
from fedplat.errors import UserError
from tests.conftest import SHARED_DATA

WISDM_ARFF = SHARED_DATA / "wisdm" / "WISDM_ar_v1.1_transformed.arff"
needs_wisdm = pytest.mark.skipif(
    not WISDM_ARFF.is_file(),
    reason="WISDM file not found in ../shared/data/wisdm; set FEDPLAT_DATA_DIR")


def test_stratified_group_split_keeps_singletons_in_training():
    y = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1])
    g = np.array([1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2])
    test = stratified_group_split(y, g, 0.3, np.random.default_rng(0))
    assert test[(g == 1) & (y == 0)].sum() == 1  # round(1.2)
    assert test[(g == 1) & (y == 1)].sum() == 0  # a single sample stays in training
    assert test[(g == 2) & (y == 0)].sum() == 2 and test[(g == 2) & (y == 1)].sum() == 1


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


def test_wisdm_from_a_root_folder_with_bad_settings(tmp_path):
    (tmp_path / "WISDM_ar_v1.1_transformed.arff").write_text(TINY_ARFF)
    ds = OmegaConf.create({"name": "wisdm", "root": str(tmp_path), "test_fraction": 0.3,
                           "split_seed": 0, "missing": "impute"})
    info = dataset_info(ds)
    assert (info.num_samples, info.num_groups, info.input_shape) == (3, 2, (1,))  # XAVG dropped
    for key, value, message in (("test_fraction", 1.0, "dataset.test_fraction=1.0 must be in"),
                                ("missing", "zero", "dataset.missing='zero' is not valid"),
                                ("split_seed", -1, "dataset.split_seed=-1 must be an integer")):
        with pytest.raises(UserError, match=message):
            dataset_info(OmegaConf.merge(ds, {key: value}))


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
    t = wisdm_table(OmegaConf.create({"name": "wisdm", "root": ""}))
    assert int(np.isnan(t.x).sum()) == 615
    assert (t.x[:, t.features.index("XAVG")] == 0).all()

"""The dataset registry: every module's specs under their names, one resolver, one error line."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import DATASETS, dataset_info, get_spec, load_raw, subset
from fedplat.errors import UserError


def test_every_dataset_module_is_registered_under_its_name():
    assert sorted(DATASETS) == ["basic_motions", "cifar10", "citeseer", "computers", "cora",
                                "digits", "fashion_mnist", "imagefolder", "mnist", "mnist1d",
                                "npz", "photo", "pubmed", "sbm", "shakespeare", "synthetic",
                                "wisdm"]
    assert all(spec.name == name for name, spec in DATASETS.items())
    assert get_spec("digits") is DATASETS["digits"]


def test_info_and_load_go_through_the_spec(tmp_path):
    ds = OmegaConf.create({"name": "digits"})
    info = dataset_info(ds)
    assert (info.name, info.input_shape, info.num_classes) == ("digits", (1, 8, 8), 10)
    raw = load_raw(ds, tmp_path)
    assert raw.info == info and len(raw.y_train) == info.num_samples


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError,
                       match=r"^unknown dataset .x. \(choose from: basic_motions, cifar10, "
                             r".*digits.*wisdm\)$"):
        dataset_info(OmegaConf.create({"name": "x"}))


def test_max_samples_is_a_seeded_subset_of_both_parts_taken_before_partitioning(tmp_path):
    f = tmp_path / "d.npz"  # row i of the features holds i: each kept row says where it was
    rows = np.arange(500, dtype=np.float32)[:, None].repeat(3, axis=1)
    np.savez(f, x_train=rows[:400], y_train=np.arange(400) % 4, x_test=rows[400:],
             y_test=np.arange(100) % 4)

    def ds(cap):
        return OmegaConf.create({"name": "npz", "path": str(f), "standardize": False,
                                 "max_samples": cap})

    full = load_raw(ds(0), tmp_path)
    assert dataset_info(ds(120)).num_samples == 120  # validation sees the capped size
    a, b = load_raw(ds(120), tmp_path), load_raw(ds(120), tmp_path)
    assert len(a.y_train) + len(a.y_test) == 120 and a.info.num_samples == 120
    assert 0 < len(a.y_test) < len(a.y_train)  # each sample keeps its part
    kept_train, kept_test = a.x_train[:, 0].astype(int), a.x_test[:, 0].astype(int)
    assert (kept_train < 400).all() and (kept_test >= 400).all()
    assert kept_train.tolist() == sorted(set(kept_train.tolist()))  # in order, no repeats
    assert np.array_equal(a.y_train, kept_train % 4)  # labels travel with their rows
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.x_test, b.x_test)
    assert a.source is not None and a.source.subset
    assert a.source.details["max_samples"] == 120
    # off (0) or not below the size: the very arrays, no draw
    assert full.source is not None and not full.source.subset
    assert subset(full, 500) is full and subset(full, 0) is full
    other = load_raw(ds(121), tmp_path)
    assert not np.array_equal(other.x_train[:50], a.x_train[:50])  # another cap, another draw


@pytest.mark.parametrize(("name", "cap", "message"), [
    ("digits", -1, r"dataset.max_samples=-1 must be an integer >= 0"),
    ("digits", "x", r"dataset.max_samples='x' must be an integer"),
    ("sbm", 10, r"does not apply to graph dataset 'sbm'"),
    ("synthetic", 10, r"does not apply to dataset 'synthetic' \(generated per user\)"),
])
def test_max_samples_refuses_bad_values_and_datasets_it_cannot_cut(name, cap, message):
    from fedplat.config.tree import CONF_DIR

    ds = OmegaConf.load(CONF_DIR / "dataset" / f"{name}.yaml")
    ds.max_samples = cap
    if name == "synthetic":
        ds.num_users = 3
    with pytest.raises(UserError, match=message):
        dataset_info(ds)

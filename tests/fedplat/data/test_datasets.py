"""The dataset registry: every module's specs under their names, one resolver, one error line."""

import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import DATASETS, dataset_info, get_spec, load_raw
from fedplat.errors import UserError


def test_every_dataset_module_is_registered_under_its_name():
    assert sorted(DATASETS) == ["basic_motions", "cifar10", "citeseer", "computers", "cora",
                                "digits", "fashion_mnist", "mnist", "mnist1d", "photo",
                                "pubmed", "sbm", "shakespeare", "synthetic", "wisdm"]
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

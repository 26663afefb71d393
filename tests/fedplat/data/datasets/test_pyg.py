"""The PyG family (Planetoid, Amazon): one loader, raw files copied into the cache only."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import DATASETS, get_spec
from fedplat.data.datasets.pyg import PYG_SOURCES
from fedplat.data.sources import shared_data_dir
from fedplat.errors import UserError
from tests.helpers import make_cfg

CORA_RAW = shared_data_dir() / "planetoid" / "Cora" / "raw"
needs_cora = pytest.mark.skipif(
    not (CORA_RAW / "ind.cora.x").is_file(),
    reason="Cora raw files not found in ../shared/data/planetoid/Cora/raw; set FEDPLAT_DATA_DIR")


def pyg_cfg(name, root):
    return OmegaConf.create({"name": name, "root": str(root), "allow_download": False,
                             "lcc": True, "normalize_features": True, "split_train": 0.2,
                             "split_test": 0.4, "split_seed": 1234})


def test_every_source_is_registered_with_its_files():
    assert set(PYG_SOURCES) == {"cora", "citeseer", "pubmed", "computers", "photo"}
    assert set(PYG_SOURCES) <= set(DATASETS)
    assert PYG_SOURCES["cora"].raw_files[0] == "ind.cora.x" and len(
        PYG_SOURCES["cora"].raw_files) == 8
    assert PYG_SOURCES["photo"].raw_files == ("amazon_electronics_photo.npz",)


def test_missing_planetoid_files_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(tmp_path / "nothing"))
    with pytest.raises(UserError) as info:
        get_spec("citeseer").load(pyg_cfg("citeseer", tmp_path / "empty"), tmp_path / "cache")
    assert "CiteSeer raw files not found" in str(info.value)
    assert "allow_download=true" in str(info.value) and "\n" not in str(info.value)


@needs_cora
def test_cora_from_raw_files_is_processed_in_the_cache_only(tmp_path):
    root = tmp_path / "user" / "Cora" / "raw"
    root.mkdir(parents=True)
    for f in CORA_RAW.iterdir():
        shutil.copyfile(f, root / f.name)
    before = sorted(os.listdir(tmp_path / "user"))
    g = get_spec("cora").load(pyg_cfg("cora", tmp_path / "user"), tmp_path / "cache")
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

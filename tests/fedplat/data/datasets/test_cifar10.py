"""CIFAR-10: local python batches, per-channel standardisation, one-line errors."""

import pickle

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import cifar10, dataset_info, load_raw
from fedplat.errors import UserError


def ds(**kw):
    return OmegaConf.create({"name": "cifar10", "root": "", "allow_download": False, **kw})


def test_cifar10_local_batches_and_absence(tmp_path, no_sources):
    with pytest.raises(UserError, match="CIFAR-10 not found"):
        dataset_info(ds())
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in cifar10.CIFAR_FILES:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    raw = load_raw(ds(root=str(tmp_path)), tmp_path)
    assert raw.x_train.shape == (20, 3, 32, 32) and raw.x_test.shape == (4, 3, 32, 32)
    means = raw.x_train.mean(axis=(0, 2, 3))
    assert np.allclose(means, 0, atol=1e-5)  # per channel, with the training part's statistics
    (folder / "test_batch").write_bytes(b"\x80garbage")
    with pytest.raises(UserError, match="corrupt CIFAR-10 batch"):
        load_raw(ds(root=str(tmp_path)), tmp_path)

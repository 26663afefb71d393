"""Fashion-MNIST: Debian's package, a folder of IDX files, or a one-line error."""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import dataset_info, fashion_mnist, load_raw
from fedplat.errors import UserError
from tests.helpers import write_idx_images, write_idx_labels


def ds(**kw):
    return OmegaConf.create({"name": "fashion_mnist", "root": "", "allow_download": False, **kw})


def test_fashion_absent_offline_mentions_debian_package(no_sources):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        dataset_info(ds())
    assert fashion_mnist.source(ds(allow_download=True)) is None  # a download would apply


def test_fashion_from_a_root_folder(tmp_path, no_sources):
    rng = np.random.default_rng(1)
    write_idx_images(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28)),
                     compress=False)
    write_idx_labels(tmp_path / "train-labels-idx1-ubyte", np.arange(20) % 10, compress=False)
    write_idx_images(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28)),
                     compress=False)
    write_idx_labels(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5) % 10, compress=False)
    raw = load_raw(ds(root=str(tmp_path)), tmp_path)
    assert raw.x_train.shape == (20, 1, 28, 28) and raw.y_test.tolist() == [0, 1, 2, 3, 4]
    assert abs(float(raw.x_train.mean())) < 1e-5  # standardised with the training part
    assert raw.info.name == "fashion_mnist" and raw.info.num_samples == 70000


def test_fashion_from_debian_package(fashion_mnist_dir):
    raw = load_raw(ds(), Path("."))
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10

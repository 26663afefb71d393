"""MNIST-1D: generated locally, cached, regenerated when the cache is broken."""

import numpy as np
from omegaconf import OmegaConf

from fedplat.data.datasets import mnist1d


def test_mnist1d_generated_locally_and_cached(tmp_path):
    ds = OmegaConf.create({"name": "mnist1d", "num_samples": 5000})
    raw = mnist1d.load(ds, tmp_path)
    assert raw.x_train.shape == (4000, 40) and raw.x_test.shape == (1000, 40)
    assert raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64
    assert sorted(np.unique(raw.y_train)) == list(range(10))
    cached = tmp_path / "mnist1d_n5000.npz"
    assert cached.is_file()
    again = mnist1d.load(ds, tmp_path)
    assert np.array_equal(raw.x_train, again.x_train)
    cached.write_bytes(b"garbage")  # a broken cache entry is regenerated, not fatal
    third = mnist1d.load(ds, tmp_path)
    assert np.array_equal(raw.y_test, third.y_test)


def test_info_follows_num_samples_without_generating():
    info = mnist1d.info(OmegaConf.create({"name": "mnist1d", "num_samples": 1234}))
    assert (info.name, info.input_shape, info.num_classes, info.kind,
            info.num_samples) == ("mnist1d", (40,), 10, "vector", 1234)
    assert [s.name for s in mnist1d.SPECS] == ["mnist1d"]

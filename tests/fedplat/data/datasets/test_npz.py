"""Your own arrays: x_train/y_train (optionally x_test/y_test) in one .npz; one-line errors."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import dataset_info, load_raw, without_data_files
from fedplat.errors import UserError


def ds(path, **kw):
    return OmegaConf.create({"name": "npz", "path": str(path), "standardize": True,
                             "num_classes": 0, "feature_shape": [], "max_samples": 0, **kw})


def test_vectors_with_a_test_part(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=rng.normal(5, 2, (30, 4)), y_train=rng.integers(0, 3, 30),
             x_test=rng.normal(5, 2, (10, 4)), y_test=np.arange(10) % 3, extra=np.zeros(2))
    info = dataset_info(ds(f))
    assert (info.input_shape, info.num_classes, info.kind, info.num_samples) == \
        ((4,), 3, "vector", 40)
    raw = load_raw(ds(f), tmp_path)
    assert raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64
    assert raw.x_train.shape == (30, 4) and raw.x_test.shape == (10, 4)
    assert abs(float(raw.x_train.mean())) < 1e-5 and abs(float(raw.x_train.std()) - 1) < 1e-4
    plain = load_raw(ds(f, standardize=False), tmp_path)
    with np.load(f) as arrays:
        assert np.array_equal(plain.x_train, arrays["x_train"].astype(np.float32))
    assert dataset_info(ds(f, num_classes=5)).num_classes == 5  # a class absent from the file


@pytest.mark.parametrize(("shape", "expected"), [
    ((12, 32, 32, 3), (3, 32, 32)),  # channels last
    ((12, 3, 32, 32), (3, 32, 32)),  # channels first
    ((12, 28, 28), (1, 28, 28)),     # grey
])
def test_uint8_images_in_any_layout(tmp_path, shape, expected):
    x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    f = tmp_path / "img.npz"
    np.savez(f, x_train=x, y_train=np.arange(12) % 2)
    raw = load_raw(ds(f, standardize=False), tmp_path)
    assert raw.info.input_shape == expected and raw.info.kind == "image"
    assert raw.x_train.shape == (12, *expected) and len(raw.x_test) == 0
    first = x[0].transpose(2, 0, 1) if shape[-1] == 3 else x[0].reshape(expected)
    assert np.allclose(raw.x_train[0], first / 255.0)


def test_errors_name_the_file_and_the_keys_expected(tmp_path):
    with pytest.raises(UserError, match=r"^dataset=npz needs dataset.path=FILE.npz: a .npz "
                                        r"holding x_train"):
        dataset_info(ds(""))
    with pytest.raises(UserError, match=rf"npz file not found: dataset.path={tmp_path}/no.npz "
                                        rf"\(searched: \[{tmp_path}\] for no.npz\); expected "
                                        r"a .npz holding x_train .*optionally x_test and y_test"):
        dataset_info(ds(tmp_path / "no.npz"))
    f = tmp_path / "d.npz"
    np.savez(f, x=np.zeros((3, 2)), y_train=np.zeros(3, int))
    with pytest.raises(UserError, match=r"d.npz lacks x_train \(has x, y_train\); expected"):
        dataset_info(ds(f))
    np.savez(f, x_train=np.zeros((3, 2)), y_train=np.zeros(3, int), x_test=np.zeros((1, 2)))
    with pytest.raises(UserError, match="holds x_test without y_test; give both or neither"):
        dataset_info(ds(f))
    np.savez(f, x_train=np.zeros((3, 2)), y_train=np.array([0.5, 1, 2]))
    with pytest.raises(UserError, match="y_train has dtype float64; labels must be integers"):
        dataset_info(ds(f))
    np.savez(f, x_train=np.zeros((3, 2)), y_train=np.zeros(4, int))
    with pytest.raises(UserError, match=r"y_train has shape \(4,\), expected \(3,\)"):
        dataset_info(ds(f))
    np.savez(f, x_train=np.zeros((3, 2)), y_train=np.array([0, 1, 3]))
    with pytest.raises(UserError, match=r"label 3 is outside dataset.num_classes=2"):
        dataset_info(ds(f, num_classes=2))
    np.savez(f, x_train=np.zeros((3, 2)), y_train=np.array(["a", "b", "c"]))
    with pytest.raises(UserError, match="labels must be integers"):
        dataset_info(ds(f))
    f.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"^corrupt npz file .*d.npz: .*; expected a .npz"):
        dataset_info(ds(f))


def test_declared_needs_classes_and_shape(tmp_path):
    with without_data_files():
        with pytest.raises(UserError, match=r"set dataset.num_classes=K and "
                                            r"dataset.feature_shape=\[F\]"):
            dataset_info(ds(tmp_path / "absent.npz"))
        info = dataset_info(ds(tmp_path / "absent.npz", num_classes=10,
                               feature_shape=[3, 32, 32]))
    assert (info.input_shape, info.num_classes, info.kind) == ((3, 32, 32), 10, "image")

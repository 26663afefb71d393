"""Your own images: class subfolders read with Pillow, resized, standardised; one-line errors."""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from fedplat.data.datasets import dataset_info, load_raw, without_data_files
from fedplat.errors import UserError


def ds(root: Path | str, **kw):
    return OmegaConf.create({"name": "imagefolder", "root": str(root), "image_size": [6, 4],
                             "channels": 3, "num_classes": 0, "max_samples": 0, **kw})


def write(folder: Path, colour: tuple[int, int, int], n: int, suffix: str = ".png",
          size: tuple[int, int] = (10, 8)) -> None:
    """`n` images of one flat colour (width, height = `size`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, colour).save(folder / f"img{i}{suffix}")


def test_split_layout_classes_labels_shapes_and_pixels(tmp_path):
    write(tmp_path / "train" / "red", (255, 0, 0), 3)
    write(tmp_path / "train" / "blue", (0, 0, 255), 2, ".jpg", size=(4, 6))
    write(tmp_path / "test" / "red", (255, 0, 0), 1)
    (tmp_path / "train" / "empty").mkdir()  # a folder without images is not a class
    (tmp_path / "train" / "red" / "notes.txt").write_text("not an image")
    info = dataset_info(ds(tmp_path))
    assert (info.input_shape, info.num_classes, info.kind, info.num_samples) == \
        ((3, 6, 4), 2, "image", 6)
    raw = load_raw(ds(tmp_path), tmp_path / "cache")
    assert raw.x_train.shape == (5, 3, 6, 4) and raw.x_train.dtype == np.float32
    assert raw.y_train.tolist() == [0, 0, 1, 1, 1]  # blue, red: sorted folder names
    assert raw.x_test.shape == (1, 3, 6, 4) and raw.y_test.tolist() == [1]
    assert np.allclose(raw.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # per channel
    # red images have a high red channel and a low blue one, after standardising
    red = raw.x_train[raw.y_train == 1]
    assert (red[:, 0] > 0).all() and (red[:, 2] < 0).all()
    assert raw.source is not None and raw.source.details["classes"] == ["blue", "red"]
    assert len(raw.source.files) == 6


def test_flat_layout_grey_and_no_test_part(tmp_path):
    write(tmp_path / "a", (10, 10, 10), 2)
    write(tmp_path / "b", (200, 200, 200), 2, ".jpeg")
    raw = load_raw(ds(tmp_path, channels=1, image_size=[5, 5]), tmp_path / "cache")
    assert raw.x_train.shape == (4, 1, 5, 5) and len(raw.x_test) == 0
    assert raw.y_train.tolist() == [0, 0, 1, 1]
    assert (raw.x_train[:2] < raw.x_train[2:].min()).all()  # dark a below light b


def test_errors_name_the_folders_searched_and_the_layout_expected(tmp_path):
    with pytest.raises(UserError, match=r"^dataset=imagefolder needs dataset.root=DIR: "):
        dataset_info(ds(""))
    with pytest.raises(UserError, match=rf"dataset.root={tmp_path / 'nope'} is not a folder "
                                         rf"\(searched: \[{tmp_path / 'nope'}\]\); expected "
                                         r"DIR/<class>/\*\.png"):
        dataset_info(ds(tmp_path / "nope"))
    (tmp_path / "train" / "x").mkdir(parents=True)
    with pytest.raises(UserError, match=r"no class subfolder of .*train holds an image file"):
        dataset_info(ds(tmp_path))
    write(tmp_path / "train" / "x", (1, 2, 3), 1)
    write(tmp_path / "test" / "y", (1, 2, 3), 1)
    with pytest.raises(UserError, match=r"test has classes that .*train lacks \(y\)"):
        dataset_info(ds(tmp_path))
    (tmp_path / "test" / "y" / "img0.png").unlink()
    (tmp_path / "train" / "x" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match=r"^corrupt image .*broken.png: .*; remove or replace "
                                        r"it \(imagefolder expects DIR/<class>/"):
        load_raw(ds(tmp_path), tmp_path / "cache")
    for key, value, message in (("channels", 2, "must be 1 .grey. or 3 .RGB."),
                                ("image_size", [0, 4], r"must be \[height, width\]")):
        with pytest.raises(UserError, match=rf"dataset.{key}=.*{message}"):
            dataset_info(ds(tmp_path, **{key: value}))


def test_declared_needs_num_classes_and_reads_no_folder(tmp_path):
    with without_data_files():
        with pytest.raises(UserError, match=r"set dataset\.num_classes=K"):
            dataset_info(ds(tmp_path / "absent"))
        info = dataset_info(ds(tmp_path / "absent", num_classes=7))
    assert (info.input_shape, info.num_classes) == ((3, 6, 4), 7)

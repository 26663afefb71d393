import gzip
import struct

import numpy as np
import pytest

from fedplat.data.idx import read_idx
from fedplat.errors import UserError
from tests.helpers import write_idx_images as write_images
from tests.helpers import write_idx_labels as write_labels


def test_round_trip_plain_and_gzip(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    write_images(tmp_path / "a.gz", imgs)
    write_images(tmp_path / "a", imgs, compress=False)
    write_labels(tmp_path / "l.gz", [3, 1, 4, 1, 5])
    assert np.array_equal(read_idx(tmp_path / "a.gz"), imgs)
    assert np.array_equal(read_idx(tmp_path / "a"), imgs)
    assert read_idx(tmp_path / "l.gz").tolist() == [3, 1, 4, 1, 5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00", "only 2 bytes"),
        (struct.pack(">II", 1234, 3) + b"abc", "magic number 1234"),
        (struct.pack(">II", 2049, 10) + b"abc", "header promises 10 values but the file holds 3"),
    ],
)
def test_corrupt_files_raise_one_line(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        read_idx(path)
    assert "\n" not in str(info.value)


def test_truncated_gzip_is_reported(tmp_path):
    good = gzip.compress(struct.pack(">II", 2049, 100) + bytes(100))
    (tmp_path / "t.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="corrupt data file"):
        read_idx(tmp_path / "t.gz")


def test_idx_dataset_label_above_the_classes_is_one_line(tmp_path):
    from fedplat.data.base import DatasetInfo
    from fedplat.data.idx import load_idx_dataset

    rng = np.random.default_rng(0)
    write_images(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 28, 28)))
    write_labels(tmp_path / "train-labels-idx1-ubyte.gz", [0, 1, 2, 3])
    write_images(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (2, 28, 28)))
    write_labels(tmp_path / "t10k-labels-idx1-ubyte.gz", [0, 1])
    info = DatasetInfo("mnist", (1, 28, 28), 3, "image", 6)
    with pytest.raises(UserError, match=r"corrupt IDX labels .*label above 2"):
        load_idx_dataset(info, tmp_path)
    raw = load_idx_dataset(DatasetInfo("mnist", (1, 28, 28), 10, "image", 6), tmp_path)
    assert raw.x_train.shape == (4, 1, 28, 28) and raw.y_test.tolist() == [0, 1]

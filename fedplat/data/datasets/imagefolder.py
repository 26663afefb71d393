"""`dataset=imagefolder`: your own images, one subfolder per class (torchvision/HF layout).

The layout of torchvision's `ImageFolder` and Hugging Face's `imagefolder` builder::

    <root>/<class>/<any/sub/path>/<image>.png|.jpg|.jpeg        (no test part), or
    <root>/train/<class>/...  and optionally  <root>/test/<class>/...

Class names are the subfolder names (of `train/` when it exists), labels their index in sorted
order, as in `ImageFolder`; a class folder without images is not a class. A test part may lack
classes but may not add any. Each image is read with Pillow, converted to `dataset.channels` (1:
grey, 3: RGB) and resized to `dataset.image_size` (height, width, bilinear), held as uint8 while
reading (one byte per pixel), then scaled to [0, 1] and standardised per channel with the
training part's statistics (float32), like CIFAR-10. Without a test part, partitioners cut one
from each client's share (`split.test`), as for `dataset=digits`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data.base import DatasetInfo, DatasetSpec, RawDataset, standardise, unit_scale
from fedplat.data.provenance import DataSource, package_version
from fedplat.errors import UserError

#: Image file suffixes read (lower case; torchvision's ImageFolder accepts the same family).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
#: What the loader expects, in its error lines.
EXPECTED = ("DIR/<class>/*.png|jpg|jpeg (one subfolder per class), or DIR/train/<class>/... "
            "with an optional DIR/test/<class>/...")
#: `DatasetInfo.num_samples` when the files are not read (validation without the data):
#: unknown, so sample-count limits go unchecked there (see `fedplat.config.compose.prepare`).
UNKNOWN_SAMPLES = 2**31 - 1


@dataclass(frozen=True)
class Layout:
    """The image files found under `root`: class names and (path, label) per part."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[Path, int], ...]
    test: tuple[tuple[Path, int], ...]


def _images(folder: Path) -> list[Path]:
    """Image files anywhere below `folder`, in sorted path order (a stable sample order)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        out.extend(Path(dirpath) / f for f in sorted(filenames)
                   if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith("."))
    return out


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, for every subfolder of `folder` holding images."""
    found: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _images(sub)
        if files:
            found[sub.name] = files
    return found


def _root(ds: DictConfig) -> Path:
    root = str(ds.get("root") or "")
    if not root:
        raise UserError(f"dataset=imagefolder needs dataset.root=DIR: {EXPECTED}")
    return Path(root).expanduser()


def scan(ds: DictConfig) -> Layout:
    """Find the classes and image files under `dataset.root`, or one error line."""
    root = _root(ds)
    if not root.is_dir():
        raise UserError(f"imagefolder not found: dataset.root={root} is not a folder "
                        f"(searched: [{root}]); expected {EXPECTED}")
    train_dir, test_dir = root / "train", root / "test"
    split = train_dir.is_dir()
    top = train_dir if split else root
    by_class = _class_files(top)
    if not by_class:
        raise UserError(f"imagefolder has no images: no class subfolder of {top} holds an "
                        f"image file ({', '.join(IMAGE_SUFFIXES)}; searched: [{top}]); "
                        f"expected {EXPECTED}")
    classes = tuple(sorted(by_class))
    train = tuple((p, classes.index(c)) for c in classes for p in by_class[c])
    test: tuple[tuple[Path, int], ...] = ()
    if split and test_dir.is_dir():
        test_classes = _class_files(test_dir)
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise UserError(f"imagefolder: {test_dir} has classes that {train_dir} lacks "
                            f"({', '.join(extra[:5])}); every test class needs training images")
        test = tuple((p, classes.index(c)) for c in sorted(test_classes)
                     for p in test_classes[c])
    return Layout(root, classes, train, test)


def _shape(ds: DictConfig) -> tuple[int, int, int]:
    """(channels, height, width) from `dataset.channels` and `dataset.image_size`."""
    channels = ds.get("channels", 3)
    size = ds.get("image_size", [32, 32])
    size = list(size) if not isinstance(size, int | str) else [size, size]
    if isinstance(channels, bool) or channels not in (1, 3):
        raise UserError(f"dataset.channels={channels!r} must be 1 (grey) or 3 (RGB)")
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                             for v in size):
        raise UserError(f"dataset.image_size={size!r} must be [height, width], integers >= 1")
    return int(channels), int(size[0]), int(size[1])


def info(ds: DictConfig) -> DatasetInfo:
    """Shape from the config; classes and samples from the folders (nothing decoded)."""
    shape = _shape(ds)
    layout = scan(ds)
    return DatasetInfo("imagefolder", shape, len(layout.classes), "image",
                       len(layout.train) + len(layout.test))


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without reading the folders: needs `dataset.num_classes`; samples unknown."""
    shape = _shape(ds)
    classes = ds.get("num_classes", 0)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise UserError("dataset=imagefolder is described by its folders: set "
                        "dataset.num_classes=K to check this config where they are absent")
    return DatasetInfo("imagefolder", shape, classes, "image", UNKNOWN_SAMPLES)


def check(ds: DictConfig) -> None:
    """The folders exist and hold images (`scan`), and the shape keys are valid."""
    info(ds)


def read_images(files: tuple[tuple[Path, int], ...], shape: tuple[int, int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Decode, convert and resize every file: uint8 (n, C, H, W) and int64 labels.

    One uint8 array is filled in place (a byte per pixel value); a file Pillow cannot read is
    one error line naming it.
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    mode = "L" if c == 1 else "RGB"
    x = np.empty((len(files), h, w, c), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as im:
                img = im.convert(mode)
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                x[i] = np.asarray(img, dtype=np.uint8).reshape(h, w, c)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise UserError(f"corrupt image {path}: {exc}; remove or replace it (imagefolder "
                            f"expects {EXPECTED})") from None
    y = np.fromiter((label for _, label in files), dtype=np.int64, count=len(files))
    return x.transpose(0, 3, 1, 2), y


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """Every image at the configured shape, standardised per channel (training statistics)."""
    shape = _shape(ds)
    layout = scan(ds)
    xtr, ytr = read_images(layout.train, shape)
    xte, yte = read_images(layout.test, shape)
    x_train, x_test = standardise(unit_scale(xtr, 255), unit_scale(xte, 255), per_channel=True,
                                  in_place=True)
    meta = DatasetInfo("imagefolder", shape, len(layout.classes), "image", len(ytr) + len(yte))
    files = tuple(str(p) for p, _ in (*layout.train, *layout.test))
    origin = DataSource(__name__, "imagefolder", f"from {layout.root}", files,
                        package_version("pillow"),
                        details={"classes": list(layout.classes), "image_size": [shape[1],
                                 shape[2]], "channels": shape[0]})
    return RawDataset(meta, x_train, ytr, x_test, yte, source=origin)


SPECS = (DatasetSpec("imagefolder", info, check, load, declared),)

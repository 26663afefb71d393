"""A CIFAR-shaped stand-in: 3x32x32 uint8 images of 10 classes, as an .npz for dataset=npz.

CIFAR-10 is not on every machine (it is not on the development machine offline); this makes a
structured synthetic set of the same shape to check that settings train at all (e.g.
conf/experiment/cifar10_fedavg.yaml) before spending hours on the real data. It says nothing
about CIFAR-10 accuracy.

Class c is a grating: orientation c * 18 degrees, spatial frequency 2 + (c % 3) cycles per
image. Each image draws its two colours, its phase, a frequency and orientation jitter, its
contrast and brightness, a randomly placed dark square occluding part of it, and pixel noise:
colour and position say nothing about the class, so a model must learn oriented filters (a
linear model on the pixels does poorly: 0.115 test accuracy on 10 classes with scikit-learn's
LogisticRegression).

    python scripts/cifar_standin.py out.npz --train 5000 --test 1000 --seed 0
    fedplat experiment=cifar10_fedavg dataset=npz dataset.path=out.npz num_rounds=10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make(n: int, rng: np.random.Generator, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (n, 32, 32, 3) uint8 with balanced labels in random order."""
    y = rng.permutation(np.arange(n) % classes)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 32.0
    x = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        theta = np.deg2rad(c * 180.0 / classes + rng.normal(0, 6))
        freq = (2 + c % 3) * rng.uniform(0.85, 1.15)
        wave = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta))
                      + rng.uniform(0, 2 * np.pi))
        mix = (wave[..., None] + 1) / 2  # 0..1
        colours = rng.uniform(0.1, 0.9, (2, 3))
        img = colours[0] * mix + colours[1] * (1 - mix)
        img = rng.uniform(0.5, 1.0) * (img - 0.5) + 0.5 + rng.normal(0, 0.08)
        top, left, size = rng.integers(0, 24), rng.integers(0, 24), rng.integers(6, 14)
        img[top:top + size, left:left + size] *= 0.2
        img += rng.normal(0, 0.15, img.shape)
        x[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return x, y.astype(np.int64)


def main() -> None:
    """Write the stand-in .npz named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x_train, y_train = make(args.train, rng)
    x_test, y_test = make(args.test, rng)
    np.savez(args.out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"wrote {args.out}: {args.train} + {args.test} images 32x32x3, 10 classes")


if __name__ == "__main__":
    main()

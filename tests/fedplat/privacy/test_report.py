"""Pictures of reconstructions: one row per batch, grey or colour, written as a PNG."""

import matplotlib.image as mpimg
import torch

from fedplat.privacy.report import _image, save_grid


def test_image_layout_for_grey_colour_and_vector_inputs():
    grey, cmap = _image(torch.zeros(1, 4, 5))
    assert grey.shape == (4, 5) and cmap == "gray"
    colour, cmap = _image(torch.zeros(3, 4, 5))
    assert colour.shape == (4, 5, 3) and cmap is None
    strip, cmap = _image(torch.zeros(7))
    assert strip.shape == (1, 7) and cmap == "gray"


def test_save_grid_writes_a_png_with_one_row_per_batch(tmp_path):
    path = tmp_path / "sub" / "grid.png"
    save_grid([("original", torch.ones(3, 1, 8, 8)), ("reconstructed", torch.zeros(2, 1, 8, 8))],
              path, "title", ["a", "b"])
    one_row = tmp_path / "one.png"
    save_grid([("original", torch.ones(3, 1, 8, 8))], one_row)
    two, one = mpimg.imread(path), mpimg.imread(one_row)
    assert two.shape[1] == one.shape[1]          # same width: three columns
    assert two.shape[0] > one.shape[0]           # taller: two rows

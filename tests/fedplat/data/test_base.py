"""Shared data types and helpers: standardisation, graph kind, availability checks."""

import numpy as np
from omegaconf import OmegaConf

from fedplat.data.base import (
    DatasetInfo,
    always_available,
    check_via_info,
    is_graph,
    standardise,
    unit_scale,
)


def test_standardise_uses_the_training_part_only():
    rng = np.random.default_rng(0)
    train, test = rng.normal(5.0, 2.0, (200, 3)), rng.normal(9.0, 1.0, (50, 3))
    a, b = standardise(train, test)
    assert a.dtype == np.float32 and abs(float(a.mean())) < 1e-5 and abs(float(a.std()) - 1) < 1e-4
    assert float(b.mean()) > 1.5  # the test part keeps its shift: no statistics of its own


def test_standardise_per_channel():
    x = np.stack([np.zeros((4, 2, 2)), np.full((4, 2, 2), 10.0)], axis=1)  # (4, 2, 2, 2)
    x[:, 0, 0, 0] = 1.0
    a, _ = standardise(x, x[:0], per_channel=True)
    assert np.allclose(a.mean(axis=(0, 2, 3)), 0, atol=1e-6)
    assert np.allclose(a[:, 1], 0)  # a constant channel stays finite (epsilon in the std)


def test_unit_scale_is_bitwise_the_float64_division_cast_to_float32():
    pixels = np.arange(256, dtype=np.uint8)
    for top in (255, 16):
        got = unit_scale(pixels, top)
        assert got.dtype == np.float32
        assert np.array_equal(got, (pixels / float(top)).astype(np.float32))


def test_standardise_in_place_gives_the_same_bits_and_reuses_a_float32_input():
    rng = np.random.default_rng(1)
    x = unit_scale(rng.integers(0, 256, (50, 3, 4, 4), dtype=np.uint8), 255)
    t = unit_scale(rng.integers(0, 256, (10, 3, 4, 4), dtype=np.uint8), 255)
    for per_channel in (False, True):
        xt, xs = x.copy(), t.copy()
        mean = xt.mean(axis=(0, 2, 3) if per_channel else None, keepdims=per_channel)
        std = xt.std(axis=(0, 2, 3) if per_channel else None, keepdims=per_channel) + 1e-8
        a, b = standardise(xt, xs, per_channel=per_channel, in_place=True)
        assert a is xt and b is xs  # no copy of the data
        assert np.array_equal(a, (x - mean) / std) and np.array_equal(b, (t - mean) / std)
        c, _ = standardise(x, t, per_channel=per_channel)
        assert np.array_equal(c, a) and c is not x  # the default leaves the input alone


def test_is_graph_and_checks():
    graph = DatasetInfo("g", (3,), 2, "graph", 10)
    assert is_graph(graph) and not is_graph(DatasetInfo("v", (3,), 2, "vector", 10))
    ds = OmegaConf.create({"name": "x"})
    assert always_available(ds) is None
    seen = []
    check_via_info(lambda d: seen.append(d.name) or graph)(ds)
    assert seen == ["x"]

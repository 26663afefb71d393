"""Shared fixtures: an isolated data cache and the optional real-data sources."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache per test session (MNIST-1D is generated once, never in the user's cache)."""
    path = tmp_path_factory.mktemp("fedplat-cache")
    old = os.environ.get("FEDPLAT_CACHE_DIR")
    os.environ["FEDPLAT_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("FEDPLAT_CACHE_DIR", None)
    else:
        os.environ["FEDPLAT_CACHE_DIR"] = old


@pytest.fixture
def fashion_mnist_dir() -> Path:
    """Debian's Fashion-MNIST (apt-get install dataset-fashion-mnist), else skip."""
    path = Path("/usr/share/datasets/fashion-mnist")
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    return path

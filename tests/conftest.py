"""Shared fixtures: an isolated data cache and the optional real-data sources."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Each test leaves logging as it found it.

    Entry points called in-process (`fedplat evaluate`'s basicConfig, Hydra's job logging)
    attach handlers to the stream that was sys.stderr then: pytest's capture of that test.
    Left behind, a later test's log records go to that closed stream, and "--- Logging error
    ---" tracebacks land in whatever that test reads from stderr.
    """
    def state() -> dict[str, tuple[logging.Logger, list[logging.Handler]]]:
        loggers = {"": logging.getLogger()}
        loggers |= {name: lg for name, lg in logging.Logger.manager.loggerDict.items()
                    if isinstance(lg, logging.Logger)}
        return {name: (lg, list(lg.handlers)) for name, lg in loggers.items()}

    before = state()
    yield
    for name, (lg, handlers) in state().items():
        kept = before[name][1] if name in before else []
        for handler in handlers:
            if handler not in kept:
                lg.removeHandler(handler)
        for handler in kept:
            if handler not in lg.handlers:
                lg.addHandler(handler)


@pytest.fixture
def fashion_mnist_dir() -> Path:
    """Debian's Fashion-MNIST (apt-get install dataset-fashion-mnist), else skip."""
    path = Path("/usr/share/datasets/fashion-mnist")
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    return path

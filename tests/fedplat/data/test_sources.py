"""Where data are found and cached; the download helper (offline, checksum)."""

from pathlib import Path

import pytest

from fedplat.data import sources
from fedplat.errors import UserError


def test_search_order_root_env_shared_extra_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("FEDPLAT_CACHE_DIR", str(tmp_path / "cache"))
    dirs = sources.search_dirs("mnist", str(tmp_path / "root"), (Path("/sys-dir"),))
    assert dirs == [tmp_path / "root", tmp_path / "env" / "mnist",
                    sources.shared_data_dir() / "mnist", Path("/sys-dir"),
                    tmp_path / "cache" / "mnist"]
    assert sources.candidate_dirs("mnist", None) == dirs[1:3]


def test_find_and_resolve_files_prefer_plain_then_gz(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f.gz").write_bytes(b"")
    assert sources.find_files([tmp_path / "a", tmp_path / "b"], ["f"]) == tmp_path / "b"
    assert sources.resolve_file(tmp_path / "b", "f") == tmp_path / "b" / "f.gz"
    (tmp_path / "b" / "f").write_bytes(b"")
    assert sources.resolve_file(tmp_path / "b", "f") == tmp_path / "b" / "f"
    assert sources.find_files([tmp_path / "a"], ["f"]) is None


def test_download_helper_offline_and_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    out = sources.download(src.as_uri(), tmp_path / "out" / "f.bin")
    assert out.read_bytes() == b"hello"
    with pytest.raises(UserError, match="has md5"):
        sources.download(src.as_uri(), tmp_path / "out" / "g.bin", md5="0" * 32)
    assert not (tmp_path / "out" / "g.bin").exists()
    with pytest.raises(UserError, match="could not download"):
        sources.download((tmp_path / "missing").as_uri(), tmp_path / "out" / "h.bin")

"""Where data are found and cached; the download helper (offline, checksum)."""

from pathlib import Path

import pytest

from fedplat.data import sources
from fedplat.errors import UserError


def test_search_order_env_shared_extra_cache_and_an_explicit_root_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("FEDPLAT_CACHE_DIR", str(tmp_path / "cache"))
    dirs = sources.search_dirs("mnist", None, (Path("/sys-dir"),))
    assert dirs == [tmp_path / "env" / "mnist", sources.shared_data_dir() / "mnist",
                    Path("/sys-dir"), tmp_path / "cache" / "mnist"]
    assert sources.candidate_dirs("mnist", None) == dirs[:2]
    # a root the user named is the only place looked at: a typo is an error, not a fallback
    root = str(tmp_path / "root")
    assert sources.search_dirs("mnist", root, (Path("/sys-dir"),)) == [tmp_path / "root"]
    assert sources.candidate_dirs("mnist", root) == [tmp_path / "root"]


def test_find_complete_refuses_a_partial_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    for n in ("x", "y"):
        (b / f"{n}.gz").write_bytes(b"")
    assert sources.find_complete([a, b], ["x", "y"], "DS") == b
    assert sources.find_complete([a], ["x", "y"], "DS") is None
    (a / "y").write_bytes(b"")  # a partial folder before a complete one stops the search
    with pytest.raises(UserError, match=rf"DS is incomplete in {a}: it lacks x \(has y\); "
                                        rf"folders searched: \[{a}, {b}\]"):
        sources.find_complete([a, b], ["x", "y"], "DS")
    assert sources.find_complete([b], ["x.gz", "y.gz"], "DS", gz=False) == b


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

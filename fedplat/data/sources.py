"""Where data files are found, cached and (only when asked and online) downloaded.

Resolution order for file-based datasets (specs/datasets.md, rule 2): `$FEDPLAT_DATA_DIR/<name>`,
then `../shared/data/<name>` beside the project checkout, then dataset-specific system locations
(e.g. Debian's Fashion-MNIST package), then a download into the cache when
`dataset.allow_download=true`. A `dataset.root` set in the config replaces that list: only it
is searched, so a mistyped root is an error, never a quiet switch to another copy. A folder
holding some of a data set's files but not all is an error too (`find_complete`). Anything
generated or processed goes to the cache directory, never next to the user's raw files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from fedplat.errors import UserError

#: The source checkout that holds this package (its parent may hold `shared/data`).
PROJECT_ROOT: Path = Path(__file__).resolve().parents[2]


def cache_dir(configured: str | None = None) -> Path:
    """Directory for generated and downloaded data (created on demand)."""
    path = Path(configured or os.environ.get("FEDPLAT_CACHE_DIR") or Path.home() / ".cache" /
                "fedplat").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_data_dir() -> Path:
    """`../shared/data` beside the project checkout (development and CI data)."""
    return PROJECT_ROOT.parent / "shared" / "data"


def candidate_dirs(name: str, root: str | None, extra: Iterable[Path] = ()) -> list[Path]:
    """Directories searched for a dataset's files, in priority order.

    An explicit `root` is the only one: the user named where the data is, and finding it
    elsewhere instead would hide a typo.
    """
    if root:
        return [Path(root).expanduser()]
    dirs: list[Path] = []
    env = os.environ.get("FEDPLAT_DATA_DIR")
    if env:
        dirs.append(Path(env).expanduser() / name)
    dirs.append(shared_data_dir() / name)
    dirs.extend(extra)
    return dirs


def search_dirs(name: str, root: str | None, extra: Iterable[Path] = ()) -> list[Path]:
    """`candidate_dirs`, then the extra system locations, then the cache's `<name>` folder.

    Where file-based datasets that may be downloaded are looked for: a download lands in the
    cache, so a second run finds it there. With an explicit `root`, only `root`.
    """
    if root:
        return candidate_dirs(name, root)
    return candidate_dirs(name, root, (*extra, cache_dir(None) / name))


def find_files(dirs: Iterable[Path], names: Iterable[str]) -> Path | None:
    """First directory holding every file in `names` (each may also exist with `.gz`)."""
    wanted = list(names)
    for d in dirs:
        if all((d / n).is_file() or (d / f"{n}.gz").is_file() for n in wanted):
            return d
    return None


def present(directory: Path, name: str) -> bool:
    """Whether `name` or `name.gz` is a file in `directory`."""
    return (directory / name).is_file() or (directory / f"{name}.gz").is_file()


def find_complete(dirs: Iterable[Path], names: Iterable[str], what: str,
                  gz: bool = True) -> Path | None:
    """First directory holding every file in `names`; a partial folder is a `UserError`.

    Folders are tried in order; the first one holding any of the files must hold them all
    (`gz`: each may also exist as `<name>.gz`), else the error names the folder, the files it
    lacks and every folder searched. None when no folder holds any of them.
    """
    wanted = list(names)
    searched = list(dirs)
    for d in searched:
        have = [n for n in wanted if (present(d, n) if gz else (d / n).is_file())]
        if len(have) == len(wanted):
            return d
        if have:
            missing = [n for n in wanted if n not in have]
            raise UserError(f"{what} is incomplete in {d}: it lacks {', '.join(missing)} "
                            f"(has {', '.join(have)}); folders searched: "
                            f"[{', '.join(str(x) for x in searched)}]; put all of "
                            f"{', '.join(wanted)} in one folder")
    return None


def resolve_file(directory: Path, name: str) -> Path:
    """`name` or `name.gz` inside `directory`, preferring the uncompressed file."""
    plain = directory / name
    return plain if plain.is_file() else directory / f"{name}.gz"


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest` atomically; verify the md5 of the downloaded bytes if given.

    Only called when the user set `dataset.allow_download=true`. A failure (offline machine,
    bad checksum) is a `UserError` that says how to provide the file by hand.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        if md5 is not None:
            got = hashlib.md5(tmp.read_bytes()).hexdigest()
            if got != md5:
                raise UserError(f"download of {url} has md5 {got}, expected {md5}; "
                                f"place the file at {dest} by hand")
        tmp.replace(dest)
    except OSError as exc:
        raise UserError(f"could not download {url} ({exc}); this machine may be offline: "
                        f"place the file at {dest} by hand or set dataset.root") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest

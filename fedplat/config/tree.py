"""Where fedplat's Hydra config tree (`conf/`) lives, and which options its groups offer.

A leaf module: the config loader, the model zoo and the CLI all need the tree's location, and
none of them may import another just for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fedplat.errors import UserError


def _find_conf_dir() -> Path:
    """Locate `conf/`.

    Packaged inside the wheel (fedplat/conf), or beside the package in a source tree or a
    Flower app bundle.
    """
    package = Path(__file__).resolve().parent
    while package.name != "fedplat" and package != package.parent:
        package = package.parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise UserError(f"fedplat's config tree (conf/config.yaml) was not found near {package}; "
                    "reinstall fedplat")


CONF_DIR: Path = _find_conf_dir()


def available(group: str, extra_dirs: Sequence[Path] = ()) -> list[str]:
    """Options of a config group (file stems under conf/<group>/, nested ones as a/b).

    `extra_dirs` are the user's own config directories (`--config-dir`), whose options count.
    """
    options: set[str] = set()
    for base in (CONF_DIR, *extra_dirs):
        root = Path(base) / group
        if root.is_dir():
            options.update(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))
    return sorted(options)

"""Where fedplat's Hydra config tree (`conf/`) lives, and which options its groups offer.

A leaf module: the config loader, the model zoo and the CLI all need the tree's location, and
none of them may import another just for that.
"""

from __future__ import annotations

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


def available(group: str) -> list[str]:
    """Options of a config group (file stems under conf/<group>/, nested ones as a/b)."""
    root = CONF_DIR / group
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))

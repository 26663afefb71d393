"""Turn the ways a user's input goes wrong into one line that names the fix.

Hydra and PyYAML report a mistyped key, a key an experiment file adds by mistake or a broken
YAML file as a multi-line report (or not at all: an unknown key in an experiment file used to
be merged silently, so `num_clientz: 3` ran with the default 10 clients). The functions here
look at what the user wrote and raise a `UserError` that names the key or the file, the value,
and the nearest valid key (difflib), so that every mistake costs one line and exit code 2.

A leaf of the config layer: it imports nothing from fedplat but `fedplat.errors`, so
`fedplat.config.compose`, the CLIs and the commands that read a run's saved files can all use it.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedplat.errors import UserError


def config_keys(cfg: Mapping[Any, Any] | DictConfig, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a config, nodes and leaves (`client`, `client.lr`, ...)."""
    items = cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else cfg.items()
    for k, v in items:
        key = prefix + str(k)
        yield key
        if isinstance(v, DictConfig | Mapping):
            yield from config_keys(v, f"{key}.")


def nearest_key(key: str, valid: Iterable[str]) -> str | None:
    """The valid key closest to a mistyped one (None when nothing is close).

    Siblings under the same parent are preferred (`client.lrr` -> `client.lr`), then any key
    of the whole config (`client.local_epoch` -> `client.local_epochs`, `lr` -> `client.lr`).
    """
    parts = key.split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
    keys = sorted(set(valid) - ancestors)
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == parent}
    match = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if match:
        return siblings[match[0]]
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    if match:
        return match[0]
    by_leaf = [k for k in keys if k.rpartition(".")[2] == leaf]
    return by_leaf[0] if len(by_leaf) == 1 else None


def unknown_key(key: str, valid: Iterable[str], where: str, value: str | None = None) -> UserError:
    """The error for a key the config does not have: the nearest valid key, or what exists."""
    keys = set(valid)
    near = nearest_key(key, keys)
    shown = f"{key}={value}" if value is not None else f"'{key}'"
    if near is not None:
        fix = f"{near}={value}" if value is not None else f"'{near}'"
        return UserError(f"{where}: unknown config key {shown}; did you mean {fix}?")
    parent = key.rpartition(".")[0]
    level = sorted(k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent)
    listing = (f"valid keys {'under ' + parent if parent else 'at the top level'}: "
               f"{', '.join(level)}" if level else f"there is no '{parent}' section")
    return UserError(f"{where}: unknown config key {shown} ({listing})")


def check_known_keys(body: Mapping[Any, Any], schema: DictConfig, prefix: str,
                     where: str) -> None:
    """Every key of `body` (a YAML mapping placed at `prefix`) must exist in `schema`.

    A value that replaces a leaf of the schema (a list, null, a number) may be a mapping of its
    own: its keys are then not checked, as nothing defines them.
    """
    valid = list(config_keys(schema))

    def walk(node: Mapping[Any, Any], path: list[str]) -> None:
        for k, v in node.items():
            here = [*path, str(k)]
            parent = OmegaConf.select(schema, ".".join(path)) if path else schema
            if not isinstance(parent, DictConfig):
                return  # the schema holds a leaf here: the user's structure replaces it
            if str(k) not in parent:
                raise unknown_key(".".join(here), valid, where)
            if isinstance(v, Mapping):
                walk(v, here)

    path = [p for p in prefix.split(".") if p]
    if path and not isinstance(OmegaConf.select(schema, prefix), DictConfig):
        raise UserError(f"{where}: its keys land under '{prefix}', which the config does not "
                        "have; put '# @package _global_' on its first line (as fedplat's "
                        "experiment files do)")
    walk(body, path)


def package_of(path: Path, group: str) -> str:
    """Where a group file's keys land: `_global_` (the root) or the group's own key."""
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("# @package"):
            package = text.removeprefix("# @package").strip()
            return "" if package == "_global_" else package
        if text and not text.startswith("#"):
            break
    return group


def group_file(group: str, option: str, dirs: Sequence[Path]) -> Path | None:
    """The file `<dir>/<group>/<option>.yaml` of the first config directory that has it."""
    for d in dirs:
        path = d / group / f"{option}.yaml"
        if path.is_file():
            return path
    return None


def experiment_files(name: str, dirs: Sequence[Path]) -> list[Path]:
    """An experiment file and the experiment files its defaults list includes, in order."""
    out: list[Path] = []
    pending = [name]
    while pending:
        path = group_file("experiment", pending.pop(0), dirs)
        if path is None or path in out:
            continue
        out.append(path)
        body = load_yaml(path)
        for entry in body.get("defaults", []) if isinstance(body, Mapping) else []:
            if isinstance(entry, str) and entry != "_self_":
                pending.append(entry.removeprefix("/experiment/"))
    return out


def load_yaml(path: Path) -> Any:
    """A YAML file's plain content; a syntax error is a one-line `UserError` naming the file."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise malformed(path, exc) from None


def malformed(path: Path, exc: yaml.YAMLError) -> UserError:
    """The error for a YAML file that does not parse: file, line, column and the problem."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return UserError(f"malformed YAML in {path}{where}: {problem}; fix the file's syntax")


def find_malformed(dirs: Sequence[Path]) -> UserError | None:
    """The first YAML file under `dirs` that does not parse, as its error (None: all parse)."""
    for d in dirs:
        for path in sorted(d.rglob("*.yaml")):
            try:
                yaml.safe_load(path.read_text())
            except yaml.YAMLError as exc:
                return malformed(path, exc)
    return None


def load_config_file(path: Path, what: str) -> DictConfig:
    """A saved config (a run's config.yaml): a missing or broken file is one line."""
    if not path.is_file():
        raise UserError(f"{path.parent} is not a fedplat run directory (no {path.name}); "
                        f"pass the directory of a {what}")
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as exc:
        raise malformed(path, exc) from None
    except (OSError, OmegaConfBaseException) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(cfg, DictConfig):
        raise UserError(f"{path} does not hold a config (a mapping of keys); it is not the "
                        f"file a {what} saved")
    return cfg


def check_output_dir(value: str | Path, what: str) -> None:
    """Refuse, before anything runs, an output directory that cannot be created or written.

    The path need not exist: its nearest existing ancestor must be a directory in which a
    directory can be created (tried for real, as permission bits do not tell for root or
    read-only file systems). The part after an interpolation (`${now:...}`) is left out.
    """
    text = str(value).split("${", 1)[0]
    path = Path(text or ".").expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what}={value}: {path} is a file, not a directory; "
                        "choose a directory path")
    base = path
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise UserError(f"{what}={value}: {base} is a file, so {path} cannot be a directory "
                        "under it; choose another path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".fedplat-write-test-", dir=base))
    except OSError as exc:
        # EPERM for root, EACCES for others: the same advice, so the same words
        reason = "no permission" if isinstance(exc, PermissionError) else exc.strerror
        raise UserError(f"{what}={value}: cannot write in {base.resolve()} ({reason}); "
                        "choose a directory you can write to") from None


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (argparse prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        """Print `<prog>: error: <message>` and a pointer to --help; exit code 2."""
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


#: One label of a DNS name (RFC 1123): letters, digits, hyphens, not at either end.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_host(host: str, what: str) -> str:
    """A host name or IP address a certificate can name; anything else is a one-line error."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".") if host else []
    if (not labels or len(host) > 253 or not all(_LABEL.fullmatch(x) for x in labels)
            or labels[-1].isdigit()):  # an all-numeric last label: a mistyped IP address
        raise UserError(f"{what} {host!r} is not a host name or IP address (letters, digits, "
                        "'-' and '.', e.g. superlink.lab or 192.168.1.10)")
    return host

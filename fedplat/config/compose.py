"""Config composition and validation: bad input stops here, with one clear line.

The config tree lives in `conf/` (Hydra config groups). `validate` checks every value the core
uses before anything expensive starts (Ray, data loading): the core groups by building their
typed `fedplat.config.settings.Settings`; strategies add their own checks through a
`validate_config(cfg)` classmethod, datasets and partitioners through their registries, all
with the checks of `fedplat.config.checks`. Errors are `UserError`s whose message names the key, the
bad value and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from fedplat.config import diagnose
from fedplat.config.checks import require
from fedplat.config.settings import Settings
from fedplat.config.tree import CONF_DIR, available
from fedplat.errors import UserError

#: Config groups a user selects with `group=option` on the command line.
GROUPS: tuple[str, ...] = (
    "scenario",
    "strategy",
    "dataset",
    "partition",
    "model",
    "client",
    "simulation",
    "experiment",
)


def _sweep_values(override: Any) -> list[str]:
    """All values of a parsed Hydra override (one for a plain override, several for a sweep).

    An interval (`interval(a,b)`, which a search sweeper such as Optuna samples from) is
    checked at its two ends, as integers when tagged `int`.
    """
    from hydra.core.override_parser.types import IntervalSweep

    value = override.value() if override.is_sweep_override() else None
    if isinstance(value, IntervalSweep):
        ends = [v for v in (value.start, value.end) if v is not None]
        return [str(int(v)) if "int" in value.tags else str(v) for v in ends]
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [str(override.get_value_element_as_str())]


def parse_overrides(overrides: Sequence[str], config_dirs: Sequence[Path] = ()
                    ) -> list[list[str]]:
    """Expand command-line overrides into the list of concrete override sets they sweep over.

    Group choices are checked here, so `strategy=fedavgg` fails with the list of valid options
    instead of Hydra's multi-line report; `config_dirs` (`--config-dir`) add their options.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    for d in config_dirs:
        if not Path(d).is_dir():
            raise UserError(f"--config-dir {d}: no such directory; pass a folder holding your "
                            "config groups (e.g. DIR/experiment/NAME.yaml)")
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise UserError(f"cannot parse the overrides: {_first_line(exc)}") from None
    choices: list[list[str]] = []
    for ov in parsed:
        key = ov.key_or_group
        values = _sweep_values(ov)
        if key in GROUPS and not ov.is_delete():
            options = available(key, config_dirs)
            for v in values:
                if v not in options:
                    raise UserError(
                        f"unknown {key} '{v}' (choose from: {', '.join(options) or 'none'})"
                    )
        elif key == "logger" and not ov.is_delete():
            _check_loggers(values, available(key, config_dirs))
        line = ov.input_line
        assert line is not None  # the parser records the text of every override it parses
        prefix = line.split("=", 1)[0]
        choices.append([f"{prefix}={v}" for v in values] if "=" in line else [prefix])
    return [list(combo) for combo in itertools.product(*choices)]


def _check_loggers(values: Sequence[str], options: Sequence[str]) -> None:
    """`logger=NAME` or `logger=[NAME,NAME]` (a list: several trackers at once) names options."""
    for value in values:
        for name in value.strip("[]").split(","):
            if name.strip() and name.strip() not in options:
                raise UserError(f"unknown logger '{name.strip()}' (choose from: "
                                f"{', '.join(options)}; several at once: logger=[A,B])")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def compose(overrides: Sequence[str] = (), config_dirs: Sequence[Path] = ()) -> DictConfig:
    """Compose the config like the `fedplat` CLI does (for `flwr run`, scripts and tests).

    `config_dirs` are the user's own config directories (`fedplat --config-dir DIR`), searched
    after fedplat's `conf/`: their experiment files are selected like fedplat's own. The keys
    of a selected experiment file must exist in the config (`diagnose.check_known_keys`).
    Must not be called inside a running Hydra job (Hydra allows one global instance).
    """
    dirs = [Path(d).expanduser().resolve() for d in config_dirs]
    parse_overrides(overrides, dirs)
    experiment = _selected(overrides, "experiment")
    # with an experiment, Hydra's own node tells which groups it picked (then it is dropped,
    # as Hydra's compose drops it)
    cfg = _compose(list(overrides), dirs, hydra_config=experiment is not None)
    if experiment is not None:
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        assert isinstance(choices, dict)
        _check_experiment(experiment, list(overrides), dirs, choices)
    return cfg


def compose_hydra(overrides: Sequence[str], config_dirs: Sequence[Path] = ()) -> DictConfig:
    """The config with its `hydra` node (sweeper, launcher), for checks before Hydra runs."""
    return _compose(list(overrides), config_dirs, hydra_config=True)


def _compose(overrides: list[str], dirs: Sequence[Path], hydra_config: bool = False
             ) -> DictConfig:
    """Hydra's composition, its errors (and PyYAML's) turned into one line."""
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    search = ([f"hydra.searchpath=[{','.join(d.as_uri() for d in dirs)}]"] if dirs else [])
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return hydra_compose(config_name="config", overrides=[*search, *overrides],
                                 return_hydra_config=hydra_config)
    except yaml.YAMLError as exc:
        raise diagnose.find_malformed([CONF_DIR, *dirs]) or UserError(
            f"malformed YAML in a config file: {_first_line(exc)}") from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise _override_error(exc, overrides, dirs) from None


def _selected(overrides: Sequence[str], group: str) -> str | None:
    """The option the overrides pick for `group` (None: none, or null)."""
    chosen = None
    for o in overrides:
        key, eq, value = o.partition("=")
        if eq and key.lstrip("+") == group:
            chosen = None if value in ("", "null") else value
    return chosen


def _override_error(exc: BaseException, overrides: list[str], dirs: Sequence[Path]
                    ) -> UserError:
    """Hydra's error as one line; a mistyped key also names the nearest valid key."""
    text = _first_line(exc)
    prefix = "Could not override '"
    if text.startswith(prefix) and "'" in text[len(prefix):]:
        key = text[len(prefix):].split("'", 1)[0]
        values = [o.partition("=")[2] for o in overrides if o.partition("=")[0] == key]
        rest = [o for o in overrides if o.partition("=")[0] != key]
        try:
            schema = _compose(rest, dirs)
        except UserError:
            return UserError(text)
        err = diagnose.unknown_key(key, diagnose.config_keys(schema), "command line",
                                   values[-1] if values else None)
        if "did you mean" in str(err):
            return err
        return UserError(f"{err}; +{key}=... adds a key the config lacks, for code that "
                         "reads it")
    if text.startswith("Could not append to config. An item is already at '"):
        key = text.split("'")[1]
        return UserError(f"+{key}=... adds a new key, but {key} exists; change it with "
                         f"{key}=VALUE (without +)")
    return UserError(text)


@functools.lru_cache(maxsize=16)
def _schema(conf_dir: str, dirs: tuple[Path, ...], overrides: tuple[str, ...]) -> DictConfig:
    """The config an experiment is checked against (read only; `conf_dir` keys the cache).

    Cached: the experiments of a sweep, or of one paper's set, share their groups.
    """
    return _compose(list(overrides), dirs)


def _check_experiment(name: str, overrides: list[str], dirs: Sequence[Path],
                      choices: dict[Any, Any]) -> None:
    """Every key an experiment file sets must exist in the config it is applied to.

    The reference is the config composed with the same overrides and the groups the experiment
    picks, but without the experiment: a key only the experiment file has (a typo such as
    `num_clientz: 3`) would otherwise be merged and never read.
    """
    picked = [f"{g}={choices[g]}" for g in GROUPS
              if g != "experiment" and choices.get(g) is not None]
    rest = [o for o in overrides if o.partition("=")[0].lstrip("+") != "experiment"]
    schema = _schema(str(CONF_DIR), tuple(dirs), (*picked, *rest))
    for path in diagnose.experiment_files(name, [CONF_DIR, *dirs]):
        body = diagnose.load_yaml(path)
        if not isinstance(body, dict):
            continue
        own = {k: v for k, v in body.items() if k != "defaults"}
        diagnose.check_known_keys(own, schema, diagnose.package_of(path, "experiment"),
                                  f"experiment file {path}")


def to_json(cfg: DictConfig) -> str:
    """Serialise a resolved config (what the server sends to clients)."""
    return json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)


def from_json(text: str) -> DictConfig:
    """Inverse of `to_json`."""
    cfg = OmegaConf.create(json.loads(text))
    assert isinstance(cfg, DictConfig)
    return cfg


def import_object(path: str, what: str) -> Any:
    """Import `package.module.Name`; a wrong path is a user error naming the key."""
    module_name, _, attr = str(path).rpartition(".")
    if not module_name:
        raise UserError(f"{what}='{path}' is not an import path like 'package.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"{what}='{path}': cannot import {module_name} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserError(f"{what}='{path}': {module_name} has no attribute {attr}") from None


def validate(cfg: DictConfig) -> Settings:
    """Check the whole config; raise `UserError` on the first problem found.

    Returns the typed core settings (`Settings`), which building checks first. The core's
    keys first, then data, model and capture, then the scenario's own keys: the module of
    `scenario.runner` (e.g. `simulations.disaster` for `simulations.disaster.run`) must define
    `validate_config(cfg)`, which checks what only that scenario reads (the centralized
    scenario checks the strategy's classes there).
    """
    from fedplat.data import validate_data_config
    from fedplat.models import validate_model_config
    from fedplat.privacy.capture import validate_capture_config
    from fedplat.recording.loggers import validate_logger_config

    settings = Settings.from_config(cfg)
    validate_capture_config(cfg)
    validate_logger_config(cfg)
    validate_data_config(cfg)
    validate_model_config(cfg)
    runner = str(require(cfg, "scenario.runner"))
    import_object(runner, "scenario.runner")
    module_name = runner.rpartition(".")[0]
    hook: Callable[[DictConfig], None] | None = getattr(
        importlib.import_module(module_name), "validate_config", None)
    if hook is None:
        raise UserError(f"scenario.runner='{runner}': the scenario module {module_name} has "
                        "no validate_config(cfg) to check its config")
    hook(cfg)
    return settings


def prepare(cfg: DictConfig, *, check_data: bool = True) -> DictConfig:
    """Resolve choices that depend on other keys (model=auto), then validate. Returns cfg.

    `check_data=False` validates everything but the data itself: no data file is read (a
    file-based dataset is described by its declared shapes and sizes), so a config can be
    checked on a machine that does not hold its data; absent or corrupt files, a graph's
    partition, and limits that depend on which copy of a dataset is found go unchecked.
    """
    from fedplat.models import resolve_auto_model
    from fedplat.transport.placement import resolve_clients_per_node

    if not isinstance(cfg.get("dataset"), DictConfig) or "name" not in cfg.dataset:
        raise UserError("the config has no dataset; pick one with dataset=<name>")
    from fedplat.data.datasets import get_spec, without_data_files

    get_spec(str(cfg.dataset.name))
    Settings.from_config(cfg)  # the core keys first: resolving clients_per_node reads them
    with contextlib.nullcontext() if check_data else without_data_files():
        resolve_auto_model(cfg)
        resolve_clients_per_node(cfg)
        validate(cfg)
    return cfg

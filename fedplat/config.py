"""Config composition and validation: bad input stops here, with one clear line.

The config tree lives in `conf/` (Hydra config groups). `validate` checks every value the core
uses before anything expensive starts (Ray, data loading); strategies add their own checks
through a `validate_config(cfg)` classmethod, datasets and partitioners through their
registries. Errors are `UserError`s whose message names the key, the bad value and the fix.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

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


def _find_conf_dir() -> Path:
    """Locate `conf/`: packaged inside the wheel, or beside the package in a source tree/FAB."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise UserError(f"fedplat's config tree (conf/config.yaml) was not found near {here}; "
                    "reinstall fedplat")


CONF_DIR: Path = _find_conf_dir()


def available(group: str) -> list[str]:
    """Options of a config group (file stems under conf/<group>/, nested ones as a/b)."""
    root = CONF_DIR / group
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def _sweep_values(override: Any) -> list[str]:
    """All values of a parsed Hydra override (one for a plain override, several for a sweep)."""
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [str(override.get_value_element_as_str())]


def parse_overrides(overrides: Sequence[str]) -> list[list[str]]:
    """Expand command-line overrides into the list of concrete override sets they sweep over.

    Group choices are checked here, so `strategy=fedavgg` fails with the list of valid options
    instead of Hydra's multi-line report.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise UserError(f"cannot parse the overrides: {_first_line(exc)}") from None
    choices: list[list[str]] = []
    for ov in parsed:
        key = ov.key_or_group
        values = _sweep_values(ov)
        if key in GROUPS and not ov.is_delete():
            options = available(key)
            for v in values:
                if v not in options:
                    raise UserError(
                        f"unknown {key} '{v}' (choose from: {', '.join(options) or 'none'})"
                    )
        prefix = ov.input_line.split("=", 1)[0]
        choices.append([f"{prefix}={v}" for v in values] if "=" in ov.input_line else [prefix])
    return [list(combo) for combo in itertools.product(*choices)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the config like the `fedplat` CLI does (for `flwr run`, scripts and tests).

    Must not be called inside a running Hydra job (Hydra allows one global instance).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parse_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(_first_line(exc)) from None


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


# --------------------------------------------------------------------------------------------
# Value checks: each raises UserError naming the key.


def _get(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    if value is None and OmegaConf.select(cfg, key, default="__absent__") == "__absent__":
        raise UserError(f"missing config key '{key}'")
    return value


def check_int(cfg: DictConfig, key: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer key within [lo, hi]."""
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{key}={value!r} must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise UserError(f"{key}={value} is out of range: must be in {rng}")
    return value


def check_float(
    cfg: DictConfig,
    key: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real key in the interval given by lo/hi and open/closed ends."""
    value = _get(cfg, key)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{key}={value!r} must be a finite number")
    bad = (
        (lo is not None and (value <= lo if lo_open else value < lo))
        or (hi is not None and (value >= hi if hi_open else value > hi))
    )
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise UserError(f"{key}={value} is out of range: must be in {rng}")
    return float(value)


def check_choice(cfg: DictConfig, key: str, choices: Iterable[str]) -> str:
    """A string key that must be one of `choices`."""
    options = list(choices)
    value = _get(cfg, key)
    if value not in options:
        raise UserError(f"{key}={value!r} is not valid (choose from: {', '.join(options)})")
    return str(value)


def check_int_list(cfg: DictConfig, key: str, lo: int | None = None, hi: int | None = None,
                   *, allow_empty: bool = True) -> list[int]:
    """A list of integers, each within [lo, hi]."""
    value = _get(cfg, key)
    if not isinstance(value, ListConfig | list):
        raise UserError(f"{key}={value!r} must be a list of integers, e.g. {key}=[1,2]")
    out = list(value)
    if not out and not allow_empty:
        raise UserError(f"{key} must not be empty")
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserError(f"{key} must hold integers, got {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise UserError(f"{key} holds {v}, outside [{lo}, {hi}]")
    return out


# --------------------------------------------------------------------------------------------


def _validate_core(cfg: DictConfig) -> None:
    check_int(cfg, "seed", lo=0, hi=2**32 - 1)
    n = check_int(cfg, "num_clients", lo=1)
    check_int(cfg, "num_rounds", lo=1)
    check_int(cfg, "eval_every", lo=1)
    check_int(cfg, "checkpoint_every", lo=0)
    resume = cfg.get("resume") or ""
    if resume:
        run_dir = Path(str(resume)).expanduser()
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"resume={resume}: no run directory there (no config.yaml)")
        if not (run_dir / "checkpoint" / "latest.json").is_file():
            raise UserError(f"resume={resume}: the run has no checkpoint; it must have been "
                            "started with checkpoint_every=N")
    val = check_float(cfg, "split.val", 0.0, 1.0, hi_open=True)
    test = check_float(cfg, "split.test", 0.0, 1.0, hi_open=True)
    assert val is not None and test is not None
    if val + test >= 1.0:
        raise UserError(f"split.val + split.test = {val + test:g} leaves no training data; "
                        "keep their sum below 1")
    if "label_ratio" in cfg.split:
        check_float(cfg, "split.label_ratio", 0.0, 1.0)
    if "server_sources" in cfg.split:
        check_int(cfg, "split.server_sources", lo=0)
    check_int_list(cfg, "faults.crash_clients", lo=0, hi=n - 1)
    check_float(cfg, "faults.crash_prob", 0.0, 1.0)
    check_float(cfg, "faults.dropout_prob", 0.0, 1.0)
    check_int_list(cfg, "faults.slow_clients", lo=0, hi=n - 1)
    check_float(cfg, "faults.slow_prob", 0.0, 1.0)
    check_float(cfg, "faults.slow_delay_s", 0.0)

    check_int(cfg, "client.local_epochs", lo=1)
    check_int(cfg, "client.batch_size", lo=1)
    check_int(cfg, "client.eval_batch_size", lo=1)
    check_choice(cfg, "client.optimizer", ["sgd", "adam"])
    check_float(cfg, "client.lr", 0.0, lo_open=True)
    check_float(cfg, "client.momentum", 0.0, 1.0, hi_open=True)
    check_float(cfg, "client.weight_decay", 0.0)

    check_choice(cfg, "simulation.backend", ["ray", "inline"])
    check_float(cfg, "simulation.num_cpus", 0.0, lo_open=True)
    check_float(cfg, "simulation.num_gpus", 0.0)
    check_float(cfg, "simulation.round_timeout", 0.0, lo_open=True, allow_none=True)
    check_float(cfg, "simulation.ray_num_cpus", 0.0, lo_open=True, allow_none=True)
    check_float(cfg, "simulation.ray_num_gpus", 0.0, allow_none=True)
    check_float(cfg, "simulation.poll_interval_s", 0.0, lo_open=True, allow_none=True)
    if not isinstance(_get(cfg, "simulation.batched"), bool | None):
        raise UserError(f"simulation.batched={_get(cfg, 'simulation.batched')}: expected "
                        "true or false")
    threads = _get(cfg, "simulation.torch_threads")
    if threads is not None:
        check_int(cfg, "simulation.torch_threads", lo=1)

    strategy = cfg.strategy
    check_float(cfg, "strategy.fraction_train", 0.0, 1.0, lo_open=True)
    check_float(cfg, "strategy.fraction_evaluate", 0.0, 1.0)  # 0: no evaluation stage
    check_int(cfg, "strategy.min_train_clients", lo=1, hi=n)
    for key in ("_target_", "client_target"):
        if key not in strategy:
            raise UserError(f"strategy '{strategy.get('name')}' has no '{key}' in its config")


def validate(cfg: DictConfig) -> None:
    """Check the whole config; raise `UserError` on the first problem found."""
    from fedplat.capture import validate_capture_config
    from fedplat.data import validate_data_config
    from fedplat.models import validate_model_config

    _validate_core(cfg)
    validate_capture_config(cfg)
    validate_data_config(cfg)
    validate_model_config(cfg)
    for key in ("_target_", "client_target"):
        cls = import_object(cfg.strategy[key], f"strategy.{key}")
        hook: Callable[[DictConfig], None] | None = getattr(cls, "validate_config", None)
        if hook is not None:
            hook(cfg)
        if key == "_target_" and float(cfg.split.get("label_ratio", 1.0)) == 0 \
                and not getattr(cls, "learns_from_unlabeled", False):
            raise UserError(f"split.label_ratio=0 leaves the clients no labels, and strategy "
                            f"'{cfg.strategy.get('name')}' learns from labels only; raise "
                            "split.label_ratio or use a semi-supervised strategy (semipfl)")
    runner = _get(cfg, "scenario.runner")
    import_object(runner, "scenario.runner")


def prepare(cfg: DictConfig, *, check_data: bool = True) -> DictConfig:
    """Resolve choices that depend on other keys (model=auto), then validate. Returns cfg.

    `check_data=False` validates everything but the data itself: no data file is read (a
    file-based dataset is described by its declared shapes and sizes), so a config can be
    checked on a machine that does not hold its data; absent or corrupt files, a graph's
    partition, and limits that depend on which copy of a dataset is found go unchecked.
    """
    from fedplat.groups import resolve_clients_per_node
    from fedplat.models import resolve_auto_model

    if not isinstance(cfg.get("dataset"), DictConfig) or "name" not in cfg.dataset:
        raise UserError("the config has no dataset; pick one with dataset=<name>")
    from fedplat.data.datasets import get_spec, without_data_files

    get_spec(str(cfg.dataset.name))
    with contextlib.nullcontext() if check_data else without_data_files():
        resolve_auto_model(cfg)
        resolve_clients_per_node(cfg)
        validate(cfg)
    return cfg

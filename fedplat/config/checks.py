"""Value checks for config keys: each returns the typed value or raises a one-line `UserError`.

A leaf module (it imports nothing from fedplat but `fedplat.errors`), so that every module that
validates its own part of the config (the core settings, capture, models, strategies,
scenarios) can use the same checks and messages without importing `fedplat.config.compose`, which
imports those modules in turn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal, overload

from omegaconf import DictConfig, ListConfig, OmegaConf

from fedplat.errors import UserError

_ABSENT = "__absent__"


def require(cfg: DictConfig, key: str) -> Any:
    """The value at dotted `key`; a key that does not exist is an error (a null value is not)."""
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    if value is None and OmegaConf.select(cfg, key, default=_ABSENT) == _ABSENT:
        raise UserError(f"missing config key '{key}'")
    return value


def check_int(cfg: DictConfig, key: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer key within [lo, hi]."""
    value = require(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{key}={value!r} must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise UserError(f"{key}={value} is out of range: must be in {rng}")
    return value


@overload
def check_float(
    cfg: DictConfig,
    key: str,
    lo: float | None = ...,
    hi: float | None = ...,
    *,
    lo_open: bool = ...,
    hi_open: bool = ...,
    allow_none: Literal[False] = ...,
) -> float: ...


@overload
def check_float(
    cfg: DictConfig,
    key: str,
    lo: float | None = ...,
    hi: float | None = ...,
    *,
    lo_open: bool = ...,
    hi_open: bool = ...,
    allow_none: bool,
) -> float | None: ...


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
    """A finite real key in the interval given by lo/hi and open/closed ends.

    With `allow_none`, null is also accepted (returned as None); the overloads let a caller
    that does not allow it use the result as a `float` without a check of its own.
    """
    value = require(cfg, key)
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


def check_bool(cfg: DictConfig, key: str) -> bool:
    """A true/false key (YAML booleans only: the string 'false' would be truthy)."""
    value = require(cfg, key)
    if not isinstance(value, bool):
        raise UserError(f"{key}={value}: expected true or false")
    return value


def check_choice(cfg: DictConfig, key: str, choices: Iterable[str]) -> str:
    """A string key that must be one of `choices`."""
    options = list(choices)
    value = require(cfg, key)
    if value not in options:
        raise UserError(f"{key}={value!r} is not valid (choose from: {', '.join(options)})")
    return str(value)


def check_int_list(cfg: DictConfig, key: str, lo: int | None = None, hi: int | None = None,
                   *, allow_empty: bool = True) -> list[int]:
    """A list of integers, each within [lo, hi]."""
    value = require(cfg, key)
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

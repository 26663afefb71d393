"""Value checks: typed results, and one line naming the key, the value and the range."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fedplat.config.checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_int_list,
    require,
)
from fedplat.errors import UserError


def _cfg(**values):
    return OmegaConf.create({"g": values})


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_require_tells_an_absent_key_from_a_null_one():
    cfg = _cfg(a=None, b=3)
    assert require(cfg, "g.a") is None
    assert require(cfg, "g.b") == 3
    assert _error(require, cfg, "g.c") == "missing config key 'g.c'"
    assert _error(require, OmegaConf.create({"g": {"m": "???"}}), "g.m") == \
        "missing config key 'g.m'"


def test_check_int_returns_the_int_and_names_the_range():
    cfg = _cfg(n=5, t=True, f=2.0, s="3")
    assert check_int(cfg, "g.n", lo=5, hi=5) == 5
    assert _error(check_int, cfg, "g.n", lo=0, hi=3) == "g.n=5 is out of range: must be in [0, 3]"
    assert _error(check_int, cfg, "g.n", lo=6) == "g.n=5 is out of range: must be in [6, inf]"
    assert _error(check_int, cfg, "g.n", hi=4) == "g.n=5 is out of range: must be in [-inf, 4]"
    assert _error(check_int, cfg, "g.t") == "g.t=True must be an integer"
    assert _error(check_int, cfg, "g.f") == "g.f=2.0 must be an integer"
    assert _error(check_int, cfg, "g.s") == "g.s='3' must be an integer"


def test_check_float_coerces_ints_and_honours_open_and_closed_ends():
    cfg = _cfg(one=1, zero=0.0, half=0.5, nan=math.nan, inf=math.inf, t=False, none=None)
    value = check_float(cfg, "g.one", 0.0, 1.0)
    assert value == 1.0 and type(value) is float
    assert check_float(cfg, "g.zero", 0.0, 1.0) == 0.0
    assert _error(check_float, cfg, "g.zero", 0.0, lo_open=True) == \
        "g.zero=0.0 is out of range: must be in (0.0, inf]"
    assert _error(check_float, cfg, "g.one", 0.0, 1.0, hi_open=True) == \
        "g.one=1 is out of range: must be in [0.0, 1.0)"
    assert _error(check_float, cfg, "g.half", hi=0.25) == \
        "g.half=0.5 is out of range: must be in [-inf, 0.25]"
    assert _error(check_float, cfg, "g.nan") == "g.nan=nan must be a finite number"
    assert _error(check_float, cfg, "g.inf", 0.0) == "g.inf=inf must be a finite number"
    assert _error(check_float, cfg, "g.t") == "g.t=False must be a finite number"
    assert _error(check_float, cfg, "g.none") == "g.none=None must be a finite number"
    assert check_float(cfg, "g.none", 0.0, allow_none=True) is None
    assert check_float(cfg, "g.half", 0.0, allow_none=True) == 0.5


def test_check_bool_rejects_strings_that_would_be_truthy():
    cfg = _cfg(yes=True, no=False, text="false", one=1)
    assert check_bool(cfg, "g.yes") is True and check_bool(cfg, "g.no") is False
    assert _error(check_bool, cfg, "g.text") == "g.text=false: expected true or false"
    assert _error(check_bool, cfg, "g.one") == "g.one=1: expected true or false"


def test_check_choice_lists_the_options():
    cfg = _cfg(opt="adam", bad="rmsprop")
    assert check_choice(cfg, "g.opt", ["sgd", "adam"]) == "adam"
    assert _error(check_choice, cfg, "g.bad", ("sgd", "adam")) == \
        "g.bad='rmsprop' is not valid (choose from: sgd, adam)"


def test_check_int_list_checks_every_element():
    cfg = _cfg(ids=[0, 3], empty=[], big=[1, 10], flag=[True], word="0,1")
    assert check_int_list(cfg, "g.ids", lo=0, hi=3) == [0, 3]
    assert check_int_list(cfg, "g.empty") == []
    assert _error(check_int_list, cfg, "g.empty", allow_empty=False) == "g.empty must not be empty"
    assert _error(check_int_list, cfg, "g.big", lo=0, hi=9) == "g.big holds 10, outside [0, 9]"
    assert _error(check_int_list, cfg, "g.flag") == "g.flag must hold integers, got True"
    assert _error(check_int_list, cfg, "g.word") == \
        "g.word='0,1' must be a list of integers, e.g. g.word=[1,2]"


def test_checks_is_a_leaf_module():
    """Importing it loads no other part of fedplat (so any module may import it: no cycles)."""
    code = ("import sys, fedplat.config.checks; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('fedplat'))))")
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(root)}).stdout.split()
    assert out == ["fedplat", "fedplat.config", "fedplat.config.checks", "fedplat.errors"]

"""Shared set-up of the threat-model tests: a tiny inline run with one captured client.

The replay tests check that `simulate(true batch, true private state)` equals the captured
upload, so an attack that drives the mismatch to zero has found a batch that explains what the
client really sent.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from fedplat.privacy.capture import load_capture
from fedplat.privacy.threat import AttackProblem
from fedplat.privacy.truth import knowledge, run_config, true_batch
from tests.helpers import run_inline

TINY = ("num_clients=3", "simulation.torch_threads=1", "model=mlp", "model.hidden=[6]",
        "capture.clients=[1]", "capture.num_samples=3")


def _setup(tmp_path: Path, *overrides: str) -> tuple[Any, ...]:
    run_inline(tmp_path, *TINY, *overrides)
    cfg = run_config(tmp_path)
    cap = load_capture(tmp_path)
    know = knowledge(cfg)
    x, y = true_batch(cfg, cap)
    return cfg, cap, know, x, F.one_hot(y, know.info.num_classes).float(), y


def _assert_exact(problem: AttackProblem, x: torch.Tensor, y1h: torch.Tensor,
                  guess: Mapping[str, torch.Tensor], rtol: float = 1e-4) -> None:
    sim = problem.simulate(x, y1h, guess)
    assert sorted(sim) == sorted(problem.observed)
    for k, obs in problem.observed.items():
        scale = float(obs.abs().max())
        assert scale > 0
        torch.testing.assert_close(sim[k].detach(), obs, rtol=rtol, atol=rtol * scale)
    assert float(problem.distance(x, y1h, guess, "cosine").detach()) < 1e-5


@pytest.fixture
def captured_run() -> Callable[..., tuple[Any, ...]]:
    """`captured_run(tmp_path, *overrides)`: (cfg, capture, knowledge, x, one-hot y, y)."""
    return _setup


@pytest.fixture
def assert_exact() -> Callable[..., None]:
    """`assert_exact(problem, x, y1h, guess)`: the replay reproduces the upload."""
    return _assert_exact

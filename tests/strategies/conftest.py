"""Fixtures shared by the strategies' tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import MNIST1D_TWO_CLASS_RUNS, MNIST1D_TWO_CLASSES, run_inline

Run = tuple[dict[str, Any], list[dict[str, Any]]]


@pytest.fixture(scope="session")
def mnist1d_two_class_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Run]:
    """`(summary, rows)` of a method's small MNIST-1D run (`MNIST1D_TWO_CLASS_RUNS`), run once
    per session, so that each method's file can compare it with the same FedAvg run."""
    done: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in done:
            done[name] = run_inline(tmp_path_factory.mktemp(name), *MNIST1D_TWO_CLASSES,
                                    *MNIST1D_TWO_CLASS_RUNS[name])
        return done[name]

    return get

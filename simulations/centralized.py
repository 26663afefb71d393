"""Centralized FL: fedplat's ServerApp and ClientApp on Flower's Simulation Engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fedplat import checkpoint
from fedplat.app import client_app, make_server_app
from fedplat.data import load_federated
from fedplat.results import RunRecorder
from fedplat.runtime import launch


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one experiment into `run_dir`; return its summary.

    The data is loaded and partitioned once here before Ray starts, so a missing or corrupt
    file, or a partition that cannot be made, fails in a second with one line instead of
    inside every worker.
    """
    load_federated(cfg)
    resumed = checkpoint.latest(run_dir) if cfg.get("resume") else None
    recorder = RunRecorder(run_dir, cfg, resume_round=resumed[0] if resumed else None)
    launch(cfg, make_server_app(cfg, recorder), client_app)
    return recorder.summary()

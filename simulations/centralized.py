"""Centralized FL: fedplat's ServerApp and ClientApp on Flower's Simulation Engine."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fedplat.app import client_app, make_server_app
from fedplat.config.compose import import_object
from fedplat.config.settings import Settings
from fedplat.data import FederatedDataset, sources
from fedplat.data.federated import central_test_of, data_key, describe_data, timed_load
from fedplat.data.shared import shared_for_workers
from fedplat.errors import UserError
from fedplat.progress import step
from fedplat.recording import checkpoint
from fedplat.recording.recorder import RunRecorder
from fedplat.runtime import launch

log = logging.getLogger("fedplat")

#: The two classes of a centralized algorithm, named in conf/strategy/<name>.yaml.
STRATEGY_KEYS: tuple[str, ...] = ("_target_", "client_target")


def validate_config(cfg: DictConfig) -> None:
    """Check what a centralized run reads (the hook `fedplat.config.compose.validate` calls).

    A centralized run needs a server class (`strategy._target_`) and a client class
    (`strategy.client_target`); both must import, and each checks its own keys through its
    `validate_config` classmethod. A strategy written for another scenario says so in
    `strategy.scenario`, so choosing it here names the scenario to use instead of a missing key.
    """
    strategy = cfg.strategy
    name = strategy.get("name")
    home = strategy.get("scenario")
    if home and home != cfg.scenario.name:
        raise UserError(f"strategy={name} runs with scenario={home}, not "
                        f"scenario={cfg.scenario.name}: add scenario={home} (or pick another "
                        "strategy)")
    for key in STRATEGY_KEYS:
        if key not in strategy:
            raise UserError(f"strategy '{name}' has no '{key}' in its config")
    for key in STRATEGY_KEYS:
        cls = import_object(strategy[key], f"strategy.{key}")
        hook: Callable[[DictConfig], None] | None = getattr(cls, "validate_config", None)
        if hook is not None:
            hook(cfg)
        if key == "_target_" and central_test_of(cfg) \
                and not getattr(cls, "has_global_model", False):
            raise UserError(f"split.central_test=true scores a global model, and strategy "
                            f"'{name}' keeps none (personalised models); set "
                            "split.central_test=false or use a FedAvg-family strategy")
        if key == "_target_" and float(cfg.split.get("label_ratio", 1.0)) == 0 \
                and not getattr(cls, "learns_from_unlabeled", False):
            raise UserError(f"split.label_ratio=0 leaves the clients no labels, and strategy "
                            f"'{cfg.strategy.get('name')}' learns from labels only; raise "
                            "split.label_ratio or use a strategy that learns from unlabeled data "
                            "(its class sets learns_from_unlabeled = True)")


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one experiment into `run_dir`; return its summary.

    The data is loaded and partitioned once here before Ray starts, so a missing or corrupt
    file, or a partition that cannot be made, fails in a second with one line instead of
    inside every worker. What was read (files and hashes, sizes, the partition's use of the
    samples) goes into run.log and summary.json's `data` entry. On a local Ray cluster the
    workers then open this copy memory-mapped instead of building their own
    (`fedplat.data.shared`).
    """
    with step(f"loading and partitioning {cfg.dataset.name} ({cfg.partition.name}, "
              f"{cfg.num_clients} clients)", "data loaded and partitioned"):
        fed, started = timed_load(cfg)  # startup_s counts the data loading
    resumed = checkpoint.latest(run_dir) if cfg.get("resume") else None
    recorder = RunRecorder(run_dir, cfg, resume_round=resumed[0] if resumed else None,
                           started=started)
    entry = describe_data(fed, sources.cache_dir(cfg.get("cache_dir") or None))
    recorder.log_data(entry)
    log.info("data  %s", entry["line"])
    sim = Settings.from_config(cfg).simulation
    share = (sim.backend == "ray" and sim.ray_address is None and sim.share_data
             and isinstance(fed, FederatedDataset))
    with (shared_for_workers(fed, data_key(cfg), sources.cache_dir(cfg.get("cache_dir") or None))
          if share else contextlib.nullcontext()):  # one copy of the arrays for all workers
        launch(cfg, make_server_app(cfg, recorder), client_app)
    return recorder.summary()

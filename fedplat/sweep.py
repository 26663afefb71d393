"""Sweeps with Hydra's own plugins: the objective, parallel jobs sized to fit, the best trial.

* Objective. `fedplat`'s Hydra task returns the run's `objective` (a dotted key of summary.json,
  default `final.accuracy`: the pooled test accuracy of the last evaluated round), which is
  what `hydra/sweeper=optuna` optimises. A loss (a key ending in `loss`) is minimised, anything
  else maximised; the Optuna sweeper's direction must agree (`check_direction`), since its
  default, `minimize`, would search for the worst accuracy.
* Parallel jobs. With `hydra/launcher=joblib`, `n_jobs` runs share the machine. joblib's loky
  workers already limit their thread pools (OpenMP, MKL: torch's intra-op threads) to
  cores // n_jobs; `size_for_jobs` gives each job's own local Ray cluster the same share of
  CPUs (`simulation.ray_num_cpus`), and caps an inline run's `simulation.torch_threads` to it.
  Settings the user gave are kept (a Ray client larger than the share is refused).
* Best trial. After a sweep (`-m`, any sweeper), `BestTrial` writes `best_config.yaml` in the
  sweep directory: the saved config of the run with the best objective, with its value, run
  directory and overrides in a comment; `fedplat -cp SWEEP_DIR -cn best_config` reruns it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from fedplat.errors import UserError

log = logging.getLogger("fedplat")

#: The summary.json key returned to Hydra when the config does not name one.
DEFAULT_OBJECTIVE = "final.accuracy"
BEST_CONFIG = "best_config.yaml"


def objective_key(cfg: Mapping[str, Any]) -> str:
    """The config's `objective` (a dotted summary.json key), checked for form."""
    key = str(cfg.get("objective") or DEFAULT_OBJECTIVE)
    if not all(part.isidentifier() for part in key.split(".")):
        raise UserError(f"objective={key} is not a dotted summary.json key such as "
                        f"{DEFAULT_OBJECTIVE}, best.accuracy or final.loss")
    return key


def objective_value(summary: Mapping[str, Any], key: str) -> float | None:
    """`summary[a][b]...` for `key` = "a.b" as a float; None when absent or not a number."""
    node: Any = summary
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float) or math.isnan(node):
        return None
    return float(node)


def direction_of(key: str) -> str:
    """`minimize` for a loss, `maximize` for anything else (accuracy, F1)."""
    return "minimize" if key.rsplit(".", 1)[-1].endswith("loss") else "maximize"


def sweeper_direction(sweeper: Mapping[str, Any]) -> str | None:
    """The sweeper's `direction` (`maximize`/`minimize`); None when absent or a list.

    The Optuna sweeper's config holds an Enum member (`Direction.minimize`), a YAML file or the
    command line a string; a list is a multi-objective study of the user's own.
    """
    value = sweeper.get("direction")
    if value is None or (hasattr(value, "__len__") and not isinstance(value, str)):
        return None
    return str(getattr(value, "name", value)).lower()


def check_direction(sweeper: Mapping[str, Any], key: str) -> None:
    """Refuse an Optuna sweep whose direction works against fedplat's objective."""
    if "optuna" not in str(sweeper.get("_target_", "")).lower():
        return
    direction = sweeper_direction(sweeper)
    want = direction_of(key)
    if direction is not None and direction != want:
        raise UserError(f"hydra/sweeper=optuna would {direction} objective={key}; add "
                        f"hydra.sweeper.direction={want}")


def check_storage(sweeper: Mapping[str, Any]) -> None:
    """Refuse an Optuna study in an SQL database where optuna 2 cannot open one.

    hydra-optuna-sweeper pins optuna<3, whose database storage fails on SQLAlchemy 2 (an
    AssertionError in its schema check, measured with optuna 2.10.1 and SQLAlchemy 2.1); the
    default in-memory study works, and the sweep directory keeps every trial's results.
    """
    storage = sweeper.get("storage")
    if "optuna" not in str(sweeper.get("_target_", "")).lower() or not storage:
        return
    import sqlalchemy

    if int(sqlalchemy.__version__.split(".")[0]) >= 2:
        raise UserError(f"hydra.sweeper.storage={storage}: optuna 2 (which hydra-optuna-sweeper "
                        f"needs) cannot use a database with SQLAlchemy {sqlalchemy.__version__}; "
                        "leave the storage unset (an in-memory study; every trial's results "
                        "stay in the sweep directory)")


def parallel_jobs(launcher: Mapping[str, Any], sweeper: Mapping[str, Any],
                  cpus: int) -> int:
    """How many jobs of a sweep run at once (1 unless the launcher is joblib).

    joblib reads a negative `n_jobs` as cores + 1 + n_jobs (-1: one per core); the Optuna
    sweeper hands the launcher batches of its own `n_jobs` trials.
    """
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n = int(launcher.get("n_jobs") or 1)
    if n < 0:
        n = max(1, cpus + 1 + n)
    if "optuna" in str(sweeper.get("_target_", "")).lower():
        n = min(n, int(sweeper.get("n_jobs") or 1))
    return max(1, n)


def size_for_jobs(cfg: DictConfig, jobs: int, cpus: int) -> str | None:
    """Fit one of `jobs` parallel runs into its share of `cpus`; the line that says how.

    Changes `cfg.simulation` in place, before the config is prepared (clients_per_node=auto
    follows `ray_num_cpus`). Returns None when nothing is shared (one job at a time).
    """
    if jobs <= 1:
        return None
    share = max(1, cpus // jobs)
    sim = cfg.simulation
    head = f"{jobs} sweep jobs at once on {cpus} CPUs: this run gets {share}"
    if sim.get("backend") == "inline":
        threads = sim.get("torch_threads")
        if threads is not None and int(threads) > share:
            with open_dict(sim):
                sim.torch_threads = share
            return f"{head} (simulation.torch_threads {threads} -> {share})"
        return f"{head} ({1 if threads is None else int(threads)} torch thread)"
    if sim.get("ray_address") or sim.get("ray_num_cpus") is not None:
        return f"{head}; the Ray resources given are kept"
    if float(sim.get("num_cpus", 1)) > share:
        raise UserError(f"simulation.num_cpus={sim.num_cpus} is more than the {share} CPUs each "
                        f"of {jobs} parallel sweep jobs gets on {cpus} CPUs; lower it or "
                        "hydra.launcher.n_jobs")
    with open_dict(sim):
        sim.ray_num_cpus = share
    return f"{head} (simulation.ray_num_cpus={share})"


def machine_cpus() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def best_run(sweep_dir: Path, key: str, direction: str
             ) -> tuple[Path, float, list[Path]] | None:
    """The run under `sweep_dir` with the best `key` (the first among ties, by job number)."""
    runs = []
    for path in sweep_dir.rglob("summary.json"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        value = objective_value(summary, key)
        if value is not None:
            runs.append((path.parent, value))
    if not runs:
        return None

    def job_number(run: Path) -> tuple[int, str]:
        head = run.relative_to(sweep_dir).parts[0].split("_", 1)[0]
        return (int(head) if head.isdigit() else 1 << 30, str(run))

    runs.sort(key=lambda r: job_number(r[0]))
    sign = -1.0 if direction == "minimize" else 1.0
    best = max(runs, key=lambda r: sign * r[1])
    return best[0], best[1], [r[0] for r in runs]


class BestTrial(Callback):
    """Hydra callback: after a sweep, `best_config.yaml` in the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Find the best run of the sweep just finished and write its config."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            key = objective_key(config)
        except UserError as exc:
            log.warning("no %s: %s", BEST_CONFIG, exc)
            return
        sweeper = config.hydra.get("sweeper") or {}
        direction = sweeper_direction(sweeper) or direction_of(key)
        found = best_run(sweep_dir, key, direction)
        if found is None:
            log.warning("no %s: no run of the sweep in %s has %s", BEST_CONFIG, sweep_dir, key)
            return
        run, value, runs = found
        saved = run / "config.yaml"
        if not saved.is_file():
            log.warning("no %s: the best run %s has no config.yaml", BEST_CONFIG, run)
            return
        overrides = run / ".hydra" / "overrides.yaml"
        given = (OmegaConf.to_container(OmegaConf.load(overrides))
                 if overrides.is_file() else [])
        body = saved.read_text()
        header = (f"# The best of {len(runs)} runs of this sweep by {key} ({direction}):"
                  f" {value!r}\n# run: {run}\n# overrides: {json.dumps(given)}\n"
                  f"# rerun: fedplat -cp {sweep_dir.resolve()} -cn "
                  f"{BEST_CONFIG.removesuffix('.yaml')}\n")
        (sweep_dir / BEST_CONFIG).write_text(header + body)
        log.info("best of %d runs by %s: %.6g (%s); its config: %s", len(runs), key, value,
                 run, sweep_dir / BEST_CONFIG)

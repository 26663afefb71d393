"""Experiment trackers (`logger=tensorboard`, `logger=[tensorboard,mlflow]`, ...).

metrics.jsonl and summary.json stay the source of truth: a tracker receives a copy of what the
recorder writes, so a researcher can browse runs in the tool they already use. Each tracker gets

* every round's scalars: the top-level numbers of the round's metrics.jsonl row, under the same
  keys, at step = round (a value metrics.jsonl writes as null, NaN or infinity, is left out);
* the per-client distribution of each per-client accuracy, loss and F1 (`per_client` of the
  row): a histogram where the tool has one (TensorBoard, W&B), its min / median / max as
  metrics `per_client/KEY/min|median|max` where it has none (MLflow);
* the resolved config, flattened to dotted keys, as hyperparameters / params / run config;
* at the end, the plots (every PNG of the run directory) and summary.json, config.yaml as
  images or artifacts, and the run's status.

The recorder (`fedplat.recording.recorder.RunRecorder`) opens the trackers, so every backend
(inline, Ray, `flwr run`) and every scenario gets them; it closes them when the run ends,
whether it completed, failed or was interrupted. A tracker that fails during a run is dropped
with one warning: the run and its files go on. The trackers are optional packages
(`pip install 'fedplat[track]'`); `validate_logger_config` checks that the selected ones can
be imported before anything starts, without importing them (MLflow alone takes seconds).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import math
import os
import shutil
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from fedplat.errors import UserError

log = logging.getLogger("fedplat")

#: Per-client metrics whose distribution over clients is logged each round.
PER_CLIENT_SUFFIXES = ("accuracy", "loss", "f1")
#: Files of the run directory given to the trackers at the end (besides every PNG).
FINAL_FILES = ("summary.json", "config.yaml")


# -- what is logged: the same for every tracker ------------------------------------------------


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The row's top-level finite numbers, under their metrics.jsonl keys (`round` is the step)."""
    return {k: float(v) for k, v in row.items()
            if k != "round" and isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v)}


def per_client(row: Mapping[str, Any]) -> dict[str, list[float]]:
    """Each per-client accuracy / loss / F1 key -> its finite values over the row's clients."""
    out: dict[str, list[float]] = {}
    for entry in (row.get("per_client") or {}).values():
        if not isinstance(entry, Mapping):
            continue
        for k, v in entry.items():
            if (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                    and k.endswith(PER_CLIENT_SUFFIXES)):
                out.setdefault(k, []).append(float(v))
    return out


def flat_config(cfg: DictConfig) -> dict[str, str | int | float | bool]:
    """The resolved config as dotted keys -> scalars (lists and empty mappings as JSON text)."""
    out: dict[str, str | int | float | bool] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping) and node:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, bool | int | float | str):
            out[prefix] = node
        else:  # None, lists, {}
            out[prefix] = json.dumps(node)

    walk("", OmegaConf.to_container(cfg, resolve=True))
    return out


def final_files(run_dir: Path) -> list[Path]:
    """summary.json, config.yaml and the run's plots (PNG), those that exist."""
    files = [run_dir / name for name in FINAL_FILES if (run_dir / name).is_file()]
    return files + sorted(run_dir.glob("*.png"))


def _inside(run_dir: Path, value: str, default: str) -> Path:
    """A tracker's directory: `default` inside the run directory for "", relative to it."""
    path = Path(value or default).expanduser()
    return path if path.is_absolute() else run_dir / path


class Tracker(ABC):
    """One experiment tracker's run, mirroring one fedplat run."""

    @abstractmethod
    def log_round(self, row: Mapping[str, Any]) -> None:
        """Log one round's row (step = its round)."""

    @abstractmethod
    def finish(self, status: str, run_dir: Path) -> None:
        """Log the final files, mark the run with fedplat's `status`, and close."""

    @abstractmethod
    def close(self) -> None:
        """Close without logging anything more (after a failure of the tracker itself)."""


# -- TensorBoard --------------------------------------------------------------------------------


class TensorBoardTracker(Tracker):
    """An event file under `logger.tensorboard.dir` (default <run>/tensorboard).

    Scalars per round, per-client histograms, the config as text and as hparams (the HParams
    dashboard's table, its metrics being the run's scalars), the plots as images at the last
    round. A resumed run purges the events after its checkpoint round (`purge_step`), so the
    rounds it repeats are not shown twice.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, options: DictConfig,
                 kept: Sequence[Mapping[str, Any]], resume_round: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = _inside(run_dir, str(options.get("dir") or ""), "tensorboard")
        self.writer = SummaryWriter(log_dir=str(self.dir),
                                    purge_step=resume_round + 1 if resume_round else None)
        self.params = flat_config(cfg)
        self.last_step = int(kept[-1]["round"]) if kept else 0
        self.tags: set[str] = set()
        for row in kept:
            self.tags.update(scalars(row))
        text = OmegaConf.to_yaml(cfg, resolve=True)
        # Markdown: indented four spaces, the YAML shows as a code block
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()),
                             global_step=0)
        self.writer.flush()

    def log_round(self, row: Mapping[str, Any]) -> None:
        """Scalars and per-client histograms of one round."""
        step = int(row["round"])
        values = scalars(row)
        for key, value in values.items():
            self.writer.add_scalar(key, value, global_step=step)
        for key, dist in per_client(row).items():
            self.writer.add_histogram(f"per_client/{key}", np.asarray(dist), global_step=step)
        self.tags.update(values)
        self.last_step = step
        self.writer.flush()

    def finish(self, status: str, run_dir: Path) -> None:
        """The hparams (with the run's scalar tags as metrics), summary text, plots as images."""
        from torch.utils.tensorboard.summary import hparams

        params = {**self.params, "fedplat.status": status}
        exp, ssi, sei = hparams(params, {tag: 0.0 for tag in sorted(self.tags)})
        # into this run's event file (SummaryWriter.add_hparams would open another run)
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)
        summary_file = run_dir / "summary.json"
        if summary_file.is_file():
            self.writer.add_text("summary", "\n".join(
                "    " + line for line in summary_file.read_text().splitlines()),
                global_step=self.last_step)
        for png in sorted(run_dir.glob("*.png")):
            from matplotlib.image import imread

            image = imread(png)  # float RGBA in [0, 1], height x width x 4
            self.writer.add_image(f"plots/{png.stem}", image[..., :3], self.last_step,
                                  dataformats="HWC")
        self.close()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


# -- MLflow -------------------------------------------------------------------------------------


#: fedplat's final status -> MLflow's run status.
MLFLOW_STATUS = {"completed": "FINISHED", "interrupted": "KILLED"}
#: MLflow's limits on one log_batch call.
MLFLOW_MAX_PARAMS = 100
MLFLOW_MAX_METRICS = 1000


class MlflowTracker(Tracker):
    """One MLflow run, through `MlflowClient` (no global active run: runs in one process coexist).

    The store is `logger.mlflow.tracking_uri`; "" is a local file store in <run>/mlruns, offline
    (nothing listens, nothing is sent). MLflow 3 keeps that store in maintenance mode and refuses
    it unless MLFLOW_ALLOW_FILE_STORE is set: it is set here (unless the user set it) for a
    `file:` store only. A resumed run becomes a new MLflow run holding the kept rounds again, so
    its history equals metrics.jsonl.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, options: DictConfig,
                 kept: Sequence[Mapping[str, Any]], resume_round: int | None) -> None:
        uri = str(options.get("tracking_uri") or "")
        if not uri:
            uri = _inside(run_dir, "", "mlruns").as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        name = str(options.get("experiment") or "fedplat")
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            try:
                experiment_id = self.client.create_experiment(name)
            except MlflowException:  # created meanwhile by another run on the same store
                again = self.client.get_experiment_by_name(name)
                if again is None:
                    raise
                experiment_id = again.experiment_id
        run_name = str(options.get("run_name") or run_dir.name)
        tags = {"fedplat.run_dir": str(run_dir)}
        if resume_round:
            tags["fedplat.resumed_after_round"] = str(resume_round)
        self.run_id: str = self.client.create_run(experiment_id, run_name=run_name,
                                                  tags=tags).info.run_id
        params = [Param(k, str(v)) for k, v in flat_config(cfg).items()]
        for i in range(0, len(params), MLFLOW_MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + MLFLOW_MAX_PARAMS])
        for row in kept:
            self.log_round(row)

    def log_round(self, row: Mapping[str, Any]) -> None:
        """The row's scalars and the per-client min / median / max, at step = round."""
        from mlflow.entities import Metric

        step, now = int(row["round"]), int(time.time() * 1000)
        values = scalars(row)
        for key, dist in per_client(row).items():
            values[f"per_client/{key}/min"] = min(dist)
            values[f"per_client/{key}/median"] = float(np.median(dist))
            values[f"per_client/{key}/max"] = max(dist)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), MLFLOW_MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + MLFLOW_MAX_METRICS])

    def finish(self, status: str, run_dir: Path) -> None:
        """summary.json, config.yaml and the plots as artifacts; the run's status."""
        for path in final_files(run_dir):
            self.client.log_artifact(self.run_id, str(path),
                                     "plots" if path.suffix == ".png" else None)
        self.client.set_tag(self.run_id, "fedplat.status", status)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))

    def close(self) -> None:
        """Mark the MLflow run failed (the tracker stopped before the run ended)."""
        self.client.set_terminated(self.run_id, "FAILED")


# -- Weights & Biases ---------------------------------------------------------------------------


class WandbTracker(Tracker):
    """A W&B run, offline by default: written to <run>/wandb/offline-run-*/, nothing is sent.

    `wandb sync <run>/wandb/offline-run-*` uploads it later; `wandb leet inspect` reads it. The
    config is the run config (flattened), the per-client distributions are W&B histograms, the
    plots images (at the last round) and summary.json, config.yaml run files. No console
    capture and no system metrics: the run's own log and summary.json already hold them. A
    resumed run becomes a new W&B run holding the kept rounds again.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, options: DictConfig,
                 kept: Sequence[Mapping[str, Any]], resume_round: int | None) -> None:
        import wandb

        self.wandb = wandb
        root = _inside(run_dir, str(options.get("dir") or ""), ".")
        root.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(console="off", x_disable_stats=True, silent=True,
                                  x_save_requirements=False, disable_git=True,
                                  reinit="create_new")
        self.run = wandb.init(
            mode=str(options.get("mode") or "offline"),  # type: ignore[arg-type]
            dir=str(root), project=str(options.get("project") or "fedplat"),
            name=str(options.get("run_name") or run_dir.name), config=flat_config(cfg),
            tags=[f"resumed_after_round_{resume_round}"] if resume_round else None,
            settings=settings)
        self.last_step = 0
        for row in kept:
            self.log_round(row)

    def log_round(self, row: Mapping[str, Any]) -> None:
        """The row's scalars and per-client histograms at step = round."""
        step = int(row["round"])
        data: dict[str, Any] = dict(scalars(row))
        for key, dist in per_client(row).items():
            data[f"per_client/{key}"] = self.wandb.Histogram(dist)
        self.run.log(data, step=step)
        self.last_step = step

    def finish(self, status: str, run_dir: Path) -> None:
        """Plots as images, summary.json and config.yaml as run files; exit code 0 if completed."""
        images = {f"plots/{p.stem}": self.wandb.Image(str(p))
                  for p in sorted(run_dir.glob("*.png"))}
        if images:
            self.run.log(images, step=self.last_step)
        for name in FINAL_FILES:  # copied into the W&B run's files (a link would warn)
            if (run_dir / name).is_file():
                copy = Path(self.run.dir) / name
                shutil.copyfile(run_dir / name, copy)
                self.run.save(str(copy), base_path=self.run.dir, policy="now")
        self.run.summary["fedplat_status"] = status
        self.run.finish(exit_code=0 if status == "completed" else 1)

    def close(self) -> None:
        """End the W&B run as failed."""
        self.run.finish(exit_code=1)


# -- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A tracker fedplat can log to: what must import, what to install, how to open it."""

    module: str
    pip: str
    open: Callable[[DictConfig, Path, DictConfig, Sequence[Mapping[str, Any]], int | None],
                   Tracker]


#: `logger=NAME` -> its backend (conf/logger/NAME.yaml puts its options under logger.NAME).
BACKENDS: dict[str, Backend] = {
    "tensorboard": Backend("tensorboard", "tensorboard", TensorBoardTracker),
    "mlflow": Backend("mlflow", "mlflow-skinny", MlflowTracker),
    "wandb": Backend("wandb", "wandb", WandbTracker),
}


def selected(cfg: DictConfig) -> dict[str, DictConfig]:
    """The loggers the config selects (`logger.NAME`), name -> options, in config order."""
    node = cfg.get("logger")
    if node is None:
        return {}
    if not isinstance(node, DictConfig):
        raise UserError(f"logger={node!r} is not a choice of the logger group; pick trackers "
                        f"with logger=NAME or logger=[NAME,NAME] ({', '.join(BACKENDS)})")
    out: dict[str, DictConfig] = {}
    for key, options in node.items():
        name = str(key)
        if options is None:
            options = OmegaConf.create({})
        if not isinstance(options, DictConfig):
            raise UserError(f"logger.{name} must hold the {name} logger's options (a mapping), "
                            f"not {options!r}; select it with logger={name}")
        out[name] = options
    return out


def validate_logger_config(cfg: DictConfig) -> None:
    """Every selected logger is known and its package importable; raise `UserError` if not."""
    for name, options in selected(cfg).items():
        backend = BACKENDS.get(name)
        if backend is None:
            raise UserError(f"logger.{name}: unknown logger (choose from: "
                            f"{', '.join(BACKENDS)})")
        for option, value in options.items():
            if value is not None and not isinstance(value, str):
                raise UserError(f"logger.{name}.{option!s}={value!r} must be a string")
        if importlib.util.find_spec(backend.module) is None:
            raise UserError(f"logger={name} needs the {backend.pip} package, which is not "
                            f"installed: pip install {backend.pip} (or pip install "
                            "'fedplat[track]')")


class Trackers:
    """The run's open trackers: each round's row and the end of the run go to all of them.

    A tracker that raises is closed and dropped with one warning (the run's own files are the
    record; a tracker must not stop the run). Closed at interpreter exit if the run never
    finished (a launch that failed before the server loop).
    """

    def __init__(self, trackers: Mapping[str, Tracker]) -> None:
        self.open = dict(trackers)
        if self.open:
            atexit.register(_close_at_exit, weakref.ref(self))

    def _drop(self, name: str, what: str, exc: Exception) -> None:
        log.warning("logger=%s failed to %s and is switched off (the run's own files are "
                    "complete): %s: %s", name, what, type(exc).__name__, exc)
        tracker = self.open.pop(name)
        with contextlib.suppress(Exception):  # already failing: its first error was reported
            tracker.close()

    def log_round(self, row: Mapping[str, Any]) -> None:
        """One round's row to every tracker."""
        for name, tracker in list(self.open.items()):
            try:
                tracker.log_round(row)
            except Exception as exc:
                self._drop(name, f"log round {row.get('round')}", exc)

    def finish(self, status: str, run_dir: Path) -> None:
        """Final files and status to every tracker, which closes it."""
        for name, tracker in list(self.open.items()):
            try:
                tracker.finish(status, run_dir)
                self.open.pop(name, None)
            except Exception as exc:
                self._drop(name, "finish", exc)

    def close(self) -> None:
        """Close every tracker still open, logging nothing more."""
        for name in list(self.open):
            tracker = self.open.pop(name)
            try:
                tracker.close()
            except Exception as exc:
                log.warning("logger=%s failed to close: %s", name, exc)


def _close_at_exit(ref: weakref.ref[Trackers]) -> None:
    trackers = ref()
    if trackers is not None:
        trackers.close()


def open_trackers(cfg: DictConfig, run_dir: Path, kept: Sequence[Mapping[str, Any]] = (),
                  resume_round: int | None = None) -> Trackers:
    """Open the trackers the config selects for the run in `run_dir`.

    `kept` are the rows a resumed run keeps (up to `resume_round`). A tracker that cannot
    open is a `UserError` naming it (the trackers opened before it are closed).
    """
    validate_logger_config(cfg)
    opened: dict[str, Tracker] = {}
    for name, options in selected(cfg).items():
        try:
            opened[name] = BACKENDS[name].open(cfg, run_dir, options, kept, resume_round)
        except Exception as exc:
            Trackers(opened).close()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"logger={name} could not start: {first}") from None
    return Trackers(opened)

"""The run directory: resolved config, metrics.jsonl, summary.json and plots.

`metrics.jsonl` gets one line per round as soon as the round ends (flushed), and summary.json is
rewritten after every round, so a run that crashes or is killed keeps everything up to its last
round. Plots are drawn when the run ends, successful or not.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedplat.config.settings import Settings
from fedplat.errors import UserError
from fedplat.recording.loggers import Trackers, open_trackers

log = logging.getLogger("fedplat")

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
CLIENTS_FILE = "clients.json"


def clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become null, mapping keys become strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (a reader never sees a half-written file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(clean(obj), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl (skipping a torn last line)."""
    rows: list[dict[str, Any]] = []
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _pick(rows: Sequence[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    return [r for r in rows if isinstance(r.get(key), int | float)]


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Final / best / best_test entries from the per-round rows.

    * final: the last evaluated round.
    * best: the round of highest mean validation accuracy when clients have validation data
      (test accuracy reported at that round, the honest choice), else of highest test accuracy.
    * best_test: the highest test accuracy over rounds (optimistic; some papers report it).
    * best_mean: the round of highest *unweighted mean over clients* of validation accuracy,
      with the mean test accuracy over clients at that round (the "local accuracy @ best val"
      of personalised-FL papers such as FED-PUB); present when clients report validation data.
    """
    out: dict[str, Any] = {}
    evaluated = _pick(rows, "test_accuracy")
    if not evaluated:
        return out

    def entry(r: Mapping[str, Any]) -> dict[str, Any]:
        return {"round": r["round"], "accuracy": r.get("test_accuracy"),
                "accuracy_mean": r.get("test_accuracy_mean"), "loss": r.get("test_loss"),
                "val_accuracy": r.get("val_accuracy")}

    out["final"] = entry(evaluated[-1])
    with_val = _pick(evaluated, "val_accuracy")
    if with_val:
        best = max(with_val, key=lambda r: r["val_accuracy"])  # earliest among ties
        out["best"] = {**entry(best), "criterion": "val_accuracy"}
    else:
        best = max(evaluated, key=lambda r: r["test_accuracy"])
        out["best"] = {**entry(best), "criterion": "test_accuracy"}
    top = max(evaluated, key=lambda r: r["test_accuracy"])
    out["best_test"] = {"round": top["round"], "accuracy": top["test_accuracy"]}
    with_mean_val = _pick(evaluated, "val_accuracy_mean")
    if with_mean_val:
        bm = max(with_mean_val, key=lambda r: r["val_accuracy_mean"])  # earliest among ties
        out["best_mean"] = {**entry(bm), "val_accuracy_mean": bm["val_accuracy_mean"],
                            "criterion": "val_accuracy_mean"}
    f1 = summarise_f1(evaluated)
    if f1:
        out["f1"] = f1
    return out


def summarise_f1(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Weighted F1 (each client's whole test split), mean over clients: final and best round.

    * final: the last evaluated round.
    * best: the round with the highest client-mean F1 (chosen on test data: optimistic).
    * best_per_client: each client's highest F1 over the rounds, averaged (more optimistic
      still; the headline metric of SemiPFL's released code).
    """
    evaluated = _pick(rows, "test_f1_mean")
    if not evaluated:
        return {}

    def entry(r: Mapping[str, Any]) -> dict[str, Any]:
        return {"round": r["round"], "f1_mean": r["test_f1_mean"], "f1_pooled": r.get("test_f1")}

    best = max(evaluated, key=lambda r: r["test_f1_mean"])
    per_client: dict[str, float] = {}
    for r in evaluated:
        for cid, m in (r.get("per_client") or {}).items():
            v = m.get("test_f1") if isinstance(m, Mapping) else None
            if isinstance(v, int | float) and v == v:
                per_client[cid] = max(per_client.get(cid, -math.inf), float(v))
    out: dict[str, Any] = {"metric": "weighted F1 over each client's whole test split, "
                                     "mean over clients",
                           "final": entry(evaluated[-1]), "best": entry(best)}
    if per_client:
        out["best_per_client"] = {"f1_mean": sum(per_client.values()) / len(per_client),
                                  "clients": len(per_client)}
    return out


def fault_counts(rows: Sequence[Mapping[str, Any]], num_clients: int) -> dict[str, int]:
    """summary.json's `faults`: what went wrong over the run, counted per client and round.

    `failures` (errors and rejected replies), `rejected` (replies refused by the strategy's
    check, also in `failures`), `late` (over `simulation.round_timeout`) and `dropped` (offline,
    not contacted), each summed over the train and evaluate stages of every round. A scenario
    that loses workers and nodes (the disaster scenario's rows: `lost_workers`, and
    `dropped_total`, its nodes gone by the round) adds `workers_lost` and `nodes_lost` (of
    `nodes`).
    """
    out: dict[str, int] = {}
    for key in ("failures", "rejected", "late", "dropped"):
        out[key] = sum(int(r.get(f"{key}_train", 0) or 0) + int(r.get(f"{key}_evaluate", 0) or 0)
                       for r in rows)
    if any("lost_workers" in r for r in rows):
        out["workers_lost"] = sum(int(r.get("lost_workers", 0) or 0) for r in rows)
    totals = [int(r["dropped_total"]) for r in rows if isinstance(r.get("dropped_total"), int)]
    if totals:
        out["nodes_lost"] = totals[-1]
        out["nodes"] = num_clients
    return out


def faults_line(counts: Mapping[str, Any] | None, failures: int = 0) -> str:
    """The console's faults line, from summary.json's `faults`.

    `2 client failures (1 rejected), 3 late, 4 dropped`, plus `; 1 worker lost, 15 of 20 nodes
    lost` for a scenario that loses them; `failures` alone for a summary without `faults`.
    """
    if not counts:
        return f"{failures} client failures"
    line = (f"{counts.get('failures', 0)} client failures ({counts.get('rejected', 0)} "
            f"rejected), {counts.get('late', 0)} late, {counts.get('dropped', 0)} dropped")
    if "workers_lost" in counts or "nodes_lost" in counts:
        w = int(counts.get("workers_lost", 0))
        line += f"; {w} worker{'s' if w != 1 else ''} lost"
        if "nodes_lost" in counts:
            line += f", {counts['nodes_lost']} of {counts.get('nodes', '?')} nodes lost"
    return line


def _number(row: Mapping[str, Any], key: str) -> bool:
    return isinstance(row.get(key), int | float)


class RunningSummary:
    """`summarise` of the rows seen so far, kept up to date one row at a time.

    `summarise(rows)` rescans every row (and every row's `per_client` entries for F1) each time
    it is called; called after every round, that costs rounds^2 x clients over a run. This keeps
    what the scan would find (the last evaluated row, the first row of highest value for each
    criterion, each client's best F1) and is updated in proportion to one round's clients;
    `summary()` returns exactly what `summarise` returns on the same rows (tested), ties and
    NaN included: a row replaces the current best only when its value compares greater, as in
    `max`, which keeps the first of equal values.
    """

    def __init__(self) -> None:
        self.final: Mapping[str, Any] | None = None
        self.best_val: Mapping[str, Any] | None = None
        self.best_test: Mapping[str, Any] | None = None
        self.best_mean: Mapping[str, Any] | None = None
        self.f1_final: Mapping[str, Any] | None = None
        self.f1_best: Mapping[str, Any] | None = None
        self.f1_per_client: dict[str, float] = {}

    @staticmethod
    def _better(best: Mapping[str, Any] | None, row: Mapping[str, Any],
                key: str) -> Mapping[str, Any]:
        return row if best is None or row[key] > best[key] else best

    def add(self, row: Mapping[str, Any]) -> None:
        """Take one more round's row into account."""
        if not _number(row, "test_accuracy"):
            return
        self.final = row
        if _number(row, "val_accuracy"):
            self.best_val = self._better(self.best_val, row, "val_accuracy")
        self.best_test = self._better(self.best_test, row, "test_accuracy")
        if _number(row, "val_accuracy_mean"):
            self.best_mean = self._better(self.best_mean, row, "val_accuracy_mean")
        if not _number(row, "test_f1_mean"):
            return
        self.f1_final = row
        self.f1_best = self._better(self.f1_best, row, "test_f1_mean")
        per_client = self.f1_per_client
        for cid, m in (row.get("per_client") or {}).items():
            v = m.get("test_f1") if isinstance(m, Mapping) else None
            if isinstance(v, int | float) and v == v:
                per_client[cid] = max(per_client.get(cid, -math.inf), float(v))

    def summary(self) -> dict[str, Any]:
        """What `summarise` returns for the rows added so far."""
        out: dict[str, Any] = {}
        if self.final is None or self.best_test is None:
            return out

        def entry(r: Mapping[str, Any]) -> dict[str, Any]:
            return {"round": r["round"], "accuracy": r.get("test_accuracy"),
                    "accuracy_mean": r.get("test_accuracy_mean"), "loss": r.get("test_loss"),
                    "val_accuracy": r.get("val_accuracy")}

        out["final"] = entry(self.final)
        if self.best_val is not None:
            out["best"] = {**entry(self.best_val), "criterion": "val_accuracy"}
        else:
            out["best"] = {**entry(self.best_test), "criterion": "test_accuracy"}
        top = self.best_test
        out["best_test"] = {"round": top["round"], "accuracy": top["test_accuracy"]}
        if self.best_mean is not None:
            bm = self.best_mean
            out["best_mean"] = {**entry(bm), "val_accuracy_mean": bm["val_accuracy_mean"],
                                "criterion": "val_accuracy_mean"}
        if self.f1_final is not None and self.f1_best is not None:
            def f1_entry(r: Mapping[str, Any]) -> dict[str, Any]:
                return {"round": r["round"], "f1_mean": r["test_f1_mean"],
                        "f1_pooled": r.get("test_f1")}

            f1: dict[str, Any] = {"metric": "weighted F1 over each client's whole test split, "
                                            "mean over clients",
                                  "final": f1_entry(self.f1_final),
                                  "best": f1_entry(self.f1_best)}
            per_client = self.f1_per_client
            if per_client:
                f1["best_per_client"] = {"f1_mean": sum(per_client.values()) / len(per_client),
                                         "clients": len(per_client)}
            out["f1"] = f1
        return out


#: Row keys that measure time (or memory): they differ between runs that are otherwise identical.
TIMING_KEYS = ("wall_time_s", "round_time_s", "peak_mem_bytes")
TIMING_PREFIXES = ("exchange_s_", "pack_s_", "node_compute_s_")


def without_timing(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows minus their timing keys, for comparing the numbers of two runs."""
    return [{k: v for k, v in r.items()
             if k not in TIMING_KEYS and not k.startswith(TIMING_PREFIXES)} for r in rows]


class RunRecorder:
    """Writes one run's results into its directory as the run goes."""

    def __init__(self, run_dir: Path, cfg: DictConfig, *, resume_round: int | None = None,
                 started: float | None = None) -> None:
        """Start a run directory; with `resume_round`, keep its rows up to that round.

        `started` (a `time.perf_counter()` value, default now) is when the run began: a runner
        that loads its data before it can make the recorder passes the time loading began, so
        `startup_s` and `wall_time_s` count the data loading too.
        """
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.settings = Settings.from_config(cfg)
        self.rows: list[dict[str, Any]] = []
        if resume_round is not None:
            self.rows = [r for r in read_rows(self.run_dir) if r["round"] <= resume_round]
        self.status = "running"
        self.reason: str | None = None
        self.extra: dict[str, Any] = {}
        self.t_start = time.perf_counter() if started is None else started
        #: A resumed run's wall time continues from its checkpoint round's.
        last_wall = self.rows[-1].get("wall_time_s") if self.rows else None
        self.wall_offset_s = float(last_wall) if isinstance(last_wall, int | float) else 0.0
        self.closed = False
        self._lock = threading.RLock()  # the CLI's thread may close a run the server logs
        _OPEN.add(self)
        self.t_first_round: float | None = None
        (self.run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True))
        self._metrics = (self.run_dir / METRICS_FILE).open("w", encoding="utf-8")
        for row in self.rows:  # a resumed run rewrites the rows it keeps
            self._metrics.write(json.dumps(clean(row), sort_keys=True) + "\n")
        self._metrics.flush()
        self.label_counts: list[list[int]] = []
        self.data: dict[str, Any] | None = None
        self.devices = DeviceTally(cfg)
        self.running = RunningSummary()
        for row in self.rows:
            self.devices.add(row)
            self.running.add(row)
        self._write_summary()
        try:  # last: a tracker that cannot start leaves a closed, failed run directory
            self.trackers = open_trackers(cfg, self.run_dir, self.rows, resume_round)
        except UserError as exc:
            self.trackers = Trackers({})
            self.finish("failed", str(exc), draw=False)
            raise

    @property
    def wall_time_s(self) -> float:
        """Seconds since the recorder was created (plus, resumed, the checkpoint's wall time)."""
        return self.wall_offset_s + time.perf_counter() - self.t_start

    def round_started(self) -> None:
        """Mark the start of round 1 (everything before it counts as start-up)."""
        if self.t_first_round is None:
            self.t_first_round = time.perf_counter()

    def log_data(self, entry: Mapping[str, Any]) -> None:
        """Record what data the run reads (`fedplat.data.federated.describe_data`).

        It becomes summary.json's `data` entry at once, and clients.json's `data_usage` (how
        many samples of each part the partition assigned) when the clients are logged.
        """
        self.data = dict(entry)
        self._write_summary()

    def log_clients(self, label_counts: list[list[int]], info: Mapping[str, Any]) -> None:
        """Save the per-client label histogram (the partition) and client sizes."""
        self.label_counts = label_counts
        usage = {"data_usage": self.data["partition"]} \
            if self.data and "partition" in self.data else {}
        write_json(self.run_dir / CLIENTS_FILE, {"label_counts": label_counts, **info, **usage})

    def log_round(self, row: dict[str, Any]) -> None:
        """Append one round's metrics and refresh the summary (nothing once closed)."""
        with self._lock:
            if self.closed:  # interrupted from another thread: the summary says so already
                return
            self.rows.append(row)
            self.devices.add(row)
            self.running.add(row)
            self._metrics.write(json.dumps(clean(row), sort_keys=True) + "\n")
            self._metrics.flush()
            self._write_summary()
            self.trackers.log_round(row)

    def summary(self) -> dict[str, Any]:
        """The current summary.json content."""
        cfg = self.cfg
        startup = (self.t_first_round - self.t_start) if self.t_first_round else None
        round_times = [r["round_time_s"] for r in self.rows if "round_time_s" in r]
        return {
            "status": self.status,
            "reason": self.reason,
            "strategy": cfg.strategy.name,
            "dataset": cfg.dataset.name,
            "partition": cfg.partition.name,
            "model": cfg.model.name,
            "seed": self.settings.seed,
            "num_clients": self.settings.num_clients,
            "num_rounds": self.settings.num_rounds,
            "rounds_completed": len(self.rows),
            "wall_time_s": self.wall_time_s,
            "startup_s": startup,
            "mean_round_time_s": sum(round_times) / len(round_times) if round_times else None,
            "failures": sum(int(r.get("failures_train", 0)) + int(r.get("failures_evaluate", 0))
                            for r in self.rows),
            "faults": fault_counts(self.rows, self.settings.num_clients),
            **self.running.summary(),
            **({"data": self.data} if self.data is not None else {}),
            "devices": self.devices.summary(),
            **self.extra,
        }

    def _write_summary(self) -> None:
        write_json(self.run_dir / SUMMARY_FILE, self.summary())

    def finish(self, status: str, reason: str | None = None,
               extra: Mapping[str, Any] | None = None, *, draw: bool = True) -> dict[str, Any]:
        """Close the run: final summary and (`draw`) plots (also after a failure).

        Once closed (by an interruption), later calls return the summary and change nothing.
        """
        with self._lock:
            if self.closed:
                return self.summary()
            self.closed = True
            _OPEN.discard(self)
            self.status, self.reason = status, reason
            self.extra.update(extra or {})
            self._metrics.close()
            self._write_summary()
        if not draw:
            self.trackers.finish(status, self.run_dir)
            return self.summary()
        try:  # a machine without matplotlib (a bare GPU box) keeps its results all the same
            from fedplat.recording import plots

            plots.plot_run(self.rows, self.run_dir)
            if self.label_counts:
                plots.plot_label_distribution(self.label_counts,
                                              self.run_dir / "label_distribution.png")
        except Exception as exc:  # a plotting problem must not lose the results
            log.warning("could not draw plots: %s", exc)
        self.trackers.finish(status, self.run_dir)  # after the plots, which they receive
        return self.summary()


    def interrupt(self, signal_name: str, *, draw: bool = True) -> dict[str, Any]:
        """Close the run as stopped by a signal (SIGTERM, SIGINT: Ctrl-C); return the summary.

        summary.json gets `"status": "interrupted"` and `interrupted`: the signal, the last
        round completed (logged) and the round of the newest complete checkpoint (what
        `resume=` continues from; None without one).
        """
        from fedplat.recording.rundir import latest_round

        last = max((int(r["round"]) for r in self.rows), default=0)
        saved = latest_round(self.run_dir)
        where = f"after round {last}" if last else "before round 1 ended"
        resumable = f"; resume={self.run_dir} continues after round {saved}" \
            if saved is not None else "; no checkpoint to resume from"
        if self.closed:
            return self.summary()
        INTERRUPTED.append(self)
        return self.finish("interrupted", f"stopped by {signal_name} {where}{resumable}",
                           {"interrupted": {"signal": signal_name, "last_round": last,
                                            "checkpoint_round": saved}}, draw=draw)


#: Recorders of runs not yet finished (the CLI closes them on a signal caught in its thread).
_OPEN: weakref.WeakSet[RunRecorder] = weakref.WeakSet()
#: Recorders closed by `interrupt` in this process, for the CLI's last line.
INTERRUPTED: list[RunRecorder] = []


def forget_earlier_runs() -> None:
    """Start a CLI invocation with no runs of earlier ones in this process.

    Why: `interrupt_open_runs` closes and names every run it knows. A process that calls the
    CLI more than once (a notebook, a test session, a sweep driver) must not let a signal
    caught by the latest call close, or name in its last line, the runs of an earlier call.
    """
    _OPEN.clear()
    INTERRUPTED.clear()


def interrupt_open_runs(signal_name: str, *, draw: bool = True) -> list[RunRecorder]:
    """Close every unfinished run as interrupted; return (and forget) the interrupted runs.

    A run whose server loop ran in the CLI's thread was closed on the way out already; one
    whose loop runs in another thread (the Ray backend's server thread) is closed here
    (`draw=False`: without plots, the process is about to end).
    """
    for recorder in list(_OPEN):
        recorder.interrupt(signal_name, draw=draw)
    runs = list(INTERRUPTED)
    INTERRUPTED.clear()
    return runs


class DeviceTally:
    """Where a run's clients trained, gathered round by round from the rows' device facts.

    Each row names the device of every client that replied (`per_client[cid].device`) and, on
    CUDA, the largest peak memory a client's handler allocated (`peak_mem_bytes`); the tally
    keeps the distinct clients per device and the largest peak, at a cost per round in
    proportion to the clients taking part.
    """

    def __init__(self, cfg: DictConfig) -> None:
        from fedplat.transport.placement import ray_workers

        sim = cfg.simulation
        self.backend = str(sim.backend)
        self.num_cpus = float(sim.num_cpus)
        self.num_gpus = float(sim.num_gpus)
        self.at_once = ray_workers(cfg) if self.backend == "ray" else 1
        self.clients: dict[str, set[str]] = {}
        self.peak_mem_bytes: int | None = None
        self.gpu_name: str | None = None

    def add(self, row: Mapping[str, Any]) -> None:
        """Count the devices of one round's row."""
        for cid, entry in (row.get("per_client") or {}).items():
            if isinstance(entry, Mapping) and isinstance(entry.get("device"), str):
                self.clients.setdefault(entry["device"], set()).add(str(cid))
        peak = row.get("peak_mem_bytes")
        if isinstance(peak, int):
            self.peak_mem_bytes = max(self.peak_mem_bytes or 0, peak)
        if isinstance(row.get("gpu_name"), str):
            self.gpu_name = row["gpu_name"]

    def summary(self) -> dict[str, Any]:
        """summary.json's `devices`: clients per device, shares, how many ran at once, peak."""
        return {"clients": {d: len(c) for d, c in sorted(self.clients.items())},
                "backend": self.backend, "num_cpus_each": self.num_cpus,
                "num_gpus_each": self.num_gpus, "at_once": self.at_once,
                "peak_mem_bytes": self.peak_mem_bytes, "gpu_name": self.gpu_name}


def devices_line(devices: Mapping[str, Any] | None) -> str | None:
    """`on cuda:0 (0.25 GPU each, 4 at once), peak 1.2 GiB` from summary.json's `devices`.

    None when no client replied (nothing to say). Several devices are listed with their client
    counts (`on cuda:0 (6 clients), cpu (2 clients) (...)`).
    """
    if not devices or not devices.get("clients"):
        return None
    used: Mapping[str, int] = devices["clients"]
    on_gpu = any(d.startswith("cuda") for d in used)
    names = ", ".join(f"{d} ({n} client{'s' if n != 1 else ''})" for d, n in used.items()) \
        if len(used) > 1 else next(iter(used))
    share = (f"{devices['num_gpus_each']:g} GPU each" if on_gpu
             else f"{devices['num_cpus_each']:g} CPU each")
    line = f"on {names} ({share}, {devices['at_once']} at once)"
    if on_gpu and devices.get("gpu_name"):
        line = f"on {names} [{devices['gpu_name']}] ({share}, {devices['at_once']} at once)"
    peak = devices.get("peak_mem_bytes")
    if isinstance(peak, int):
        line += f", peak {peak / 2**30:.1f} GiB" if peak >= 2**30 else \
            f", peak {peak / 2**20:.1f} MiB"
    return line

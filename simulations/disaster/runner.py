"""`fedplat scenario=disaster`: decentralized P2P learning on a disrupted, time-varying network.

Order of work: the initial graph, the whole disruption timeline (so relay-victims are known
before round 1), the data placement (loaded once, before any worker starts), then the rounds.
Each round the driver works out who is present and who neighbours whom in G(t), sends every
shard a small plan, and turns the shards' reports into one metrics row (metrics.jsonl, the same
run directory and summary keys as centralized runs, plus the P2P metrics). The driver never
holds the models when the Ray backend is used.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from omegaconf import DictConfig, OmegaConf

from fedplat.core import seeding
from fedplat.data import sources as data_sources
from fedplat.errors import RunAborted, UserError
from fedplat.models import build_model
from fedplat.recording.recorder import RunRecorder
from simulations.disaster import metrics as M
from simulations.disaster.events import Timeline, build_timeline, describe_events
from simulations.disaster.placement import Placement, choose_relays, place_data
from simulations.disaster.shard import RoundPlan, ShardSetup, StepReport, initial_vector
from simulations.disaster.topology import Topology, build_graph

log = logging.getLogger("fedplat")


def _plain(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def num_shards(cfg: DictConfig) -> int:
    """Workers actually used: gauss_seidel needs every node in one shard."""
    if cfg.p2p.order == "gauss_seidel":
        return 1
    return max(1, min(int(cfg.p2p.num_workers), int(cfg.num_clients)))


def assign_shards(n: int, shards: int) -> np.ndarray:
    """Node -> shard: contiguous id ranges of near-equal size."""
    owner = np.zeros(n, dtype=np.int64)
    for sid, block in enumerate(np.array_split(np.arange(n), shards)):
        owner[block] = sid
    return owner


def shard_settings(cfg: DictConfig, owner: np.ndarray) -> dict[str, Any]:
    """Plain settings every shard needs (no OmegaConf objects cross process boundaries)."""
    return {
        "seed": int(cfg.seed),
        "client": _plain(cfg, "client"),
        "model": _plain(cfg, "model"),
        "weights": str(cfg.strategy.weights),
        "zero_data_fallback": str(cfg.strategy.zero_data_fallback),
        "order": str(cfg.p2p.order),
        "batched": bool(cfg.p2p.batched),
        "batch_nodes": int(cfg.p2p.batch_nodes),
        "on_failure": str(cfg.p2p.on_failure),
        "max_missed_rounds": int(cfg.p2p.max_missed_rounds),
        "crash_clients": list(_plain(cfg, "faults.crash_clients") or []),
        "crash_prob": float(cfg.faults.crash_prob),
        "worker_exit": _plain(cfg, "p2p.worker_exit") or {},
        "node_shard": owner.tolist(),
    }


def make_executor(cfg: DictConfig) -> Any:
    """The configured executor (Ray actors or in-process)."""
    from simulations.disaster.executor import LocalExecutor, RayExecutor

    if cfg.p2p.backend == "local":
        return LocalExecutor()
    shards = num_shards(cfg)
    from fedplat.config.settings import parse_ray_address

    return RayExecutor(address=parse_ray_address(cfg.p2p.get("ray_address"), "p2p.ray_address"),
                       num_cpus=max(float(cfg.p2p.cpus_per_worker) * shards, 1.0),
                       cpus_per_worker=float(cfg.p2p.cpus_per_worker),
                       round_timeout=cfg.p2p.round_timeout)


def plan_round(server_round: int, graph: nx.Graph, owner: np.ndarray, shards: list[int],
               evaluate: bool) -> dict[int, RoundPlan]:
    """Each shard's plan: its present nodes, their present neighbours and the degrees."""
    per: dict[int, list[int]] = {s: [] for s in shards}
    for v in sorted(graph.nodes):
        s = int(owner[v])
        if s in per:
            per[s].append(v)
    plans = {}
    for s, nodes in per.items():
        nbrs = {v: sorted(int(u) for u in graph.neighbors(v)) for v in nodes}
        degrees: dict[int, int] = {}
        links: dict[int, dict[int, float]] = {}
        for v, ns in nbrs.items():
            degrees[v] = len(ns)
            for u in ns:
                degrees[u] = graph.degree(u)
                w = graph.edges[v, u].get("weight")
                if w is not None:
                    links.setdefault(v, {})[u] = float(w)
        plans[s] = RoundPlan(server_round, nodes, nbrs, degrees, links, evaluate)
    return plans


class DisasterRun:
    """One P2P run: topology, timeline, placement, executor and the round loop."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.n = int(cfg.num_clients)
        self.T = int(cfg.num_rounds)
        self.topology: Topology = build_graph(_plain(cfg, "topology"))
        self.timeline: Timeline = build_timeline(
            self.topology, _plain(cfg, "disruption.events"), self.T, int(cfg.seed),
            allow_empty=bool(cfg.disruption.allow_empty))
        self.relays = choose_relays(self.topology.graph, self.timeline,
                                    float(cfg.placement.relay_fraction),
                                    str(cfg.placement.relay_select), int(cfg.seed))
        self.placement: Placement = place_data(cfg, self.relays)
        self.sizes = self.placement.sizes()
        seeding.seed_torch(int(cfg.seed), seeding.INIT)
        from fedplat.data.datasets import dataset_info

        self.info = dataset_info(cfg.dataset)
        try:
            init = initial_vector(build_model(cfg.model, self.info))
        except ValueError as exc:
            raise UserError(f"model '{cfg.model.name}': {exc}; pick a model without batch "
                            "norm") from None
        self.num_params = int(init.size)
        self.init = init if bool(cfg.strategy.common_init) else None
        self.owner = assign_shards(self.n, num_shards(cfg))
        self.dead: set[int] = set()  # nodes lost at run time (failures, lost workers)
        self.rows: list[dict[str, Any]] = []

    # ---------------------------------------------------------------------------------------

    def setups(self) -> list[ShardSetup]:
        """What each worker receives once."""
        pl = self.placement
        settings = shard_settings(self.cfg, self.owner)
        out = []
        for sid in range(int(self.owner.max()) + 1):
            nodes = [int(v) for v in np.flatnonzero(self.owner == sid)]
            data = {v: (pl.x_train[pl.train_idx[v]], pl.y_train[pl.train_idx[v]])
                    for v in nodes if v in pl.train_idx}
            out.append(ShardSetup(sid, nodes, self.sizes, data, pl.x_test, pl.y_test,
                                  self.info, settings, self.init))
        return out

    def _evaluate_round(self, t: int) -> bool:
        every = int(self.cfg.eval_every)
        return t % every == 0 or t == self.T or t == 1

    def _consensus(self, executor: Any, comps: list[list[int]]) -> tuple[float, dict[int, float]]:
        """Mean distance to the alive nodes' average, and per component (size >= 2)."""
        labels_all = {v: 0 for comp in comps for v in comp}
        means, counts = M.consensus_means(executor.consensus_sums(labels_all))
        dist = executor.consensus_distances(labels_all, means)
        total = sum(d.get(0, 0.0) for d in dist)
        overall = total / counts[0] if counts.get(0) else math.nan
        if len(comps) == 1:  # one component: it is the whole network
            return overall, {0: overall}
        labels = {v: k for k, comp in enumerate(comps) if len(comp) > 1 for v in comp}
        per: dict[int, float] = {}
        if labels:
            cmeans, ccounts = M.consensus_means(executor.consensus_sums(labels))
            for part in executor.consensus_distances(labels, cmeans):
                for k, d in part.items():
                    per[k] = per.get(k, 0.0) + d
            per = {k: per[k] / ccounts[k] for k in per}
        return overall, per

    def _row(self, t: int, graph_end: nx.Graph, reports: list[StepReport], lost: int,
             present: int, round_time: float, wall: float, consensus: tuple[float, dict[int, float]]
             | None, events: list[str]) -> dict[str, Any]:
        acc: dict[int, float] = {}
        loss: dict[int, float] = {}
        train_loss: dict[int, float] = {}
        failed = 0
        sent: list[int] = []
        for r in reports:
            acc.update({v: a for v, a in r.accuracy.items() if v in graph_end})
            loss.update({v: x for v, x in r.loss.items() if v in graph_end})
            train_loss.update(r.train_loss)
            failed += len(r.failed)
            sent.extend(r.sent)
        comps = M.components(graph_end)
        row: dict[str, Any] = {"round": t, **M.graph_metrics(graph_end)}
        row["present_start"] = present
        row["dropped_total"] = self.n - graph_end.number_of_nodes()
        row["relays_alive"] = sum(1 for v in graph_end.nodes if v in self.relays)
        if acc:
            am = M.accuracy_metrics(acc, comps, self.relays)
            row.update(am)
            row["test_accuracy"] = am["acc_mean"]  # the headline: mean over alive nodes
            row["test_accuracy_mean"] = am["acc_mean"]
            row["test_loss"] = float(np.mean(list(loss.values())))
        if consensus is not None:
            row["consensus_distance"] = consensus[0]
            row["consensus_giant"] = consensus[1].get(0, 0.0 if comps and len(comps[0]) == 1
                                                      else math.nan)
            row["components"] = M.component_table(comps, acc, self.relays, consensus[1])
        row["train_loss"] = (float(np.mean(list(train_loss.values()))) if train_loss
                             else math.nan)
        row["trained"] = len(train_loss)
        row["failures_train"] = failed
        row["lost_workers"] = lost
        msgs = sum(graph_end.degree(v) for v in sent if v in graph_end)
        row["messages"] = int(msgs)
        row["bytes"] = int(msgs) * self.num_params * 4
        row["messages_received"] = sum(r.received for r in reports)
        row["messages_missing"] = sum(r.missing for r in reports)
        row["zero_data_fallbacks"] = sum(r.fallbacks for r in reports)
        row["transport_bytes"] = sum(r.fetched_bytes for r in reports)
        row["time_exchange_s"] = sum(r.t_exchange for r in reports)
        row["time_train_s"] = sum(r.t_train for r in reports)
        row["time_eval_s"] = sum(r.t_eval for r in reports)
        row["round_time_s"] = round_time
        row["wall_time_s"] = wall
        if events:
            row["events"] = events
        return row

    def loop(self, executor: Any, recorder: RunRecorder) -> str | None:
        """The rounds; returns a reason when the run stopped early (no node left)."""
        by_round: dict[int, list[str]] = {}
        for ev in self.timeline.events:
            if ev.nodes or ev.edges:
                by_round.setdefault(ev.round, []).append(ev.describe())
        for t in range(1, self.T + 1):
            recorder.round_started()
            t0 = time.perf_counter()
            g = self.timeline.graph_at(t)
            present = [v for v in g.nodes if v not in self.dead]
            if not present:
                return f"no node left at round {t}"
            h = g.subgraph(present)
            evaluate = self._evaluate_round(t)
            plans = plan_round(t, h, self.owner, executor.alive_shards(), evaluate)
            reports, lost = executor.step(plans)
            for sid in lost:
                self.dead.update(int(v) for v in np.flatnonzero(self.owner == sid))
            for r in reports.values():
                self.dead.update(r.died)
            if not executor.alive_shards():
                raise RunAborted(f"every worker was lost by round {t}")
            end = h.subgraph([v for v in h.nodes if v not in self.dead])
            comps = M.components(end)
            tc = time.perf_counter()
            consensus = self._consensus(executor, comps) if evaluate and comps else None
            tc = time.perf_counter() - tc
            row = self._row(t, end, list(reports.values()), len(lost), len(present),
                            time.perf_counter() - t0, recorder.wall_time_s, consensus,
                            by_round.get(t, []))
            row["time_consensus_s"] = tc
            recorder.log_round(row)
            self.rows.append(row)
            for line in by_round.get(t, []):
                log.info("event  %s", line)
            if lost:
                log.warning("round %d: %d worker(s) lost mid-round; their nodes are dropped",
                            t, len(lost))
            acc = row.get("acc_mean")
            log.info("round %d/%d  acc %s  giant %d/%d  comps %d  cons %s  msgs %d  %.2f s",
                     t, self.T, "n/a" if acc is None else f"{acc:.4f} +-{row['acc_std']:.3f}",
                     row["giant_size"], row["alive"], row["n_components"],
                     f"{row['consensus_distance']:.3f}" if consensus else "n/a",
                     row["messages"], row["round_time_s"])
        return None

    def extra_summary(self) -> dict[str, Any]:
        """P2P facts for summary.json."""
        drops = [ev.round for ev in self.timeline.events
                 if ev.type in ("node_drop", "battery", "link_drop") and ev.index >= 0
                 and (ev.nodes or ev.edges)]
        out: dict[str, Any] = {
            "scenario": "disaster",
            "topology": self.topology.describe(),
            "num_relays": len(self.relays),
            "relays": sorted(self.relays),
            "holders": len(self.placement.train_idx),
            "train_samples": int(self.sizes.sum()),
            "test_samples": len(self.placement.y_test),
            "num_params": self.num_params,
            "weights": str(self.cfg.strategy.weights),
            "order": str(self.cfg.p2p.order),
            "backend": str(self.cfg.p2p.backend),
            "workers": int(self.owner.max()) + 1,
            "events": describe_events(self.timeline),
            "dropped_nodes": sorted(self.timeline.dropped_by(self.T) | self.dead),
            "messages_total": sum(r.get("messages", 0) for r in self.rows),
            "bytes_total": sum(r.get("bytes", 0) for r in self.rows),
            "time_train_s": sum(r.get("time_train_s", 0.0) for r in self.rows),
            "time_exchange_s": sum(r.get("time_exchange_s", 0.0) for r in self.rows),
            "time_eval_s": sum(r.get("time_eval_s", 0.0) for r in self.rows),
        }
        if self.rows:
            loop = sum(r["round_time_s"] for r in self.rows)
            out["rounds_per_s"] = len(self.rows) / loop if loop > 0 else None
            last = self.rows[-1]
            for key in ("acc_mean", "acc_std", "acc_giant", "acc_outside_giant",
                        "acc_mean_holders", "giant_frac", "n_components", "consensus_distance"):
                if key in last:
                    out[f"final_{key}"] = last[key]
        if drops:
            td = drops[0]
            out["first_disruption_round"] = td
            by = {r["round"]: r for r in self.rows}
            for label, server_round in (("before", td - 1), ("at", td), ("plus1", td + 1),
                               ("plus10", td + 10)):
                if server_round in by and "acc_mean" in by[server_round]:
                    out[f"acc_mean_{label}_disruption"] = by[server_round]["acc_mean"]
        return out

    def draw(self) -> None:
        """Disruption and topology plots (a plotting problem never loses results)."""
        from simulations.disaster import plots

        if not bool(self.cfg.p2p.plots):
            return
        try:
            plots.plot_disruption(self.rows, self.timeline, self.run_dir / "disruption.png")
            if self.n <= 2000:
                plots.plot_topology(self.timeline, self.relays, self.dead,
                                    self.run_dir / "topology.png", seed=int(self.cfg.seed))
        except Exception as exc:
            log.warning("could not draw the P2P plots: %s", exc)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one P2P experiment into `run_dir`; return its summary (fedplat's summary keys)."""
    started = time.perf_counter()  # startup_s counts building the graph, schedule and data
    job = DisasterRun(cfg, run_dir)  # graph, schedule and data first: bad input fails here
    log.info("topology %s; %d relays, %d holders x ~%d samples; %d events",
             job.topology.describe(), len(job.relays), len(job.placement.train_idx),
             int(np.median(job.sizes[job.sizes > 0])) if (job.sizes > 0).any() else 0,
             len(describe_events(job.timeline)))
    recorder = RunRecorder(run_dir, cfg, started=started)
    entry = job.placement.describe(job.info, data_sources.cache_dir(cfg.get("cache_dir") or None))
    recorder.log_data(entry)
    log.info("data  %s", entry["line"])
    counts = np.zeros((job.n, job.info.num_classes), dtype=np.int64)
    for v, idx in job.placement.train_idx.items():
        counts[v] = np.bincount(job.placement.y_train[idx], minlength=job.info.num_classes)
    recorder.log_clients(counts.tolist(), {"relays": sorted(job.relays),
                                           "sizes": job.sizes.tolist()})
    executor = make_executor(cfg)
    status, reason = "completed", None
    try:
        executor.start(job.setups(), int(cfg.p2p.torch_threads))
        reason = job.loop(executor, recorder)
    except RunAborted as exc:
        recorder.finish("aborted", str(exc), job.extra_summary())
        job.draw()
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through the CLI's handler
        from fedplat.recording.rundir import signal_name

        recorder.extra.update(job.extra_summary())
        recorder.interrupt(signal_name(exc))
        raise
    except BaseException as exc:
        recorder.finish("failed", f"{type(exc).__name__}: {exc}", job.extra_summary())
        raise
    finally:
        executor.close()
    summary = recorder.finish(status, reason, job.extra_summary())
    job.draw()
    return summary


def models_after(cfg: DictConfig, run_dir: Path) -> tuple[DisasterRun, dict[int, np.ndarray]]:
    """Run like `run` on the in-process executor and also return the final models (tests)."""
    from simulations.disaster.executor import LocalExecutor

    job = DisasterRun(cfg, run_dir)
    recorder = RunRecorder(run_dir, cfg)
    executor = LocalExecutor()
    executor.start(job.setups(), int(cfg.p2p.torch_threads))
    try:
        job.loop(executor, recorder)
        return job, executor.get_models()
    finally:
        executor.close()
        recorder.finish("completed", None, job.extra_summary())


def rows_by_round(rows: list[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """Index metrics rows by round."""
    return {int(r["round"]): r for r in rows}

"""A shard: the nodes one worker owns (their models, data and local training).

The network's nodes are spread over a pool of workers (Ray actors, or one in-process shard).
Each shard keeps only its own nodes' models as flat float32 vectors, and reads its
neighbours' messages from the blocks the other shards published last round (through Ray's
object store), so no process needs every model: this is what lets the simulation grow to more
nodes than fit one process, and to a multi-machine Ray cluster.

One round of a shard (`step`), for each of its present nodes i (ascending id):

1. aggregate: average over i and the neighbours whose message arrived (DecAvg row weights; a
   neighbour that is gone or whose message is missing is skipped, never waited for);
2. train (data holders only; relays never train) with a seeded batch order;
3. evaluate on the global test set (when asked);
4. send: its model goes into the shard's new block.

With `order=jacobi` (snapshot) every aggregation reads last round's block, so the result
does not depend on the processing order or on how nodes are spread over workers. With
`order=gauss_seidel` (live; the group's simulator passes references, not copies) node i reads
its neighbours' current models, which for lower ids already include this round's work; it needs
all nodes in one shard.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from fedplat.core import seeding
from fedplat.data import DatasetInfo
from fedplat.models import build_model
from fedplat.training import batched
from fedplat.training.loops import evaluate, make_optimizer, train
from simulations.disaster.decavg import mix, row_weights


class WorkerExit(RuntimeError):
    """Injected loss of a worker (p2p.worker_exit) in the in-process executor."""


@dataclass(frozen=True)
class ShardSetup:
    """Everything a worker needs once: its nodes, their data, the test set, the settings."""

    shard_id: int
    nodes: list[int]
    sizes: np.ndarray  # (n,) training-set size of every node (0 = relay)
    data: dict[int, tuple[np.ndarray, np.ndarray]]  # holder -> (x, y)
    x_test: np.ndarray
    y_test: np.ndarray
    info: DatasetInfo
    settings: dict[str, Any]  # plain values, see runner.shard_settings
    init: np.ndarray | None  # common initial model (flat), or None: per-node init


@dataclass(frozen=True)
class RoundPlan:
    """What the driver tells a shard for one round (small: ids and degrees only)."""

    round: int
    nodes: list[int]  # this shard's present nodes, ascending
    neighbours: dict[int, list[int]]  # present neighbours in G(t), any shard
    degrees: dict[int, int]  # degree in G(t) of these nodes and their neighbours
    link_weights: dict[int, dict[int, float]] = field(default_factory=dict)
    evaluate: bool = True


@dataclass(frozen=True)
class Block:
    """The messages one shard sent in one round: node ids and their flat models."""

    shard_id: int
    round: int
    nodes: np.ndarray  # (k,) int64
    models: np.ndarray  # (k, P) float32

    @property
    def nbytes(self) -> int:
        """Size of the models in bytes."""
        return int(self.models.nbytes)


@dataclass
class StepReport:
    """What a shard did in one round (no model tensors)."""

    shard_id: int
    round: int
    sent: list[int] = field(default_factory=list)
    died: list[int] = field(default_factory=list)  # gave up mid-round (on_failure=drop)
    train_loss: dict[int, float] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    accuracy: dict[int, float] = field(default_factory=dict)
    loss: dict[int, float] = field(default_factory=dict)
    fallbacks: int = 0
    received: int = 0  # neighbour messages aggregated
    missing: int = 0  # present neighbours whose message was not there
    fetched_bytes: int = 0  # bytes of other shards' blocks read
    t_exchange: float = 0.0
    t_train: float = 0.0
    t_eval: float = 0.0


def _load_vector(model: nn.Module, vec: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(vec[offset:offset + n].view_as(p))
            offset += n


def _read_vector(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def initial_vector(model: nn.Module) -> np.ndarray:
    """A model's parameters as one float32 vector (buffers are not supported)."""
    if any(True for _ in model.buffers()):
        raise ValueError("models with buffers (batch norm) cannot be averaged as flat vectors")
    return _read_vector(model).numpy().astype(np.float32)


class Shard:
    """A worker's nodes: models, data, local training, aggregation and evaluation."""

    def __init__(self, setup: ShardSetup) -> None:
        s = setup.settings
        self.id = setup.shard_id
        self.nodes = list(setup.nodes)
        self.sizes = np.asarray(setup.sizes)
        self.settings = s
        self.seed = int(s["seed"])
        self.client_cfg = OmegaConf.create(s["client"])
        self.model = build_model(OmegaConf.create(s["model"]), setup.info)
        self.data = {v: (torch.from_numpy(np.array(x, dtype=np.float32)),
                         torch.from_numpy(np.array(y, dtype=np.int64)))
                     for v, (x, y) in setup.data.items()}
        self.x_test = torch.from_numpy(np.array(setup.x_test, dtype=np.float32))
        self.y_test = torch.from_numpy(np.array(setup.y_test, dtype=np.int64))
        self.models: dict[int, torch.Tensor] = {}
        for v in self.nodes:
            if setup.init is not None:
                self.models[v] = torch.from_numpy(np.array(setup.init, dtype=np.float32))
            else:
                seeding.seed_torch(self.seed, seeding.INIT, v + 1)
                fresh = build_model(OmegaConf.create(s["model"]), setup.info)
                self.models[v] = torch.from_numpy(initial_vector(fresh))
        self.crash_clients = set(s.get("crash_clients", []))
        self.crash_prob = float(s.get("crash_prob", 0.0))
        self.missed: dict[int, int] = {}
        self.ever_sent: set[int] = set()
        self.dead: set[int] = set()
        self._stacks: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self._consensus_cache: tuple[Any, list[tuple[int, torch.Tensor]]] | None = None
        self.hard_exit = False  # set by the Ray wrapper: an injected exit kills the process

    # ---------------------------------------------------------------------------------------

    def _maybe_exit(self, server_round: int) -> None:
        ex = self.settings.get("worker_exit") or {}
        if ex.get("round") == server_round and ex.get("worker") == self.id:
            if self.hard_exit:
                os._exit(1)  # a worker that dies mid-round, as a crashed machine would
            raise WorkerExit(f"worker {self.id} exited in round {server_round} (p2p.worker_exit)")

    def _fails(self, server_round: int, node: int) -> bool:
        if node in self.crash_clients:
            return True
        if self.crash_prob > 0:
            return bool(seeding.rng(self.seed, seeding.FAULTS, server_round, node).random()
                        < self.crash_prob)
        return False

    def _failure(self, node: int, why: str, report: StepReport) -> bool:
        """Record a failed training; the node keeps its post-aggregation model.

        Returns False if the node gives up (on_failure=drop after max_missed_rounds failures
        in a row).
        """
        report.failed[node] = why
        self.missed[node] = self.missed.get(node, 0) + 1
        if (self.settings.get("on_failure") == "drop"
                and self.missed[node] >= int(self.settings.get("max_missed_rounds", 1))):
            self.dead.add(node)
            report.died.append(node)
            return False
        return True

    def _train(self, server_round: int, node: int, report: StepReport) -> bool:
        """Train `node`; on failure keep its post-aggregation model. False if it died."""
        t0 = time.perf_counter()
        try:
            if self._fails(server_round, node):
                raise RuntimeError(f"injected training failure (faults) of node {node}")
            _load_vector(self.model, self.models[node])
            opt = make_optimizer(self.model.parameters(), self.client_cfg)
            x, y = self.data[node]
            res = train(self.model, x, y, opt, epochs=int(self.client_cfg.local_epochs),
                        batch_size=int(self.client_cfg.batch_size),
                        generator=seeding.torch_generator(self.seed, seeding.CLIENT,
                                                          server_round, node))
            self.models[node] = _read_vector(self.model)
            report.train_loss[node] = res.loss
            self.missed[node] = 0
        except Exception as exc:  # the node keeps its post-aggregation model
            alive = self._failure(node, f"{type(exc).__name__}: {exc}", report)
            report.t_train += time.perf_counter() - t0
            return alive
        report.t_train += time.perf_counter() - t0
        return True

    @property
    def batched(self) -> bool:
        """Train and evaluate many nodes at once (p2p.batched, SGD only)."""
        return bool(self.settings.get("batched")) and self.client_cfg.optimizer == "sgd"

    def _train_many(self, server_round: int, nodes: list[int], report: StepReport) -> None:
        """Train `nodes` in groups of equal data size with one vmapped model per group."""
        t0 = time.perf_counter()
        groups: dict[int, list[int]] = {}
        for v in nodes:
            if self._fails(server_round, v):
                self._failure(v, f"RuntimeError: injected training failure (faults) of node "
                                 f"{v}", report)
            else:
                groups.setdefault(len(self.data[v][1]), []).append(v)
        chunk = int(self.settings.get("batch_nodes", 256))
        c = self.client_cfg
        used: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        for members in groups.values():
            for start in range(0, len(members), chunk):
                part = members[start:start + chunk]
                key = tuple(part)  # stacked data is reused while the group is unchanged
                if key not in self._stacks:
                    self._stacks[key] = (torch.stack([self.data[v][0] for v in part]),
                                         torch.stack([self.data[v][1] for v in part]))
                used[key] = self._stacks[key]
                x, y = used[key]
                flat = torch.stack([self.models[v] for v in part])
                gens = [seeding.torch_generator(self.seed, seeding.CLIENT, server_round, v)
                        for v in part]
                trained, losses, finite = batched.train_sgd_stacked(
                    self.model, batched.unflatten(self.model, flat), x, y,
                    [len(y[0])] * len(part), gens, epochs=int(c.local_epochs),
                    batch_size=int(c.batch_size), lr=float(c.lr), momentum=float(c.momentum),
                    weight_decay=float(c.weight_decay))
                new = batched.flatten(trained)
                for i, v in enumerate(part):
                    if bool(finite[i]):
                        self.models[v] = new[i].clone()
                        report.train_loss[v] = float(losses[i])
                        self.missed[v] = 0
                    else:
                        self._failure(v, "FloatingPointError: non-finite training loss; "
                                         "lower client.lr", report)
        self._stacks = used
        report.t_train += time.perf_counter() - t0

    def _evaluate(self, nodes: list[int], report: StepReport) -> None:
        t0 = time.perf_counter()
        bs = int(self.client_cfg.eval_batch_size)
        if self.batched and nodes:
            chunk = int(self.settings.get("batch_nodes", 256))
            for start in range(0, len(nodes), chunk):
                part = nodes[start:start + chunk]
                stacked = batched.unflatten(self.model,
                                            torch.stack([self.models[v] for v in part]))
                acc, loss = batched.evaluate_many(self.model, stacked, self.x_test, self.y_test,
                                                  bs)
                for i, v in enumerate(part):
                    report.accuracy[v] = float(acc[i])
                    report.loss[v] = float(loss[i])
        else:
            for v in nodes:
                _load_vector(self.model, self.models[v])
                res = evaluate(self.model, self.x_test, self.y_test, bs)
                report.accuracy[v] = res.accuracy
                report.loss[v] = res.loss
        report.t_eval = time.perf_counter() - t0

    def _row(self, plan: RoundPlan, node: int, available: list[int]) -> Any:
        s = self.settings
        return row_weights(node, available, rule=s["weights"], sizes=self.sizes,
                           degrees=plan.degrees, fallback=s["zero_data_fallback"],
                           link_weights=plan.link_weights.get(node))

    def step(self, plan: RoundPlan, inbox: Mapping[int, Block]) -> tuple[StepReport, Block]:
        """One round for this shard's present nodes; returns the report and the new block.

        `inbox` holds the blocks other shards (and this one) sent last round; with
        `order=gauss_seidel` it is ignored and current models are read instead.
        """
        report = StepReport(self.id, plan.round)
        nodes = [v for v in plan.nodes if v not in self.dead]
        if self.settings["order"] == "gauss_seidel":
            self._step_live(plan, nodes, report)
        else:
            self._step_snapshot(plan, nodes, inbox, report)
        alive = [v for v in nodes if v not in self.dead]
        if plan.evaluate:
            self._evaluate(alive, report)
        report.sent = alive
        self.ever_sent.update(alive)
        models = (torch.stack([self.models[v] for v in alive]).numpy() if alive
                  else np.zeros((0, 0), dtype=np.float32))
        return report, Block(self.id, plan.round, np.array(alive, dtype=np.int64), models)

    def _step_snapshot(self, plan: RoundPlan, nodes: list[int], inbox: Mapping[int, Block],
                       report: StepReport) -> None:
        t0 = time.perf_counter()
        index: dict[int, torch.Tensor] = {}
        for sid, block in inbox.items():
            if block.round != plan.round - 1 or not len(block.nodes):
                continue  # only last round's messages count
            mats = torch.from_numpy(np.asarray(block.models))
            if sid != self.id:
                report.fetched_bytes += block.nbytes
            for r, v in enumerate(block.nodes.tolist()):
                index[v] = mats[r]
        new: dict[int, torch.Tensor] = {}
        for v in nodes:
            nbrs = plan.neighbours.get(v, [])
            available = [j for j in nbrs if j in index and j not in self.dead]
            report.missing += len(nbrs) - len(available) if plan.round > 1 else 0
            report.received += len(available)
            row = self._row(plan, v, available)
            report.fallbacks += int(row.fallback)
            vectors = {j: index[j] for j in available}
            vectors[v] = self.models[v]
            new[v] = mix(row, vectors)
        self.models.update(new)
        report.t_exchange = time.perf_counter() - t0
        self._maybe_exit(plan.round)
        holders = [v for v in nodes if self.sizes[v] > 0]
        if self.batched:
            self._train_many(plan.round, holders, report)
        else:
            for v in holders:
                self._train(plan.round, v, report)

    def _step_live(self, plan: RoundPlan, nodes: list[int], report: StepReport) -> None:
        mine = set(self.nodes)
        for v in nodes:
            t0 = time.perf_counter()
            nbrs = plan.neighbours.get(v, [])
            if not set(nbrs) <= mine:
                raise RuntimeError("order=gauss_seidel needs every node in one shard")
            available = [j for j in nbrs if j in self.ever_sent and j not in self.dead]
            report.received += len(available)
            report.missing += sum(1 for j in nbrs if j in self.dead)
            row = self._row(plan, v, available)
            report.fallbacks += int(row.fallback)
            self.models[v] = mix(row, {j: self.models[j] for j in row.members})
            report.t_exchange += time.perf_counter() - t0
            if v == nodes[0]:
                self._maybe_exit(plan.round)
            if self.sizes[v] > 0 and not self._train(plan.round, v, report):
                continue
            self.ever_sent.add(v)  # live: its current model is what neighbours read

    # --- consensus distance ---------------------------------------------------------------

    def _labelled(self, labels: Mapping[int, int]
                  ) -> list[tuple[int, torch.Tensor]]:
        """(label, stacked float32 models) per label of this shard's labelled live nodes.

        The stack is kept until the next call with other labels, so the distance pass reuses
        the sum pass's copy (stacking is most of the cost at 1,000 nodes).
        """
        nodes = [v for v in self.nodes if v in labels and v not in self.dead]
        key = tuple((v, labels[v]) for v in nodes)
        if self._consensus_cache is not None and self._consensus_cache[0] == key:
            return self._consensus_cache[1]
        groups: list[tuple[int, torch.Tensor]] = []
        if nodes:
            labs = np.array([labels[v] for v in nodes])
            order = np.argsort(labs, kind="stable")
            stack = torch.stack([self.models[nodes[i]] for i in order])
            cuts = np.flatnonzero(np.diff(labs[order])) + 1
            for chunk in np.split(np.arange(len(nodes)), cuts):
                groups.append((int(labs[order][chunk[0]]),
                               stack[int(chunk[0]):int(chunk[-1]) + 1]))
        self._consensus_cache = (key, groups)
        return groups

    def consensus_sums(self, labels: Mapping[int, int]) -> dict[int, tuple[int, np.ndarray]]:
        """Per label: (count, float64 sum of the models) over this shard's labelled nodes."""
        return {lab: (len(g), g.sum(dim=0).to(torch.float64).numpy())
                for lab, g in self._labelled(labels)}

    def consensus_distances(self, labels: Mapping[int, int],
                            means: Mapping[int, np.ndarray]) -> dict[int, float]:
        """Per label: Σ ||w_i - mean_label||_2 over this shard's labelled nodes."""
        out: dict[int, float] = {}
        for lab, g in self._labelled(labels):
            if lab in means:
                mean = torch.from_numpy(np.asarray(means[lab], dtype=np.float32))
                out[lab] = float(torch.linalg.vector_norm(g - mean, dim=1).sum())
        self._consensus_cache = None
        return out

    def get_models(self) -> dict[int, np.ndarray]:
        """Copies of this shard's current models (tests, final checks)."""
        return {v: self.models[v].numpy().copy() for v in self.nodes if v not in self.dead}


def finite_or_nan(x: float) -> float:
    """x, or nan when not finite (JSON rows keep null)."""
    return x if math.isfinite(x) else math.nan

"""The node side of the transport: run the clients of one message and reply for each.

A node receives one message per stage and exchange carrying the work of one or several of its
clients (`fedplat.transport.wire`). For each client it injects the configured faults, builds
the algorithm's `Client` on that client's data, seeds the client's RNG from (seed, round,
client, stage), restores nothing by hand (the client's private state lives namespaced in the
node's `Context.state`) and calls the client's method for the stage and exchange. A client that
raises fails alone: its private state is rolled back (as Flower drops the context of a ClientApp
that raised) while the other clients' replies and state updates stand.

The worker (resolved config, device, client class, partitioned data) is built once per process
and config, never per message. On a GPU, each client's tensors are copied to the device once
(from pinned memory, without blocking) and kept there for later messages, up to
`simulation.device_cache_mb`. Every reply carries where its client trained (`device_facts`:
the device and, on CUDA, the peak memory allocated while the client's handler ran), which the
server records per client and the run's summary aggregates.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context, RecordDict
from omegaconf import DictConfig

from fedplat.config.compose import from_json, import_object
from fedplat.core import seeding
from fedplat.core.client import Client, ClientState
from fedplat.core.records import CONTROL
from fedplat.core.stage import MAIN, Stage
from fedplat.data import (
    ClientData,
    Federated,
    GraphClientData,
)
from fedplat.data.federated import data_key as config_data_key
from fedplat.data.federated import federated_by_key
from fedplat.privacy.capture import SUBSET_KEY, restrict
from fedplat.recording import checkpoint
from fedplat.transport import faults, placement, wire

log = logging.getLogger("fedplat")

#: Client data kept on a GPU per worker when `simulation.device_cache_mb` is null.
DEFAULT_DEVICE_CACHE_MB = 1024


ClientTensors = ClientData | GraphClientData


def tensor_bytes(data: ClientTensors) -> int:
    """Bytes of every tensor a client's data holds."""
    return sum(v.numel() * v.element_size() for v in vars(data).values()
               if isinstance(v, torch.Tensor))


def to_device(data: ClientTensors, device: torch.device) -> ClientTensors:
    """A copy of `data` with every tensor on `device` (`data` itself when already there).

    To a CUDA device the host tensors are first pinned (page-locked), so each copy is a
    `non_blocking` DMA transfer that overlaps with the host's work; the kernels that read the
    tensors run on the same stream, after the copy.
    """
    tensors = {k: v for k, v in vars(data).items() if isinstance(v, torch.Tensor)}
    if all(t.device == device for t in tensors.values()):
        return data
    cuda = device.type == "cuda"

    def move(t: torch.Tensor) -> torch.Tensor:
        if cuda and t.device.type == "cpu":
            return t.pin_memory().to(device, non_blocking=True)
        return t.to(device)

    moved: dict[str, Any] = {k: move(v) for k, v in tensors.items()}
    return dataclasses.replace(data, **moved)


def device_name(device: torch.device) -> str:
    """`cpu` or `cuda:<index>` (the index the worker sees; Ray renumbers a worker's GPUs)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    return str(device)


@dataclass
class Worker:
    """Per-process client runtime: config, device, algorithm class and cached data.

    `device_cache_bytes` bounds the clients' tensors kept on a non-CPU device between
    messages (least recently used clients leave first; 0 copies on every message).
    """

    cfg: DictConfig
    device: torch.device
    client_cls: type[Client]
    device_cache_bytes: int = 0
    _on_device: OrderedDict[int, ClientTensors] = field(default_factory=OrderedDict, repr=False)
    _cached_bytes: int = field(default=0, repr=False)
    #: Models kept between messages for the clients' evaluation (`Client.model_with`).
    models: dict[Any, torch.nn.Module] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def data_key(self) -> str:
        """The config's data cache key, computed once (it serialises several config groups)."""
        return config_data_key(self.cfg)

    @property
    def federated(self) -> Federated:
        """The partitioned dataset (built once per process, found by the key computed once).

        Not looked up by recomputing the key per client: `data_key` serialises the data part of
        the config as JSON, about 3 ms, which at 10,000 clients was 35 s of the nodes' set-up
        and 3 ms per sampled client every round.
        """
        return federated_by_key(self.data_key)

    def data(self, cid: int) -> ClientTensors:
        """Client `cid`'s tensors (or subgraph) on this worker's device.

        On a CPU worker these are the partition's own tensors. On another device the copy
        made for an earlier message is reused while the cache bound allows.
        """
        host = self.federated.client(cid)
        if self.device.type == "cpu":
            return to_device(host, self.device)
        cached = self._on_device.get(cid)
        if cached is not None:
            self._on_device.move_to_end(cid)
            return cached
        moved = to_device(host, self.device)
        size = tensor_bytes(moved)
        if size > self.device_cache_bytes:
            return moved
        while self._on_device and self._cached_bytes + size > self.device_cache_bytes:
            _, old = self._on_device.popitem(last=False)
            self._cached_bytes -= tensor_bytes(old)
        self._on_device[cid] = moved
        self._cached_bytes += size
        return moved

    @property
    def cached_clients(self) -> list[int]:
        """Clients whose tensors are kept on the device, least recently used first."""
        return list(self._on_device)

    def client(self, cid: int, control: Mapping[str, Any], stage: Stage,
               server_round: int) -> Client:
        """The algorithm's client `cid` on its data.

        A privacy audit may ask for a client's training on its attack batch only
        (`capture.num_samples`): the data is then cut to that batch.
        """
        data = self.data(cid)
        subset = int(control.get(SUBSET_KEY, 0))
        if stage == Stage.TRAIN and subset > 0 and isinstance(data, ClientData):
            data = restrict(data, int(self.cfg.seed), server_round, subset)
        client = self.client_cls(cid, data, self.cfg, self.device)
        client.models = self.models
        return client

    @contextmanager
    def measured(self, cids: list[int], facts: dict[int, dict[str, Any]]) -> Iterator[None]:
        """Record, for each of `cids`, where the enclosed work ran (see `device_facts`)."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        yield
        fact: dict[str, Any] = {"device": device_name(self.device)}
        if cuda:
            fact["peak-mem"] = int(torch.cuda.max_memory_allocated(self.device))
            fact["device-name"] = torch.cuda.get_device_name(self.device)
        for cid in cids:
            facts[cid] = fact


def set_deterministic(on: bool) -> None:
    """`simulation.deterministic`: deterministic kernels (cuDNN, cuBLAS, scatter) or the default.

    cuBLAS needs its workspace fixed before the first CUDA call for that; ops without a
    deterministic kernel then warn instead of failing (`warn_only`).
    """
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@functools.lru_cache(maxsize=4)
def _worker(config_json: str, data_root: str, device: str) -> Worker:
    cfg = from_json(config_json)
    if data_root:
        cfg.dataset.root = data_root
    sim = cfg.simulation
    threads = sim.get("torch_threads")
    if threads is None and sim.backend == "ray":
        threads = max(1, int(float(sim.num_cpus)))
    if threads is not None:
        torch.set_num_threads(int(threads))
    set_deterministic(bool(sim.get("deterministic") or False))
    if device:
        dev = torch.device(device)
    elif float(sim.num_gpus) > 0 and torch.cuda.is_available():
        dev = torch.device("cuda")
    else:
        dev = torch.device("cpu")
    cache_mb = sim.get("device_cache_mb")
    cache_bytes = int(float(DEFAULT_DEVICE_CACHE_MB if cache_mb is None else cache_mb) * 2**20)
    client_cls = import_object(cfg.strategy.client_target, "strategy.client_target")
    return Worker(cfg, dev, client_cls, cache_bytes)


def worker_for(context: Context, config_json: str) -> Worker:
    """The cached worker for this node's config (node config may set data-root and device)."""
    nc = context.node_config
    return _worker(config_json, str(nc.get("data-root", "")), str(nc.get("device", "")))


def stored_worker(context: Context) -> Worker:
    """The worker of the config this node received in the set-up exchange."""
    stored = context.state.get(CONTROL)
    if not isinstance(stored, ConfigRecord):
        raise RuntimeError("this node has no run config: the server's set-up message did not "
                           "reach it; restart the run")
    return worker_for(context, str(stored["config"]))


def node_dir(context: Context, server_dir: str) -> Path:
    """Where this node keeps checkpoints: its `checkpoint-dir` node config, else the server's."""
    root = context.node_config.get("checkpoint-dir")
    return Path(str(root)) / Path(server_dir).name if root else Path(server_dir)


# -- set-up and checkpoint queries --------------------------------------------------------------


def setup(control: ConfigRecord, context: Context) -> RecordDict:
    """Receive the run config, load this node's clients' data, report ids and sizes.

    A node serves the clients `placement.members` gives for its `partition-id` (one client per
    node unless `simulation.clients_per_node` > 1; groups spread the clients' work evenly); it
    answers with one `info-<id>` record per client. With a `resume-dir`, each client's private
    state is restored from that checkpoint. `simulated` (the server's word) says whether this
    node simulates devices, which decides how its clients' lateness is judged (`run_clients`).
    """
    config_json = str(control["config"])
    context.state[CONTROL] = ConfigRecord({"config": config_json,
                                           "simulated": bool(control.get("simulated", False))})
    worker = worker_for(context, config_json)
    resume_dir = str(control.get("resume-dir", ""))
    out = RecordDict()
    members = placement.members(worker.cfg, int(context.node_config["partition-id"]),
                                worker.federated)
    for cid in members:
        if resume_dir:
            checkpoint.restore_client_state(context.state, node_dir(context, resume_dir), cid)
        data = worker.federated.client(cid)
        counts = torch.bincount(data.y_train, minlength=data.info.num_classes).tolist()
        out[f"info-{cid}"] = ConfigRecord({
            "partition-id": cid, "num-train": data.num_train, "num-val": len(data.y_val),
            "num-test": len(data.y_test), "label-counts": [int(c) for c in counts]})
    return out


def save_checkpoint(control: ConfigRecord, context: Context) -> RecordDict:
    """Save this node's clients' private state into the server's checkpoint directory."""
    saved = checkpoint.save_client_states(context.state, node_dir(context, str(control["dir"])))
    return RecordDict({"info": ConfigRecord({"saved": saved})})


# -- the clients of one message -----------------------------------------------------------------


def reason(exc: BaseException) -> str:
    """`pkg.mod.Error: message`, as a traceback's last line (and a lone client's reply) says."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}: {exc}"


def _snapshot(state: RecordDict, cid: int) -> dict[str, Any]:
    prefix = f"c{cid}."
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def _restore(state: RecordDict, cid: int, saved: dict[str, Any]) -> None:
    """Put back a client's entries as they were before a handler that raised."""
    prefix = f"c{cid}."
    for key in [k for k in state if k.startswith(prefix) and k not in saved]:
        del state[key]
    for key, value in saved.items():
        state[key] = value


def _call(client: Client, stage: Stage, exchange: str, payload: RecordDict,
          state: ClientState, server_round: int) -> RecordDict:
    """The client's method for this stage and exchange."""
    if exchange != MAIN:
        return client.exchange(stage, exchange, payload, state, server_round)
    if stage == Stage.TRAIN:
        return client.train(payload, state, server_round)
    return client.evaluate(payload, state, server_round)


def deadline_of(cfg: DictConfig) -> float | None:
    """`simulation.round_timeout`: the seconds each client has for its work in an exchange."""
    value = cfg.simulation.get("round_timeout")
    return None if value is None else float(value)


def run_clients(worker: Worker, state: RecordDict, stage: Stage, batch: wire.Batch,
                facts: dict[int, dict[str, Any]] | None = None,
                late: dict[int, float] | None = None, *, wall_clock: bool = False,
                ) -> tuple[dict[int, RecordDict], dict[int, BaseException]]:
    """Every client of `batch`: its replies, and the exception of each client that failed.

    `facts`, when given, receives each client's device facts (`Worker.measured`); clients
    trained together share one measurement.

    `late`, when given, receives the clients that were late, with their own time in seconds,
    when that passes `simulation.round_timeout`. A client's own time is its injected delay
    (`faults.slow_*`): in simulation the device simulated is slow by that much, whatever the
    load of the machine that simulates it, so lateness is seeded and reproducible. With
    `wall_clock` (a real device: the server said so at set-up) it also counts the time of the
    client's own handler (for clients trained together, the group's pass). A late client's
    reply (or error) is dropped, as the server stops waiting for it at the deadline, but its
    private state stands: the device did the work. Lateness is thus the client's own,
    whichever clients share its node and message.

    Faults (`faults.Plan.inject`) are drawn for every client of a main training exchange before any
    training, in one place. With `simulation.batched=true`, several clients and a client class
    that can train a group at once (`Client.train_batched`), the clients that did not fail
    train together; otherwise one at a time. Likewise a main evaluation exchange with
    `simulation.batched=true` and several clients goes through `Client.evaluate_batched`
    (`_evaluate_together`).
    """
    server_round = batch.server_round
    facts = {} if facts is None else facts
    late = {} if late is None else late
    deadline = deadline_of(worker.cfg)
    replies: dict[int, RecordDict] = {}
    errors: dict[int, BaseException] = {}
    took: dict[int, float] = {}  # each client's own time: injected delay + its handler
    todo = sorted(batch.payloads)
    if stage == Stage.TRAIN and batch.exchange == MAIN:
        ready = []
        plan = faults.Plan.of(worker.cfg)
        for cid in todo:
            try:
                delay = plan.inject(cid, server_round)
            except Exception as exc:  # this client's failure only
                errors[cid] = exc
                continue
            faults.hold(delay, deadline)
            took[cid] = delay
            ready.append(cid)
        todo = ready
        if (bool(worker.cfg.simulation.get("batched", False)) and len(batch.payloads) > 1
                and not any(c.get(SUBSET_KEY) for c in batch.controls.values())):
            group: dict[int, dict[str, Any]] = {}
            t_group = time.perf_counter()
            with worker.measured(list(todo), group):
                clients = [worker.client(cid, {}, stage, server_round) for cid in todo]
                saved = {cid: _snapshot(state, cid) for cid in todo}
                trained = worker.client_cls.train_batched(
                    clients, [batch.payloads[c] for c in todo],
                    [ClientState(state, c) for c in todo], server_round)
            if trained is not None:
                t_group = time.perf_counter() - t_group if wall_clock else 0.0
                facts.update(group)
                for cid, result in zip(todo, trained):
                    took[cid] = took.get(cid, 0.0) + t_group
                    if isinstance(result, BaseException):
                        _restore(state, cid, saved[cid])
                        errors[cid] = result
                    else:
                        replies[cid] = result
                todo = []
    if (stage == Stage.EVALUATE and batch.exchange == MAIN and len(todo) > 1
            and bool(worker.cfg.simulation.get("batched", False))):
        todo = _evaluate_together(worker, state, batch, todo, replies, errors, facts)
    for cid in todo:
        saved_one = _snapshot(state, cid)
        t_one = time.perf_counter()
        try:
            with worker.measured([cid], facts):
                client = worker.client(cid, batch.controls.get(cid, {}), stage, server_round)
                seeding.seed_torch(int(worker.cfg.seed), seeding.CLIENT, server_round, cid,
                                   stage.stream)
                replies[cid] = _call(client, stage, batch.exchange, batch.payloads[cid],
                                     ClientState(state, cid), server_round)
        except Exception as exc:  # this client's failure only
            _restore(state, cid, saved_one)
            log.debug("client %d failed", cid, exc_info=True)
            errors[cid] = exc
        took[cid] = took.get(cid, 0.0) + (time.perf_counter() - t_one if wall_clock else 0.0)
    if deadline is not None:
        for cid, seconds in sorted(took.items()):
            if seconds > deadline:
                late[cid] = seconds
                replies.pop(cid, None)
                errors.pop(cid, None)
                facts.pop(cid, None)
    return replies, errors


def _evaluate_together(worker: Worker, state: RecordDict, batch: wire.Batch, todo: list[int],
                       replies: dict[int, RecordDict], errors: dict[int, BaseException],
                       facts: dict[int, dict[str, Any]]) -> list[int]:
    """The main evaluation of `todo` through `Client.evaluate_batched`; the clients left.

    All of `todo` when the client class evaluates one at a time (None), else none. The global
    RNG is left as the loop leaves it (seeded for the last client; a batched evaluation draws
    nothing from it), so whatever runs next in this process draws the same numbers.
    """
    server_round = batch.server_round
    group: dict[int, dict[str, Any]] = {}
    with worker.measured(list(todo), group):
        clients = [worker.client(cid, batch.controls.get(cid, {}), Stage.EVALUATE, server_round)
                   for cid in todo]
        saved = {cid: _snapshot(state, cid) for cid in todo}
        done = worker.client_cls.evaluate_batched(
            clients, [batch.payloads[c] for c in todo], [ClientState(state, c) for c in todo],
            server_round)
    if done is None:
        return todo
    seeding.seed_torch(int(worker.cfg.seed), seeding.CLIENT, server_round, todo[-1],
                       Stage.EVALUATE.stream)
    facts.update(group)
    for cid, result in zip(todo, done):
        if isinstance(result, BaseException):
            _restore(state, cid, saved[cid])
            errors[cid] = result
        else:
            replies[cid] = result
    return []


def serve(content: RecordDict, context: Context, stage: Stage) -> RecordDict:
    """A node's reply to one stage message: decode, run its clients, encode.

    A lone client (plain format) that fails raises its exception, so Flower answers with an
    error reply exactly as for any ClientApp that raises. A late client (`run_clients`) is
    reported as late, in either format.
    """
    t0 = time.perf_counter()
    worker = stored_worker(context)
    batch = wire.decode_batch(content)
    facts: dict[int, dict[str, Any]] = {}
    late: dict[int, float] = {}
    stored = context.state.get(CONTROL)
    simulated = isinstance(stored, ConfigRecord) and bool(stored.get("simulated", False))
    replies, errors = run_clients(worker, context.state, stage, batch, facts, late,
                                  wall_clock=not simulated)
    if not batch.packed and errors:
        raise next(iter(errors.values()))
    return wire.encode_replies(batch, replies, {c: reason(e) for c, e in errors.items()},
                               time.perf_counter() - t0,
                               {c: f for c, f in facts.items() if c in replies}, late)

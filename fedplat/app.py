"""The generic Flower ServerApp and ClientApp, used unchanged by every way fedplat runs.

* `fedplat` CLI (simulation): the CLI builds `make_server_app(cfg, recorder)` and launches it
  with the module-level `client_app` on Flower's Simulation Engine (or the inline backend).
* `flwr run .` (simulation through a SuperLink) and deployment (SuperLink + SuperNodes): the
  module-level `server_app`/`client_app` declared in pyproject's `[tool.flwr.app.components]`;
  the ServerApp composes the config from the run config's `overrides` string.

Clients receive the resolved config in the set-up message and keep it in `Context.state`, so a
device needs nothing but fedplat installed and its node config (`partition-id`, optionally
`data-root` and `device`). Each worker process loads and partitions the data once (cached by
config), never per message.
"""

from __future__ import annotations

import functools
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from omegaconf import DictConfig

from fedplat import checkpoint, faults, groups, seeding
from fedplat.client import Client, ClientState
from fedplat.config import compose, from_json, import_object, prepare
from fedplat.data import (
    ClientData,
    FederatedDataset,
    FederatedGraph,
    GraphClientData,
    load_federated,
)
from fedplat.errors import RunAborted
from fedplat.privacy.capture import SUBSET_KEY, restrict
from fedplat.records import CONTROL
from fedplat.results import RunRecorder
from fedplat.server import Server

log = logging.getLogger("fedplat")

# --------------------------------------------------------------------------------------------
# Client side


@dataclass
class Worker:
    """Per-process client runtime: config, device, algorithm class and cached data."""

    cfg: DictConfig
    device: torch.device
    client_cls: type[Client]

    @property
    def federated(self) -> FederatedDataset | FederatedGraph:
        """The partitioned dataset (built once per process)."""
        return load_federated(self.cfg)

    def data(self, cid: int) -> ClientData | GraphClientData:
        """Client `cid`'s tensors (or subgraph) on this worker's device."""
        return self.federated.client(cid).to(self.device)


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
    if device:
        dev = torch.device(device)
    elif float(sim.num_gpus) > 0 and torch.cuda.is_available():
        dev = torch.device("cuda")
    else:
        dev = torch.device("cpu")
    client_cls = import_object(cfg.strategy.client_target, "strategy.client_target")
    return Worker(cfg, dev, client_cls)


def worker_for(context: Context, config_json: str) -> Worker:
    """The cached worker for this node's config (node config may set data-root and device)."""
    nc = context.node_config
    return _worker(config_json, str(nc.get("data-root", "")), str(nc.get("device", "")))


client_app = ClientApp()


def _node_dir(context: Context, server_dir: str) -> Path:
    """Where this node keeps checkpoints: its `checkpoint-dir` node config, else the server's."""
    root = context.node_config.get("checkpoint-dir")
    return Path(str(root)) / Path(server_dir).name if root else Path(server_dir)


@client_app.query()
def _query(msg: Message, context: Context) -> Message:
    """Set-up (config, data sizes, resumed state) and checkpoint requests from the server."""
    control = msg.content[CONTROL]
    stage = str(control["stage"])
    if stage == "setup":
        return _setup(msg, context)
    if stage == "checkpoint":
        saved = checkpoint.save_client_states(context.state,
                                              _node_dir(context, str(control["dir"])))
        return Message(RecordDict({"info": ConfigRecord({"saved": saved})}), reply_to=msg)
    raise ValueError(f"unknown fedplat query stage {stage!r}")


def _setup(msg: Message, context: Context) -> Message:
    """Receive the run config, load this node's clients' data, report ids and sizes.

    A node serves the clients `fedplat.groups.members` gives for its `partition-id` (one
    client per node unless `simulation.clients_per_node` > 1); it answers with one `info-<id>`
    record per client.
    """
    control = msg.content[CONTROL]
    config_json = str(control["config"])
    context.state[CONTROL] = ConfigRecord({"config": config_json})
    worker = worker_for(context, config_json)
    resume_dir = str(control.get("resume-dir", ""))
    out = RecordDict()
    for cid in groups.members(worker.cfg, int(context.node_config["partition-id"])):
        if resume_dir:
            checkpoint.restore_client_state(context.state, _node_dir(context, resume_dir), cid)
        data = worker.federated.client(cid)
        counts = torch.bincount(data.y_train, minlength=data.info.num_classes).tolist()
        out[f"info-{cid}"] = ConfigRecord({
            "partition-id": cid, "num-train": data.num_train, "num-val": len(data.y_val),
            "num-test": len(data.y_test), "label-counts": [int(c) for c in counts]})
    return Message(out, reply_to=msg)


def _run_one(worker: Worker, state: RecordDict, cid: int, payload: RecordDict, rnd: int,
             method: str, draw_faults: bool = True, phase: str = "",
             subset: int = 0) -> RecordDict:
    """One client's handler: faults, a fresh Client, its seed, its private state.

    `subset` > 0 (a privacy-audit round, `capture.num_samples`): the client trains on a seeded
    subset of that many of its training samples.
    """
    if method == "fit" and draw_faults and not phase:
        faults.before_fit(worker.cfg, cid, rnd)
    data = worker.data(cid)
    if method == "fit" and subset > 0:
        data = restrict(data, int(worker.cfg.seed), rnd, subset)
    client = worker.client_cls(cid, data, worker.cfg, worker.device)
    seeding.seed_torch(int(worker.cfg.seed), seeding.CLIENT, rnd, cid, 0 if method == "fit" else 1)
    if phase:  # an extra exchange of a multi-message protocol (Strategy.phases)
        stage = "train" if method == "fit" else "evaluate"
        return client.phase(stage, phase, payload, ClientState(state, cid), rnd)
    content: RecordDict = getattr(client, method)(payload, ClientState(state, cid), rnd)
    return content


def _reason(exc: BaseException) -> str:
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


def _handle_group(worker: Worker, msg: Message, context: Context, method: str) -> Message:
    """Run every client of a packed message; a client that raises fails alone.

    Its private state is rolled back (as Flower drops the context of a ClientApp that raised)
    while the other clients' replies and state updates stand. With `simulation.batched=true`
    and a client class that can train a group at once (`Client.fit_batched`), the clients that
    did not fail before training are trained together.
    """
    t0 = time.perf_counter()
    payloads, _ = groups.unpack(msg.content)
    rnd = int(msg.content[CONTROL]["round"])
    phase = str(msg.content[CONTROL].get("phase", ""))
    subsets = {cid: int(c.get(SUBSET_KEY, 0))
               for cid, c in groups.client_controls(msg.content).items()}
    replies: dict[int, RecordDict] = {}
    errors: dict[int, str] = {}
    state = context.state
    todo = sorted(payloads)
    faults_drawn = False
    if (method == "fit" and not phase and bool(worker.cfg.simulation.get("batched", False))
            and len(todo) > 1 and not any(subsets.values())):
        ready: list[int] = []
        for cid in todo:
            try:
                faults.before_fit(worker.cfg, cid, rnd)
                ready.append(cid)
            except Exception as exc:  # this client's failure only
                errors[cid] = _reason(exc)
        clients = [worker.client_cls(cid, worker.data(cid), worker.cfg, worker.device)
                   for cid in ready]
        saved = {cid: _snapshot(state, cid) for cid in ready}
        batched = worker.client_cls.fit_batched(
            clients, [payloads[c] for c in ready], [ClientState(state, c) for c in ready], rnd)
        if batched is not None:
            for cid, result in zip(ready, batched):
                if isinstance(result, BaseException):
                    _restore(state, cid, saved[cid])
                    errors[cid] = _reason(result)
                else:
                    replies[cid] = result
            todo = []
        else:
            todo, faults_drawn = ready, True  # this client class trains one at a time
    for cid in todo:
        saved_one = _snapshot(state, cid)
        try:
            replies[cid] = _run_one(worker, state, cid, payloads[cid], rnd, method,
                                    draw_faults=not faults_drawn, phase=phase,
                                    subset=subsets.get(cid, 0))
        except Exception as exc:  # this client's failure only
            _restore(state, cid, saved_one)
            log.debug("client %d failed", cid, exc_info=True)
            errors[cid] = _reason(exc)
    content, _ = groups.pack(replies, errors, **{"compute-s": time.perf_counter() - t0})
    return Message(content, reply_to=msg)


def _handle(msg: Message, context: Context, method: str) -> Message:
    stored = context.state.get(CONTROL)
    if not isinstance(stored, ConfigRecord):
        raise RuntimeError("this node has no run config: the server's set-up message did not "
                           "reach it; restart the run")
    worker = worker_for(context, str(stored["config"]))
    if groups.is_group(msg.content):
        return _handle_group(worker, msg, context, method)
    control = msg.content[CONTROL]
    cid, rnd = int(control["cid"]), int(control["round"])
    payload = RecordDict({k: v for k, v in msg.content.items() if k != CONTROL})
    phase = str(control.get("phase", ""))
    subset = int(control.get(SUBSET_KEY, 0))
    return Message(_run_one(worker, context.state, cid, payload, rnd, method, phase=phase,
                            subset=subset), reply_to=msg)


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    return _handle(msg, context, "fit")


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    return _handle(msg, context, "evaluate")


# --------------------------------------------------------------------------------------------
# Server side


def _artifacts(server: Server, recorder: RunRecorder) -> None:
    if server.strategy is None:
        return
    try:
        server.strategy.write_artifacts(recorder.run_dir, recorder.rows)
    except Exception as exc:  # an artefact problem must not lose the results
        log.warning("strategy could not write its artifacts: %s", exc)


def execute(grid: Grid, cfg: DictConfig, recorder: RunRecorder) -> dict[str, Any]:
    """Run the server loop; close the recorder whatever happens; return the summary."""
    server = Server(grid, cfg, recorder)
    try:
        strategy = server.run()
    except RunAborted as exc:
        _artifacts(server, recorder)
        recorder.finish("aborted", str(exc))
        raise
    except BaseException as exc:
        recorder.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    _artifacts(server, recorder)
    return recorder.finish("completed", extra={"strategy_summary": strategy.summary()})


def make_server_app(cfg: DictConfig | None = None,
                    recorder: RunRecorder | None = None) -> ServerApp:
    """A ServerApp for a given config and recorder, or (both None) one that reads run_config."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        if cfg is not None and recorder is not None:
            execute(grid, cfg, recorder)
            return
        overrides = shlex.split(str(context.run_config.get("overrides", "")))
        run_cfg = prepare(compose(overrides))
        run_cfg.simulation.clients_per_node = 1  # flwr run / deployment: a client per node
        out = str(context.run_config.get("output-dir", "")) or str(
            Path.cwd() / "outputs" / time.strftime("flwr-%Y-%m-%d_%H-%M-%S"))
        execute(grid, run_cfg, RunRecorder(Path(out), run_cfg))

    return app


#: Declared in pyproject.toml for `flwr run .` and deployment.
server_app = make_server_app()

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

from fedplat import seeding
from fedplat.capture import SUBSET_KEY, restrict
from fedplat.client import Client, ClientState
from fedplat.config import compose, from_json, import_object, prepare
from fedplat.data import ClientData, FederatedDataset, load_federated
from fedplat.errors import RunAborted
from fedplat.records import CONTROL
from fedplat.results import RunRecorder
from fedplat.server import Server

log = logging.getLogger("fedplat")

# --------------------------------------------------------------------------------------------
# Client side


class InjectedFault(RuntimeError):
    """A crash requested by the `faults` config (robustness experiments)."""


@dataclass
class Worker:
    """Per-process client runtime: config, device, algorithm class and cached data."""

    cfg: DictConfig
    device: torch.device
    client_cls: type[Client]

    @property
    def federated(self) -> FederatedDataset:
        """The partitioned dataset (built once per process)."""
        return load_federated(self.cfg)

    def data(self, cid: int) -> ClientData:
        """Client `cid`'s tensors on this worker's device."""
        return self.federated.client(cid).to(self.device)

    def maybe_crash(self, cid: int, rnd: int) -> None:
        """Raise if the `faults` config asks this client to crash in this round."""
        faults = self.cfg.faults
        if cid in list(faults.crash_clients):
            raise InjectedFault(f"injected crash of client {cid} (faults.crash_clients)")
        p = float(faults.crash_prob)
        if p > 0 and seeding.rng(int(self.cfg.seed), seeding.FAULTS, rnd, cid).random() < p:
            raise InjectedFault(f"injected crash of client {cid} in round {rnd} "
                                f"(faults.crash_prob={p})")


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


@client_app.query()
def _setup(msg: Message, context: Context) -> Message:
    """Receive the run config, load this client's data, report id and sizes."""
    config_json = str(msg.content[CONTROL]["config"])
    context.state[CONTROL] = ConfigRecord({"config": config_json})
    cid = int(context.node_config["partition-id"])
    worker = worker_for(context, config_json)
    data = worker.federated.client(cid)
    counts = torch.bincount(data.y_train, minlength=data.info.num_classes).tolist()
    info = ConfigRecord({"partition-id": cid, "num-train": data.num_train,
                         "num-val": len(data.y_val), "num-test": len(data.y_test),
                         "label-counts": [int(c) for c in counts]})
    return Message(RecordDict({"info": info}), reply_to=msg)


def _handle(msg: Message, context: Context, method: str) -> Message:
    stored = context.state.get(CONTROL)
    if not isinstance(stored, ConfigRecord):
        raise RuntimeError("this node has no run config: the server's set-up message did not "
                           "reach it; restart the run")
    worker = worker_for(context, str(stored["config"]))
    control = msg.content[CONTROL]
    cid, rnd = int(control["cid"]), int(control["round"])
    phase = str(control.get("phase", ""))
    if method == "fit" and not phase:
        worker.maybe_crash(cid, rnd)
    data = worker.data(cid)
    if method == "fit" and int(control.get(SUBSET_KEY, 0)) > 0:  # a privacy-audit round
        data = restrict(data, int(worker.cfg.seed), rnd, int(control[SUBSET_KEY]))
    client = worker.client_cls(cid, data, worker.cfg, worker.device)
    payload = RecordDict({k: v for k, v in msg.content.items() if k != CONTROL})
    seeding.seed_torch(int(worker.cfg.seed), seeding.CLIENT, rnd, cid, 0 if method == "fit" else 1)
    state = ClientState(context.state, cid)
    if phase:
        stage = "train" if method == "fit" else "evaluate"
        content = client.phase(stage, phase, payload, state, rnd)
    else:
        content = getattr(client, method)(payload, state, rnd)
    return Message(content, reply_to=msg)


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
        out = str(context.run_config.get("output-dir", "")) or str(
            Path.cwd() / "outputs" / time.strftime("flwr-%Y-%m-%d_%H-%M-%S"))
        execute(grid, run_cfg, RunRecorder(Path(out), run_cfg))

    return app


#: Declared in pyproject.toml for `flwr run .` and deployment.
server_app = make_server_app()

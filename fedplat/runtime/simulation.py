"""Start a run on Flower's Simulation Engine (Ray backend) or on the inline backend.

The Ray path calls the engine entry that `flwr-simulation` itself uses
(`flwr.simulation.run_simulation._run_simulation`): it is the Simulation Engine without the
deprecation of the `run_simulation` wrapper, and it lets exceptions of the ServerApp (such as
`RunAborted`) reach the caller. flwr is pinned (==1.41.0) because this entry is internal.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from omegaconf import DictConfig

from fedplat.config.settings import Settings, SimulationSettings

log = logging.getLogger("fedplat")


class _DropEngineTracebacks(logging.Filter):
    """Hide the engine's tracebacks for failing clients: fedplat logs one line per failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        noisy = "/fleet/vce/" in path and record.levelno >= logging.ERROR
        return not noisy


def backend_config(sim: SimulationSettings) -> dict[str, Any]:
    """Ray backend settings from `simulation.*` (GPU shares dropped when no GPU exists).

    Without `simulation.ray_address` Ray starts a new local cluster of `ray_num_cpus` CPUs
    (`ray_cluster.init_args`); with it, Ray connects to that running cluster, whose resources
    were set when it was started.
    """
    import torch

    from fedplat.runtime.ray_cluster import init_args as ray_init_args

    num_gpus = sim.num_gpus
    if num_gpus > 0 and not torch.cuda.is_available() and sim.ray_num_gpus is None:
        log.warning("simulation.num_gpus=%g but no CUDA device is visible: clients run on CPU",
                    num_gpus)
        num_gpus = 0.0
    local: dict[str, Any] = {
        "num_cpus": int(sim.ray_num_cpus) if sim.ray_num_cpus else os.cpu_count() or 1,
    }
    if sim.ray_num_gpus is not None:
        local["num_gpus"] = int(sim.ray_num_gpus)
    init_args = {**ray_init_args(sim.ray_address, **local), "logging_level": "ERROR",
                 "log_to_driver": sim.log_to_driver, "include_dashboard": False}
    return {
        "client_resources": {"num_cpus": sim.num_cpus, "num_gpus": num_gpus},
        "init_args": init_args,
    }


def _fast_polling(interval: float) -> Callable[[], None]:
    """Make the engine look for new messages every `interval` s instead of every 0.1 s.

    The Simulation Engine's extractor thread (`vce_api.add_messages_to_queue`, flwr 1.41) scans
    every node for queued messages, then waits 0.1 s; every exchange pays up to that wait
    before a worker even starts. This replaces it, for the duration of one run, with the same
    loop and a configurable wait (`simulation.poll_interval_s`); the server side's grid poll is
    set in `fedplat.server.Server`. Returns a function that puts the original back.
    """
    from flwr.server.superlink.fleet.vce import vce_api

    original = vce_api.add_messages_to_queue

    def add_messages_to_queue(state: Any, queue: Any, nodes_mapping: Any,
                              f_stop: threading.Event) -> None:
        while not f_stop.is_set():
            for node_id in nodes_mapping:
                for msg in state.get_message_ins(node_id=node_id, limit=1):
                    queue.put(msg)
            f_stop.wait(interval)

    vce_api.add_messages_to_queue = add_messages_to_queue

    def restore() -> None:
        vce_api.add_messages_to_queue = original

    return restore


@contextmanager
def inline_threads(threads: int | None) -> Iterator[None]:
    """Intra-op torch threads for an inline run: `simulation.torch_threads`, default 1.

    One thread, as each Ray worker of a run with `num_cpus=1` uses: the small models of FL
    studies gain nothing from more threads, while a second thread competes with whatever else
    runs on the machine (and with the other worker, for a run on two cores). The process's
    setting is put back when the run ends (the inline backend runs in the caller's process).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1 if threads is None else int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def launch(cfg: DictConfig, server_app: ServerApp, client_app: ClientApp,
           num_nodes: int | None = None) -> None:
    """Run `server_app` with `num_nodes` simulated nodes (default: what the client groups need)."""
    from fedplat.transport.placement import num_nodes as nodes_needed

    sim = Settings.from_config(cfg).simulation
    nodes = nodes_needed(cfg) if num_nodes is None else int(num_nodes)
    if sim.backend == "inline":
        from fedplat.runtime.inline import run_inline

        log.info("start-up: starting %d inline node%s (in this process)", nodes,
                 "s" if nodes != 1 else "")
        with inline_threads(sim.torch_threads):
            run_inline(server_app, client_app, nodes)
        return

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    from fedplat.runtime.ray_cluster import local_on_loopback

    engine_filter = _DropEngineTracebacks()
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.addFilter(engine_filter)
    for handler in flwr_logger.handlers:
        handler.addFilter(engine_filter)
    restore = _fast_polling(sim.poll_interval_s) if sim.poll_interval_s is not None else None
    from fedplat.recording.rundir import sigterm_kept_across_ray_init

    config = backend_config(sim)
    where = (f"connecting to the Ray cluster at {sim.ray_address}" if sim.ray_address else
             f"starting Ray ({config['init_args'].get('num_cpus')} CPUs)")
    log.info("start-up: %s for %d node%s, %g CPU per client worker", where, nodes,
             "s" if nodes != 1 else "", sim.num_cpus)
    try:
        # the engine calls ray.init in here; SIGTERM stays recorded as an interruption
        with local_on_loopback(sim.ray_address), sigterm_kept_across_ray_init():
            _run_simulation(
                num_supernodes=nodes,
                client_app=client_app,
                server_app=server_app,
                backend_name="ray",
                backend_config=config,
                exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            )
    finally:
        if restore is not None:
            restore()
        flwr_logger.removeFilter(engine_filter)
        for handler in flwr_logger.handlers:
            handler.removeFilter(engine_filter)

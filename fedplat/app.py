"""The generic Flower ServerApp and ClientApp, used unchanged by every way fedplat runs.

* `fedplat` CLI (simulation): the CLI builds `make_server_app(cfg, recorder)` and launches it
  with the module-level `client_app` on Flower's Simulation Engine (or the inline backend).
* `flwr run .` (simulation through a SuperLink) and deployment (SuperLink + SuperNodes): the
  module-level `server_app`/`client_app` declared in pyproject's `[tool.flwr.app.components]`;
  the ServerApp composes the config from the run config's `overrides` string.

Clients receive the resolved config in the set-up message and keep it in `Context.state`, so a
device needs nothing but fedplat installed and its node config (`partition-id`, optionally
`data-root` and `device`). This module is only the Flower wiring: the round loop is
`fedplat.server`, how client work travels (messages, packing, faults, replies) is
`fedplat.transport`.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from omegaconf import DictConfig

from fedplat.config.compose import compose, prepare
from fedplat.core.records import CONTROL
from fedplat.core.stage import Stage
from fedplat.errors import RunAborted
from fedplat.progress import run_logging
from fedplat.recording import rundir
from fedplat.recording.recorder import RunRecorder
from fedplat.server import Server
from fedplat.transport import node

log = logging.getLogger("fedplat")

# --------------------------------------------------------------------------------------------
# Client side: each handler hands the message to the node runtime (fedplat.transport.node).

client_app = ClientApp()


@client_app.query()
def _query(msg: Message, context: Context) -> Message:
    """Set-up (config, data sizes, resumed state) and checkpoint requests from the server."""
    control = msg.content[CONTROL]
    assert isinstance(control, ConfigRecord)
    stage = str(control["stage"])
    content: RecordDict
    if stage == "setup":
        content = node.setup(control, context)
    elif stage == "checkpoint":
        content = node.save_checkpoint(control, context)
    else:
        raise ValueError(f"unknown fedplat query stage {stage!r}")
    return Message(content, reply_to=msg)


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    return Message(node.serve(msg.content, context, Stage.TRAIN), reply_to=msg)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    return Message(node.serve(msg.content, context, Stage.EVALUATE), reply_to=msg)


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
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through the CLI's handler
        from fedplat.recording.rundir import signal_name

        recorder.interrupt(signal_name(exc))
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
        if not run_cfg.get("resume"):  # a new run never writes over an earlier one
            rundir.claim(Path(out), rundir.overwrite_flag(run_cfg))
        with run_logging(Path(out)):  # what `flwr run --stream` shows
            execute(grid, run_cfg, RunRecorder(Path(out), run_cfg))

    return app


#: Declared in pyproject.toml for `flwr run .` and deployment.
server_app = make_server_app()

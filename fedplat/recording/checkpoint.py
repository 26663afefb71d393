"""Save and restore everything a run needs to continue: `checkpoint_every=N`, `resume=RUN_DIR`.

Layout inside the run directory::

    checkpoint/latest.json            {"round": r, "dir": "round-r"}, replaced atomically last
    checkpoint/round-r/server.pt      round, strategy state (models, optimizers, per-client state)
    checkpoint/round-r/client-<id>.pt each client's private state, written by that client

Client state never travels to the server (HyperFL's private embedding, FED-PUB's masks must not
leave the device): at a checkpoint the server asks every node to write its clients' state to
disk itself (in deployment under the node's `checkpoint-dir`). Metrics so far are in
metrics.jsonl, which a resumed run truncates to the checkpoint round. No RNG state is needed:
every random draw derives from (seed, round, client id), so a resumed run repeats the numbers
of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from flwr.app import RecordDict

CHECKPOINT_DIR = "checkpoint"
LATEST = "latest.json"
SERVER_FILE = "server.pt"


def round_dir(run_dir: Path, server_round: int) -> Path:
    """Directory of the checkpoint taken after round `server_round`."""
    return Path(run_dir) / CHECKPOINT_DIR / f"round-{server_round}"


def client_file(directory: Path, cid: int) -> Path:
    """File of client `cid`'s private state inside a round directory."""
    return Path(directory) / f"client-{cid}.pt"


def client_ids_in(state: RecordDict) -> list[int]:
    """Client ids with entries in a node's Context.state (keys `c<id>.<name>`)."""
    ids = set()
    for key in state:
        head, dot, _ = key.partition(".")
        if dot and head.startswith("c") and head[1:].isdigit():
            ids.add(int(head[1:]))
    return sorted(ids)


def save_client_states(state: RecordDict, directory: Path) -> list[int]:
    """Write each client's entries of a node's Context.state to `client-<id>.pt`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for cid in client_ids_in(state):
        prefix = f"c{cid}."
        entries = {k: v for k, v in state.items() if k.startswith(prefix)}
        _atomic_save(entries, client_file(directory, cid))
        written.append(cid)
    return written


def restore_client_state(state: RecordDict, directory: Path, cid: int) -> bool:
    """Load client `cid`'s saved entries into a node's Context.state (False if none saved)."""
    path = client_file(directory, cid)
    if not path.is_file():
        return False
    for key, record in torch.load(path, weights_only=False).items():
        state[key] = record
    return True


def save_server(run_dir: Path, server_round: int, strategy_state: dict[str, Any]) -> Path:
    """Write the server's state for round `server_round`, then point latest.json at it."""
    directory = round_dir(run_dir, server_round)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save({"round": server_round, "strategy": strategy_state}, directory / SERVER_FILE)
    latest = Path(run_dir) / CHECKPOINT_DIR / LATEST
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"round": server_round, "dir": directory.name}))
    os.replace(tmp, latest)
    for old in (Path(run_dir) / CHECKPOINT_DIR).glob("round-*"):
        if old != directory and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return directory


def latest(run_dir: Path) -> tuple[int, Path] | None:
    """(round, directory) of the newest complete checkpoint, or None."""
    path = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    return int(info["round"]), Path(run_dir) / CHECKPOINT_DIR / info["dir"]


def load_server(directory: Path) -> dict[str, Any]:
    """The saved server state of a round directory."""
    state: dict[str, Any] = torch.load(Path(directory) / SERVER_FILE, weights_only=False)
    return state


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)

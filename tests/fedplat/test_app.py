"""The generic ServerApp/ClientApp: end-to-end runs on the inline backend, and `flwr run .`
through a SuperLink on loopback (offline: no uv sync)."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedplat.app import client_app, make_server_app
from fedplat.errors import RunAborted
from fedplat.recording.recorder import RunRecorder
from fedplat.runtime.inline import run_inline as run_grid
from tests.helpers import make_cfg, run_inline


def test_two_round_run_writes_the_run_directory(tmp_path):
    summary, rows = run_inline(tmp_path, "num_rounds=2", "num_clients=4")
    assert [r["round"] for r in rows] == [1, 2]
    row = rows[-1]
    for key in ("train_loss", "test_accuracy", "test_accuracy_mean", "val_accuracy",
                "wall_time_s", "round_time_s", "bytes_down_train", "bytes_up_train"):
        assert math.isfinite(row[key]), key
    assert set(row["per_client"]) == {"0", "1", "2", "3"}
    assert 0.0 <= row["per_client"]["2"]["test_accuracy"] <= 1.0
    assert row["per_client"]["2"]["num-examples_train"] > row["per_client"]["2"][
        "num-examples_evaluate"]
    for key in ("final", "best", "rounds_completed", "wall_time_s", "strategy", "dataset", "seed"):
        assert key in summary
    assert summary["rounds_completed"] == 2 and summary["status"] == "completed"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "accuracy.png", "loss.png",
                 "label_distribution.png"):
        assert (tmp_path / name).is_file(), name


def test_same_config_same_metrics_other_seed_differs(tmp_path):
    args = ("num_rounds=2", "num_clients=4", "partition=dirichlet", "strategy.fraction_train=0.5")
    _, a = run_inline(tmp_path / "a", *args)
    _, b = run_inline(tmp_path / "b", *args)
    _, c = run_inline(tmp_path / "c", *args, "seed=1")

    def accs(rows):
        return [(r["test_accuracy"], {k: v["test_accuracy"] for k, v in r["per_client"].items()})
                for r in rows]

    assert accs(a) == accs(b)
    assert accs(a) != accs(c)


def test_learning_happens(tmp_path):
    summary, rows = run_inline(tmp_path, "num_rounds=8")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert summary["final"]["accuracy"] > 0.3  # 10 classes: chance is 0.1


def test_crashing_client_is_counted_and_the_round_goes_on(tmp_path):
    _, rows = run_inline(tmp_path, "num_rounds=2", "num_clients=4", "faults.crash_clients=[1]")
    for row in rows:
        assert row["failures_train"] == 1 and row["failures_evaluate"] == 0
        assert "injected crash of client 1" in row["per_client"]["1"]["failed_train"]
        assert "failed_train" not in row["per_client"]["0"]
        assert math.isfinite(row["test_accuracy"])


def test_every_client_failing_stops_the_run_and_keeps_results(tmp_path):
    with pytest.raises(RunAborted, match=r"round 1: all 3 clients failed in train; first "
                                         r"failure: client 0: .*injected crash"):
        run_inline(tmp_path, "num_rounds=3", "num_clients=3", "faults.crash_prob=1.0")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "aborted" and "all 3 clients failed" in summary["reason"]
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["failures_train"] == 3


def test_local_clients_keep_their_model_across_rounds(tmp_path):
    _, rows = run_inline(tmp_path, "strategy=local", "num_rounds=4", "num_clients=3")
    losses = [r["train_loss"] for r in rows]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0]
    assert rows[0]["bytes_down_train"] == 0 and rows[0]["bytes_up_train"] == 0


def test_what_goes_over_the_wire(tmp_path):
    """FedAvg sends the global model down and the trained weights + metrics up, nothing else
    (beside the control record: the client's id down, where it trained up)."""
    cfg = make_cfg("simulation.backend=inline", "num_rounds=1", "num_clients=2")
    seen = []

    def spy(message, context):
        reply = client_app(message, context)
        seen.append((message.metadata.message_type, set(message.content.keys()),
                     set(reply.content.keys()) if reply.has_content() else None))
        if message.metadata.message_type != "query":
            assert dict(reply.content["fedplat"]) == {"device": "cpu"}
        return reply

    run_grid(make_server_app(cfg, RunRecorder(tmp_path, cfg)), spy, 2)
    kinds = {k for k, _, _ in seen}
    assert kinds == {"query", "train", "evaluate"}
    train = [(d, u) for k, d, u in seen if k == "train"]
    assert all(d == {"arrays", "config", "fedplat"} and u == {"arrays", "metrics", "fedplat"}
               for d, u in train)
    evaluate = [(d, u) for k, d, u in seen if k == "evaluate"]
    assert all(u == {"metrics", "fedplat"} for _, u in evaluate)


def test_replies_with_wrong_shapes_or_nan_are_rejected_and_the_round_goes_on(tmp_path):
    _, rows = run_inline(tmp_path, "num_rounds=2", "num_clients=4",
                         "strategy.client_target=tests.helpers.BadReplyClient")
    for row in rows:
        assert row["rejected_train"] == 2 and row["failures_train"] == 2
        assert "has shape (1, 40), expected (100, 40)" in row["per_client"]["1"]["failed_train"]
        assert "non-finite values in arrays/" in row["per_client"]["2"]["failed_train"]
        assert math.isfinite(row["test_accuracy"])  # the global model stayed finite


def test_offline_clients_are_not_contacted(tmp_path):
    _, rows = run_inline(tmp_path, "num_rounds=4", "num_clients=6", "faults.dropout_prob=0.5")
    assert sum(r["dropped_train"] for r in rows) > 0
    for r in rows:
        offline = {k for k, c in r["per_client"].items() if c.get("dropped_train")}
        assert r["dropped_train"] == len(offline)
        assert all("train_loss" not in r["per_client"][k] for k in offline)


# -- `flwr run .`: the same apps through a SuperLink ------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name):
    return str(Path(sys.executable).parent / name)


@pytest.mark.ray
def test_flwr_run_dot_on_loopback(tmp_path):
    port = _free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    # The SuperLink starts flower-superexec/flwr-simulation from PATH: use this venv's.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "PATH": path}
    log = (tmp_path / "superlink.log").open("w")
    link = subprocess.Popen(
        [_bin("flower-superlink"), "--insecure", "--simulation", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    out = tmp_path / "results"
    try:
        deadline = time.time() + 90
        while time.time() < deadline and link.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        assert link.poll() is None, (tmp_path / "superlink.log").read_text()[-3000:]
        proc = subprocess.run(
            [_bin("flwr"), "run", str(REPO), "loopback", "--stream",
             "--run-config", f'overrides="num_rounds=2 num_clients=2" output-dir="{out}"',
             "--federation-config", "num-supernodes=2 client-resources-num-cpus=1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, (proc.stdout[-3000:] + proc.stderr[-3000:]
                                      + (tmp_path / "superlink.log").read_text()[-3000:])
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["rounds_completed"] == 2
        # the ServerApp's start-up steps and rounds reach `flwr run --stream`
        assert "start-up: 2 nodes ready in" in proc.stdout, proc.stdout[-3000:]
        assert "round 1/2" in proc.stdout and "round 2/2" in proc.stdout
        assert (out / "metrics.jsonl").read_text().count("\n") == 2
    finally:
        os.killpg(link.pid, signal.SIGTERM)
        try:
            link.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(link.pid, signal.SIGKILL)
        log.close()

"""`flwr run .` runs the same apps through a SuperLink on loopback (offline: no uv sync)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name):
    return str(Path(sys.executable).parent / name)


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
        assert (out / "metrics.jsonl").read_text().count("\n") == 2
    finally:
        os.killpg(link.pid, signal.SIGTERM)
        try:
            link.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(link.pid, signal.SIGKILL)
        log.close()

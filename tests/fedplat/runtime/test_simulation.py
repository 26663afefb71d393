"""Flower's Simulation Engine on Ray: the same numbers as the inline backend."""

import json
import os
import subprocess
import sys

import pytest

from fedplat.config.settings import Settings
from fedplat.runtime.net import is_loopback
from fedplat.runtime.simulation import backend_config
from tests.helpers import make_cfg, run_inline, watch_listening, watch_mapped

pytestmark = pytest.mark.ray


def test_backend_config_drops_gpu_share_without_cuda():
    import torch

    cfg = make_cfg("simulation.num_cpus=1", "simulation.num_gpus=0.25")
    bc = backend_config(Settings.from_config(cfg).simulation)
    expected = 0.25 if torch.cuda.is_available() else 0.0
    assert bc["client_resources"] == {"num_cpus": 1.0, "num_gpus": expected}
    assert bc["init_args"]["num_cpus"] >= 1
    assert bc["init_args"]["address"] == "local"  # a new cluster, even if RAY_ADDRESS is set


def test_backend_config_connects_to_a_running_cluster_without_resources():
    cfg = make_cfg("simulation.ray_address=10.0.0.5:6379", "simulation.ray_num_cpus=8",
                   "simulation.ray_num_gpus=1")
    init = backend_config(Settings.from_config(cfg).simulation)["init_args"]
    # ray.init refuses num_cpus/num_gpus with an address: the cluster has its own
    assert init == {"address": "10.0.0.5:6379", "logging_level": "ERROR",
                    "log_to_driver": False, "include_dashboard": False}


def test_console_entry_on_ray_matches_inline_for_a_stateful_strategy_with_a_crashing_client(
        tmp_path):
    """`fedplat` (the console entry, default backend: Ray) gives the inline numbers.

    Context.state persists on Ray (Local keeps its model) and failures are counted. One Ray
    run checks both the console entry and the Ray backend (starting Ray is this test's cost).
    """
    args = ("strategy=local", "num_rounds=2", "num_clients=4", "faults.crash_clients=[2]")
    _, inline_rows = run_inline(tmp_path / "inline", *args)
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedplat.cli", *args, "simulation.num_cpus=1",
         f"hydra.run.dir={tmp_path}/ray"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the local Ray cluster started for the run (GCS, raylets, workers, runtime-env agent and
    # the driver) listens on loopback only (Ray's default is every interface)
    try:
        with watch_listening(lambda: [proc.pid]) as sockets, \
                watch_mapped(lambda: [proc.pid], "/shared/") as mapped:
            stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert "round 2/2" in stdout and "fedplat run completed" in stdout
    # the workers read the driver's arrays from one memory-mapped copy (fedplat.data.shared)
    assert any(name.startswith("ray::") for name in mapped.values()), mapped
    names = {s.name for s in sockets}
    assert {"gcs_server", "raylet"} <= names, names
    assert sum(s.name.startswith("ray::") for s in sockets) >= 2, names  # the client workers
    assert [s for s in sockets if not is_loopback(s.ip)] == []
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["startup_s"] > 0
    assert summary["rounds_completed"] == 2 and summary["final"]["accuracy"] > 0
    ray_rows = [json.loads(x) for x in (tmp_path / "ray" / "metrics.jsonl").read_text().split("\n")
                if x]
    assert len(ray_rows) == len(inline_rows) == 2
    for a, b in zip(inline_rows, ray_rows):
        assert a["failures_train"] == b["failures_train"] == 1
        assert a["test_accuracy"] == b["test_accuracy"]
        assert {k: v.get("test_accuracy") for k, v in a["per_client"].items()} == \
            {k: v.get("test_accuracy") for k, v in b["per_client"].items()}


@pytest.mark.parametrize(("override", "expected"), [((), 1), (("simulation.torch_threads=2",), 2)])
def test_inline_runs_use_one_torch_thread_unless_told_and_put_the_setting_back(override,
                                                                              expected):
    import torch
    from flwr.app import Context
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp

    from fedplat.runtime.simulation import launch

    cfg = make_cfg("simulation.backend=inline", "num_clients=2", *override)
    seen: list[int] = []
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        launch(cfg, app, ClientApp())
        assert seen == [expected] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)

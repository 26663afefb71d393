"""Checkpoint and resume: a killed run continues to the same numbers as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from fedplat.core.strategy import ClientInfo
from fedplat.recording import checkpoint
from strategies.fedavg import FedAvg
from tests.helpers import make_cfg, run_inline


def test_client_state_round_trip(tmp_path):
    state = RecordDict({
        "c3.model": ArrayRecord({"w": torch.arange(4.0)}),
        "c3.meta": ConfigRecord({"steps": 7}),
        "c12.model": ArrayRecord({"w": torch.ones(2)}),
        "fedplat": ConfigRecord({"config": "{}"}),
    })
    assert checkpoint.client_ids_in(state) == [3, 12]
    assert checkpoint.save_client_states(state, tmp_path) == [3, 12]
    fresh = RecordDict()
    assert checkpoint.restore_client_state(fresh, tmp_path, 3)
    assert set(fresh.keys()) == {"c3.model", "c3.meta"}
    assert fresh["c3.model"].to_torch_state_dict()["w"].tolist() == [0, 1, 2, 3]
    assert not checkpoint.restore_client_state(fresh, tmp_path, 5)


def test_server_checkpoint_and_strategy_state(tmp_path):
    cfg = make_cfg("num_clients=2")
    s = FedAvg(cfg)
    s.setup({0: ClientInfo(0, 1, 1, 1), 1: ClientInfo(1, 1, 1, 1)})
    s.global_state = {k: v + 1 for k, v in s.global_state.items()}
    checkpoint.save_server(tmp_path, 3, s.state_dict())
    checkpoint.save_server(tmp_path, 4, s.state_dict())
    server_round, directory = checkpoint.latest(tmp_path)
    assert server_round == 4 and not checkpoint.round_dir(tmp_path, 3).exists()
    t = FedAvg(cfg)
    t.setup(s.clients)
    t.load_state_dict(checkpoint.load_server(directory)["strategy"])
    assert all(torch.equal(t.global_state[k], v) for k, v in s.global_state.items())
    assert "cfg" not in s.state_dict()


def _cli(*args, cwd):
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    return [sys.executable, "-m", "fedplat.cli", *args], dict(cwd=cwd, env=env, text=True)


@pytest.mark.parametrize(("strategy", "per_node"), [
    ("fedavg", 1),  # server state
    # client state: 3 clients, at most 2 per node: one node serves a group of two, the other a
    # single client, as every node does with clients_per_node=1 (the same save and restore)
    ("local", 2),
])
def test_killed_run_resumes_to_identical_metrics(tmp_path, strategy, per_node, capsys,
                                                 monkeypatch):
    args = [f"strategy={strategy}", "simulation.backend=inline", "num_rounds=5",
            "num_clients=3", "partition=dirichlet", "strategy.fraction_train=0.67",
            f"simulation.clients_per_node={per_node}",
            # the same torch thread count in this process and the CLI's: exact float sums
            "simulation.torch_threads=1"]
    _, expected = run_inline(tmp_path / "reference", *args)

    run_dir = tmp_path / "run"
    cmd, kw = _cli(*args, "checkpoint_every=1", "faults.slow_clients=[0]",
                   "faults.slow_delay_s=0.4", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpt = checkpoint.latest(run_dir) if (run_dir / "checkpoint").exists() else None
        if ckpt and ckpt[0] >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"

    # the resumed run in this process (the killed one had to be a process of its own)
    from fedplat.cli import main

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    main([f"resume={run_dir}", f"hydra.run.dir={tmp_path}/resume-log"])
    assert "resuming after round" in capsys.readouterr().out
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3, 4, 5]

    def accs(rs):
        return [(r["train_loss"], r["test_accuracy"],
                 {k: v.get("test_accuracy") for k, v in r["per_client"].items()}) for r in rs]

    assert accs(rows) == accs(expected)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_completed"] == 5


def test_resume_needs_a_checkpoint_and_no_other_overrides(tmp_path, capsys):
    from fedplat.cli import main

    run_inline(tmp_path / "plain", "num_rounds=1", "num_clients=2")
    with pytest.raises(SystemExit) as info:
        main([f"resume={tmp_path / 'plain'}"])
    assert info.value.code == 2
    assert "started with checkpoint_every=N" in capsys.readouterr().err


def test_a_state_holding_models_and_optimizers_loads_through_the_restricted_unpickler(tmp_path):
    """pFedHN keeps a hypernetwork and its optimizer: not `weights_only`, still no code run."""
    import pickle

    from strategies.pfedhn import PFedHN

    cfg = make_cfg("strategy=pfedhn", "num_clients=3")
    s = PFedHN(cfg)
    s.setup({i: ClientInfo(i, 10, 2, 2) for i in range(3)})
    checkpoint.save_server(tmp_path, 1, s.state_dict())
    path = checkpoint.latest(tmp_path)[1] / checkpoint.SERVER_FILE
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    state = checkpoint.load_server(path.parent)["strategy"]
    params = list(state["model"].parameters())
    in_optimizer = {id(q) for g in state["optimizer"].param_groups for q in g["params"]}
    assert in_optimizer == {id(q) for q in params}  # the same objects, shared as saved
    assert all(torch.equal(a, b) for a, b in zip(params, s.model.parameters(), strict=True))

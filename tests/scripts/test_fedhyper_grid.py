"""The resumable FedHyper grid runner: cells, methods, and what it does with each run dir."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import fedhyper_grid as grid


def test_method_overrides_and_the_widened_gm_clip():
    assert grid.method_overrides("fedavg", 0.5) == [
        "strategy=fedavg", "strategy.weighted=false", "strategy.server_lr=0.5"]
    assert grid.method_overrides("g_cl", 2.0)[1] == "strategy.variant=G+CL"
    assert grid.method_overrides("full", 0.5)[-1] == "strategy.a_clip_gm_lo=-0.5"
    assert grid.method_overrides("full", 0.8) == [  # inside GM's range: released bounds
        "strategy=fedhyper", "strategy.variant=FULL", "strategy.eta_g0=0.8"]
    with pytest.raises(SystemExit, match="unknown method"):
        grid.method_overrides("fedsgd", 1.0)


def test_action_of_each_run_dir_state(tmp_path):
    d = tmp_path / "cell"
    assert grid.action(d) == "start"
    d.mkdir()
    (d / "config.yaml").write_text("num_rounds: 3\n")
    assert grid.action(d) == "restart"  # files but no checkpoint: start again over them
    (d / "metrics.jsonl").write_text("".join(json.dumps({"round": r}) + "\n" for r in (1, 2, 3)))
    assert grid.action(d) == "done"


def test_dry_run_lists_every_cell_with_its_command(tmp_path, capsys):
    code = grid.main(["fedhyper_fmnist_code", str(tmp_path), "--methods", "fedavg,full",
                      "--seeds", "0,1", "--local", "0.01", "--global", "0.5,1",
                      "--dry-run", "--", "num_rounds=2"])
    out = capsys.readouterr().out
    assert code == 0 and out.count(" start ") == 8
    assert f"output_dir={tmp_path}/full/seed1/local0.01_global0.5" in out
    assert "strategy.a_clip_gm_lo=-0.5" in out and "checkpoint_every=5" in out
    assert out.count("num_rounds=2") == 8


def test_resume_command_reuses_the_run_dir(tmp_path):
    cell = grid.Cell("fedavg", 0, 0.01, 1.0)
    run_dir = cell.directory(tmp_path)
    assert run_dir == tmp_path / "fedavg" / "seed0" / "local0.01_global1"
    assert grid.command(["fedplat"], "x", cell, run_dir, "resume", 5, ["a=1"]) == [
        "fedplat", f"resume={run_dir}"]
    fresh = grid.command(["fedplat"], "x", cell, run_dir, "restart", 5, [])
    assert fresh[-1] == "overwrite=true" and "seed=0" in fresh and "client.lr=0.01" in fresh
    assert "simulation.backend=inline" in fresh
    gpu = grid.command(["fedplat"], "x", cell, run_dir, "start", 5, ["simulation.backend=ray"])
    assert "simulation.backend=inline" not in gpu and gpu[-1] == "simulation.backend=ray"

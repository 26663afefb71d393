"""The `fedplat` command line: bad input is one line on stderr and exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedplat.cli import main, user_overrides

REPO = Path(__file__).resolve().parents[2]


def _fedplat(*args, cwd):
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "fedplat.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["strategy=fedavgg"], "unknown strategy 'fedavgg' (choose from: "),
        (["dataset=imagenet"], "unknown dataset 'imagenet' (choose from: basic_motions, cifar10, "),
        (["partition=random"], "unknown partition 'random' (choose from: by_class, dirichlet, iid"),
        (["partition=dirichlet", "partition.alpha=0"], "partition.alpha=0 must be > 0"),
        (["num_clients=5001"], "num_clients=5001 exceeds the 5000 samples of dataset"),
        (["strategy.fraction_train=1.2"], "strategy.fraction_train=1.2 is out of range"),
        (["-m", "seed=0,1", "partition=dirichlet", "partition.alpha=1,0"],
         "partition.alpha=0 must be > 0"),
        (["num_client=3"], "unknown config key num_client=3; did you mean num_clients=3?"),
        (["dataset=cifar10"], "CIFAR-10 not found"),
        (["experiment=fedpub_sbm", "strategy.tau=0"], "strategy.tau=0.0 must be > 0"),
        (["dataset=sbm", "partition=metis_disjoint", "num_clients=5000"],
         "nodes of the graph; use fewer clients"),
    ],
)
def test_bad_input_one_line_exit_2(args, message, capsys, monkeypatch):
    monkeypatch.chdir(os.environ.get("TMPDIR", "/tmp"))
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fedplat: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_user_overrides_skips_flags():
    assert user_overrides(["-m", "seed=0,1", "--config-name", "x", "a=1"]) == ["seed=0,1", "a=1"]
    assert user_overrides(["--help"]) is None


def test_corrupt_data_file_through_the_console_entry(tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / f"{name}.gz").write_bytes(b"\x1f\x8b broken")
    proc = _fedplat("dataset=mnist", f"dataset.root={root}", f"hydra.run.dir={tmp_path}/run",
                    cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("fedplat: error: corrupt data file") and len(lines) == 1


def test_partial_idx_folder_through_the_console_entry(tmp_path):
    """Two of MNIST's four IDX files: exit 2, one line naming the folder and what it lacks."""
    root = tmp_path / "mnist"
    root.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (root / f"{name}.gz").write_bytes(b"\x1f\x8b")
    proc = _fedplat("dataset=mnist", f"dataset.root={root}", f"hydra.run.dir={tmp_path}/run",
                    cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (
        f"fedplat: error: MNIST is incomplete in {root}: it lacks t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte (has train-images-idx3-ubyte, train-labels-idx1-ubyte); "
        f"folders searched: [{root}]; put all of train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte in one folder")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_sweep_inline_and_a_stopped_run(tmp_path):
    proc = _fedplat("-m", "simulation.backend=inline", "num_rounds=1", "num_clients=3",
                    "seed=0,1", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p.parent for p in (tmp_path / "sweep").rglob("summary.json"))
    assert len(runs) == 2
    seeds = {json.loads((r / "summary.json").read_text())["seed"] for r in runs}
    assert seeds == {0, 1}
    assert proc.stdout.count("fedplat run completed") == 2

    proc = _fedplat("simulation.backend=inline", "num_rounds=2", "num_clients=2",
                    "faults.crash_prob=1.0", f"hydra.run.dir={tmp_path}/dead", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "fedplat: error: run stopped: round 1: all 2 clients failed in train")
    assert json.loads((tmp_path / "dead" / "summary.json").read_text())["status"] == "aborted"


def test_a_users_own_experiment_in_config_dir_is_what_hydra_runs(tmp_path, capsys,
                                                                 monkeypatch):
    """`--config-dir DIR experiment=NAME`: Hydra composes DIR/experiment/NAME.yaml (the config
    it would run, printed by --cfg job), as the pre-check does (tests/fedplat/config)."""
    from omegaconf import OmegaConf

    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "myconf" / "experiment"
    exp.mkdir(parents=True)
    (exp / "mine.yaml").write_text("# @package _global_\nnum_clients: 3\nnum_rounds: 1\n")
    main(["--config-dir", str(tmp_path / "myconf"), "experiment=mine", "--cfg", "job"])
    cfg = OmegaConf.create(capsys.readouterr().out)
    assert (cfg.num_clients, cfg.num_rounds) == (3, 1)


def test_help_opens_with_what_fedplat_does_examples_and_docs(capsys):
    """`fedplat --help`: a description, five example commands and the docs, then Hydra's
    groups."""
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    head, groups = out.split("== Configuration groups ==", 1)
    assert head.startswith("fedplat: federated-learning research on Flower")
    examples = head.split("Examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    commands = [line.split()[0] for line in examples if line.startswith("  fedplat")]
    assert len(commands) == 5 and set(commands) == {"fedplat"}
    assert "hydra/sweeper=optuna" in head and "hydra/launcher=joblib" in head
    assert "Docs: README.md and docs/" in head
    assert "strategy: " in groups and "fedavg" in groups

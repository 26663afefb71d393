"""Sweeps with Hydra's Optuna sweeper and joblib launcher: objective, sizing, best config."""

import json
import math
import re

import pytest
import yaml
from omegaconf import OmegaConf

from fedplat.errors import UserError
from fedplat.sweep import (
    BEST_CONFIG,
    BestTrial,
    best_run,
    check_direction,
    check_storage,
    direction_of,
    objective_key,
    objective_value,
    parallel_jobs,
    size_for_jobs,
)

SUMMARY = {"final": {"accuracy": 0.75, "loss": 0.5, "round": 3}, "status": "completed"}


def test_the_objective_is_a_dotted_summary_key():
    assert objective_value(SUMMARY, "final.accuracy") == 0.75
    assert objective_value(SUMMARY, "final.loss") == 0.5
    assert objective_value(SUMMARY, "best.accuracy") is None
    assert objective_value(SUMMARY, "status") is None
    assert objective_value({"final": {"accuracy": math.nan}}, "final.accuracy") is None
    assert objective_key({}) == "final.accuracy"
    assert objective_key({"objective": "best.accuracy"}) == "best.accuracy"
    with pytest.raises(UserError, match="objective=final accuracy is not a dotted"):
        objective_key({"objective": "final accuracy"})


def test_optuna_must_go_the_objectives_way():
    assert direction_of("final.accuracy") == "maximize" and direction_of("final.loss") == \
        "minimize"
    optuna = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    with pytest.raises(UserError, match=r"add hydra\.sweeper\.direction=maximize"):
        check_direction({"_target_": optuna, "direction": "minimize"}, "final.accuracy")
    check_direction({"_target_": optuna, "direction": "maximize"}, "final.accuracy")
    check_direction({"_target_": optuna, "direction": ["maximize", "minimize"]}, "final.loss")
    check_direction({"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
                    "final.accuracy")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # optuna 2's schema on SQLAlchemy 2
def test_an_optuna_study_in_a_database_is_refused_where_optuna_2_cannot_open_one(tmp_path):
    import optuna
    import sqlalchemy

    optuna_sweeper = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    url = f"sqlite:///{tmp_path}/study.db"
    check_storage({"_target_": optuna_sweeper, "storage": None})
    if int(sqlalchemy.__version__.split(".")[0]) < 2:
        check_storage({"_target_": optuna_sweeper, "storage": url})
        return
    with pytest.raises(UserError, match=r"leave the storage unset"):
        check_storage({"_target_": optuna_sweeper, "storage": url})
    with pytest.raises(AssertionError):  # what the refusal saves the user from
        optuna.create_study(storage=url)


def test_how_many_jobs_run_at_once():
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
              "n_jobs": -1}
    basic = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    optuna = {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
              "n_jobs": 3}
    assert parallel_jobs(basic, {}, 8) == 1
    assert parallel_jobs(joblib, {}, 8) == 8
    assert parallel_jobs({**joblib, "n_jobs": -2}, {}, 8) == 7
    assert parallel_jobs(joblib, optuna, 8) == 3  # the sweeper's batches of trials


def test_each_parallel_job_gets_its_share_of_the_cpus():
    from fedplat.config.compose import compose, prepare
    from tests.helpers import make_cfg

    cfg = OmegaConf.create({"simulation": {"backend": "ray", "num_cpus": 1,
                                           "ray_num_cpus": None, "ray_address": None}})
    assert size_for_jobs(cfg, 1, 8) is None and cfg.simulation.ray_num_cpus is None
    line = size_for_jobs(cfg, 4, 8)
    assert cfg.simulation.ray_num_cpus == 2
    assert line == "4 sweep jobs at once on 8 CPUs: this run gets 2 (simulation.ray_num_cpus=2)"
    kept = OmegaConf.create({"simulation": {"backend": "ray", "num_cpus": 1,
                                            "ray_num_cpus": 6, "ray_address": None}})
    size_for_jobs(kept, 4, 8)
    assert kept.simulation.ray_num_cpus == 6
    big = OmegaConf.create({"simulation": {"backend": "ray", "num_cpus": 4,
                                           "ray_num_cpus": None, "ray_address": None}})
    with pytest.raises(UserError,
                       match=r"simulation\.num_cpus=4 is more than the 2 CPUs each of 4"):
        size_for_jobs(big, 4, 8)
    inline = OmegaConf.create({"simulation": {"backend": "inline", "torch_threads": 8}})
    assert size_for_jobs(inline, 4, 8).endswith("(simulation.torch_threads 8 -> 2)")
    assert inline.simulation.torch_threads == 2
    # sized before the config is prepared: clients_per_node=auto follows the share
    cfg = compose(["num_clients=8"])
    size_for_jobs(cfg, 2, 8)
    prepare(cfg)
    alone = make_cfg("num_clients=8", "simulation.ray_num_cpus=4")
    assert cfg.simulation.clients_per_node == alone.simulation.clients_per_node


def _fake_run(root, name, summary, lr):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text(f"client:\n  lr: {lr}\n")
    (run / ".hydra" / "overrides.yaml").write_text(f"- client.lr={lr}\n")
    return run


def test_the_best_run_of_a_sweep_and_its_config(tmp_path):
    _fake_run(tmp_path, "0_a", {"final": {"accuracy": 0.5, "loss": 1.0}}, 0.1)
    _fake_run(tmp_path, "1_b", {"final": {"accuracy": 0.7, "loss": 2.0}}, 0.2)
    _fake_run(tmp_path, "2_c", {"final": {"accuracy": 0.7, "loss": 0.5}}, 0.3)
    _fake_run(tmp_path, "10_d", {"status": "aborted"}, 0.4)  # no objective: left out
    run, value, runs = best_run(tmp_path, "final.accuracy", "maximize")
    assert (run.name, value, len(runs)) == ("1_b", 0.7, 3)  # the first of a tie
    assert best_run(tmp_path, "final.loss", "minimize")[0].name == "2_c"
    assert best_run(tmp_path, "best.accuracy", "maximize") is None

    config = OmegaConf.create({"objective": "final.loss",
                               "hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {}}})
    BestTrial().on_multirun_end(config)
    text = (tmp_path / BEST_CONFIG).read_text()
    assert yaml.safe_load(text) == {"client": {"lr": 0.3}}
    assert text.startswith("# The best of 3 runs of this sweep by final.loss (minimize): 0.5\n")
    assert '# overrides: ["client.lr=0.3"]' in text


def test_an_optuna_search_with_two_parallel_joblib_jobs(tmp_path, monkeypatch, capsys):
    """2 trials of client.lr in 2 joblib processes, tiny inline runs: the objective each run
    returned is its final accuracy, Optuna's best is the best of them, its config is written,
    and each job was sized to its share of the CPUs."""
    from fedplat.cli import main

    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    main(["-m", "hydra/sweeper=optuna", "hydra/launcher=joblib", "hydra.sweeper.n_trials=2",
          "hydra.sweeper.n_jobs=2", "hydra.launcher.n_jobs=2", "hydra.sweeper.direction=maximize",
          "hydra.sweeper.sampler.seed=0", "client.lr=tag(log,interval(0.01,0.5))",
          "simulation.backend=inline", "simulation.torch_threads=64", "num_rounds=1",
          "num_clients=2", f"hydra.sweep.dir={sweep}"])
    runs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(runs) == 2
    accuracy = {r: json.loads((r / "summary.json").read_text())["final"]["accuracy"]
                for r in runs}
    lrs = {r: OmegaConf.load(r / "config.yaml").client.lr for r in runs}
    assert len(set(lrs.values())) == 2 and all(0.01 <= lr <= 0.5 for lr in lrs.values())
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    best = max(runs, key=lambda r: accuracy[r])
    assert results.best_value == pytest.approx(accuracy[best])
    assert results.best_params["client.lr"] == pytest.approx(lrs[best])
    best_config = OmegaConf.load(sweep / BEST_CONFIG)
    assert best_config.client.lr == pytest.approx(lrs[best])
    assert f"# run: {best}\n" in (sweep / BEST_CONFIG).read_text()
    for run in runs:  # two jobs at once: each got half of the CPUs (at least one)
        line = re.search(r"2 sweep jobs at once on (\d+) CPUs: this run gets (\d+) "
                         r"\(simulation.torch_threads 64 -> (\d+)\)", (run / "run.log").read_text())
        assert line is not None
        cpus, share, threads = map(int, line.groups())
        assert share == threads == max(1, cpus // 2)
        assert OmegaConf.load(run / "config.yaml").simulation.torch_threads == share


def test_a_sweep_against_its_objective_is_refused_before_it_starts(tmp_path, monkeypatch,
                                                                   capsys):
    from fedplat.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["-m", "hydra/sweeper=optuna", "client.lr=interval(0.01,0.5)",
              "simulation.backend=inline"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("fedplat: error: hydra/sweeper=optuna would minimize objective="
                   "final.accuracy; add hydra.sweeper.direction=maximize\n")
    with pytest.raises(SystemExit) as info:  # an interval is checked at both ends
        main(["-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
              "client.lr=interval(-1,0.5)"])
    assert info.value.code == 2
    assert "client.lr=-1.0" in capsys.readouterr().err
    assert not (tmp_path / "multirun").exists()


def test_a_grid_sweep_goes_on_past_a_stopped_run_and_names_its_best(tmp_path, monkeypatch,
                                                                     capsys):
    """Hydra's basic sweeper, in this process: the run whose clients all crash stops in one
    line, the other runs, and best_config.yaml is the config of the run that has an accuracy."""
    from fedplat.cli import main

    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "grid"
    main(["-m", "faults.crash_prob=1.0,0.0", "simulation.backend=inline", "num_rounds=1",
          "num_clients=2", f"hydra.sweep.dir={sweep}"])
    err = capsys.readouterr().err
    assert "fedplat: error: run stopped: round 1: all 2 clients failed in train" in err
    assert "the sweep goes on" in err
    status = {p.parent.name.split("_")[0]: json.loads(p.read_text())["status"]
              for p in sweep.glob("*/summary.json")}
    assert status == {"0": "aborted", "1": "completed"}
    best = OmegaConf.load(sweep / BEST_CONFIG)
    assert best.faults.crash_prob == 0.0
    assert (sweep / BEST_CONFIG).read_text().startswith(
        "# The best of 1 runs of this sweep by final.accuracy (maximize): ")

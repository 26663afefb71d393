"""The centralized scenario: its config hook (the strategy's two classes) and one tiny run."""

import pytest
from omegaconf import DictConfig, OmegaConf

from clients.fedavg import FedAvgClient
from fedplat.config.compose import compose, prepare
from fedplat.errors import UserError
from simulations.centralized import run, validate_config
from tests.helpers import make_cfg

TINY = ("simulation.backend=inline", "num_clients=4", "num_rounds=2")
HERE = "tests.simulations.test_centralized"


class PickyClient(FedAvgClient):
    """A client class with its own config check: it refuses client.batch_size=7."""

    @classmethod
    def validate_config(cls, cfg: DictConfig) -> None:
        if int(cfg.client.batch_size) == 7:
            raise UserError("client.batch_size=7: PickyClient refuses odd batches")


def _cfg(*overrides: str) -> DictConfig:
    return compose([*TINY, *overrides])


def test_a_default_strategy_passes_the_hook():
    cfg = prepare(_cfg())
    assert validate_config(cfg) is None
    assert cfg.strategy._target_ == "strategies.fedavg.FedAvg"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy._target_=strategies.nope.Nope"],
         "strategy._target_='strategies.nope.Nope': cannot import strategies.nope"),
        (["strategy.client_target=clients.fedavg.Nope"],
         "strategy.client_target='clients.fedavg.Nope': clients.fedavg has no attribute Nope"),
        # the strategy class's own hook
        (["strategy.server_lr=0"], "strategy.server_lr=0 is out of range"),
        # the client class's own hook
        ([f"strategy.client_target={HERE}.PickyClient", "client.batch_size=7"],
         "client.batch_size=7: PickyClient refuses odd batches"),
        (["split.label_ratio=0"], "split.label_ratio=0 leaves the clients no labels, and "
                                  "strategy 'fedavg' learns from labels only"),
        (["strategy=decavg"], "strategy=decavg runs with scenario=disaster, not "
                              "scenario=centralized: add scenario=disaster"),
    ],
)
def test_the_hook_refuses_a_bad_strategy_with_one_user_error(overrides, message):
    with pytest.raises(UserError) as info:
        prepare(_cfg(*overrides))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_strategy_without_its_classes_is_named():
    cfg = prepare(_cfg())
    OmegaConf.set_struct(cfg, False)
    del cfg.strategy["client_target"]
    with pytest.raises(UserError, match=r"^strategy 'fedavg' has no 'client_target' in its "
                                        r"config$"):
        validate_config(cfg)


def test_a_picky_client_with_a_good_value_passes():
    cfg = prepare(_cfg(f"strategy.client_target={HERE}.PickyClient", "client.batch_size=8"))
    assert cfg.strategy.client_target.endswith("PickyClient")


def test_run_trains_and_writes_the_run_directory(tmp_path):
    summary = run(make_cfg(*TINY), tmp_path)
    assert summary["status"] == "completed" and summary["rounds_completed"] == 2
    assert summary["strategy"] == "fedavg" and summary["num_clients"] == 4
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0


def test_run_records_its_data_in_summary_clients_and_console(tmp_path):
    """summary.json's `data`, clients.json's `data_usage` and the console's `data` line."""
    import json

    from fedplat.cli import format_summary

    summary = run(make_cfg(*TINY, "num_rounds=1", "partition=by_class", "num_clients=10",
                           "partition.val_fraction=0.1"), tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())["data"]
    assert data == summary["data"]
    assert data["loader"] == "fedplat.data.datasets.mnist1d" and not data["subset"]
    assert data["samples"] == {"train": 4000, "test": 1000}
    usage = data["partition"]
    # by_class keeps the dataset's test part and rounds each of the 2 holders' shares down:
    # 10 of the 1,000 test samples go to no client
    assert usage["test"] == {"total": 1000, "assigned": 990, "unassigned": 10}
    clients = json.loads((tmp_path / "clients.json").read_text())
    assert clients["data_usage"] == usage
    assert usage["test"]["assigned"] == sum(clients["num_test"]) == usage["clients"]["test"]
    assert usage["clients"]["train"] == sum(clients["num_train"])
    block = format_summary(summary, tmp_path).splitlines()
    assert f"  data          {data['line']}" in block
    assert data["line"].endswith("4,000 train + 1,000 test, 10 classes, 40 features; "
                                 "unassigned: 20 of 4,000 train, 10 of 1,000 test")


def test_own_npz_data_trains_and_startup_counts_the_data_loading(tmp_path, caplog):
    """dataset=npz through the partition machinery; the size is logged after loading, and
    startup_s includes the loading (`timed_load`)."""
    import logging

    import numpy as np

    from fedplat.data import federated

    rng = np.random.default_rng(0)
    y = np.arange(600) % 3
    x = rng.normal(size=(600, 8)).astype(np.float32) + y[:, None]  # learnable by class
    f = tmp_path / "own.npz"
    np.savez(f, x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
    cfg = make_cfg(*TINY, "num_rounds=1", "dataset=npz", f"dataset.path={f}",
                   "dataset.max_samples=400", "model=mlp")
    with caplog.at_level(logging.INFO, logger="fedplat"):
        summary = run(cfg, tmp_path / "run")
    data = summary["data"]
    assert data["samples"]["train"] + data["samples"]["test"] == 400 and data["subset"]
    assert "3 classes, 8 features" in data["line"] and "SUBSET, asked for" in data["line"]
    assert f"data  {data['line']}" in caplog.messages
    built = federated._BUILD_SECONDS[federated.data_key(cfg)]
    assert summary["startup_s"] >= built > 0
    assert summary["wall_time_s"] >= summary["startup_s"]
    assert summary["final"]["accuracy"] > 0.5  # 3 classes: chance is 1/3

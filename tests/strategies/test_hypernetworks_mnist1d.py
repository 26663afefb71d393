"""Small end-to-end runs of every hypernetwork method on MNIST-1D, 2 classes per client.

Ten clients, an MLP target (40-32-10), the inline backend and one torch thread; the papers'
algorithms with fewer rounds/inner steps and a 32-wide hypernetwork so each run takes seconds.
Personalised methods must beat FedAvg there; the runs also check what each method logs.
"""

from pathlib import Path

import pytest

from tests.helpers import run_inline

BASE = ("num_clients=10", "partition=pathological", "partition.classes_per_client=2",
        "model=mlp", "model.hidden=[32]", "simulation.torch_threads=1", "seed=0")
SMALL_HN = ("strategy.inner_steps=20", "strategy.hypernet.hidden=32",
            "strategy.hypernet.n_hidden=1")
RUNS = {
    "fedavg": ("strategy=fedavg", "num_rounds=10", "eval_every=10"),
    "pfedhn": ("strategy=pfedhn", "num_rounds=60", "eval_every=30", *SMALL_HN),
    "pfedhn_pc": ("strategy=pfedhn_pc", "num_rounds=40", "eval_every=40", *SMALL_HN),
    "hyperfl": ("strategy=hyperfl", "num_rounds=3", "eval_every=3", "strategy.local_epochs=2",
                "strategy.hypernet.hidden=32"),
    "pefll": ("strategy=pefll", "num_rounds=15", "eval_every=15", "strategy.lr=0.005",
              "strategy.unseen_fraction=0.2", *SMALL_HN),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, args in RUNS.items():
        out[name] = run_inline(Path(tmp_path_factory.mktemp(name)), *BASE, *args)
    return out


@pytest.mark.parametrize("method", ["pfedhn", "pfedhn_pc", "hyperfl", "pefll"])
def test_personalised_methods_beat_fedavg_on_two_classes_per_client(runs, method):
    fedavg = runs["fedavg"][0]["final"]["accuracy"]
    ours = runs[method][0]["final"]["accuracy"]
    assert ours > fedavg + 0.1, (method, ours, fedavg)


def test_hyperfl_uploads_dwarf_fedavgs_and_its_paper_metric_is_logged(runs):
    fedavg_rows, hyper_rows = runs["fedavg"][1], runs["hyperfl"][1]
    up_f = fedavg_rows[0]["per_client"]["0"]["bytes_up_train"]
    up_h = hyper_rows[0]["per_client"]["0"]["bytes_up_train"]
    # the hypernetwork (32-wide heads over the 1,642-weight body) vs the 1,642 + 330 target
    assert up_h > 10 * up_f
    assert hyper_rows[0]["bytes_down_train"] == hyper_rows[0]["bytes_up_train"]
    paper = runs["hyperfl"][0]["strategy_summary"]["paper"]
    assert paper["final"]["accuracy_mean"] == pytest.approx(
        runs["hyperfl"][0]["final"]["accuracy_mean"])
    assert {"acc_pre_mean", "acc_post_mean", "loss_a"} <= set(hyper_rows[-1])


def test_pfedhn_sends_one_target_down_and_its_delta_up(runs):
    summary, rows = runs["pfedhn"]
    assert all(r["num_train_clients"] == 1 for r in rows)
    assert rows[0]["bytes_down_train"] == rows[0]["bytes_up_train"] > 0
    best = summary["strategy_summary"]["paper"]["best"]
    assert {"seen_test_accuracy", "seen_val_accuracy", "client_min", "client_std"} <= set(best)


def test_pefll_reports_seen_and_unseen_accuracy(runs):
    summary, rows = runs["pefll"]
    paper = summary["strategy_summary"]["paper"]
    for key in ("seen_test_accuracy", "unseen_test_accuracy"):
        assert 0.5 < paper["best"][key] <= 1.0, key
    assert summary["strategy_summary"]["unseen_clients"] == [8, 9]
    assert rows[-1]["num_train_clients"] == 5 and rows[-1]["complete_clients"] == 5

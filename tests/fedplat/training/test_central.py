"""The central test set: what is held out, the global model's score on it, the run's RNG."""

import numpy as np
import pytest
import torch

from fedplat.data import build_federated
from fedplat.data.datasets import dataset_info, load_raw
from fedplat.data.federated import describe_data
from fedplat.data.sources import cache_dir
from fedplat.errors import UserError
from fedplat.models import build_model
from fedplat.training.central import CentralTest
from fedplat.training.loops import evaluate
from tests.helpers import make_cfg, run_inline

SMALL = ("num_clients=4", "dataset.num_samples=900", "model=mlp", "model.hidden=[16]")


def test_official_test_part_is_held_out_of_every_client(tmp_path):
    cfg = make_cfg(*SMALL, "partition=dirichlet", "split.central_test=true")
    fed = build_federated(cfg)
    raw = load_raw(cfg.dataset, cache_dir())
    assert len(fed.y) == len(raw.y_train) == 720  # the clients share the train part only
    idx = np.concatenate([np.concatenate(s) for s in fed.splits])
    assert idx.max() < 720
    x, y = fed.central_test()
    assert torch.equal(y, torch.from_numpy(raw.y_test)) and x.shape == (180, 40)
    entry = describe_data(fed, tmp_path)
    assert entry["samples"] == {"train": 720, "test": 0, "central_test": 180}
    assert "720 train + 0 test (+ 180 central test)" in entry["line"]
    off = build_federated(make_cfg(*SMALL, "partition=dirichlet"))
    assert off.central_test() is None and len(off.y) == 900


def test_central_test_is_refused_where_it_cannot_apply():
    with pytest.raises(UserError, match="has none"):
        build_federated(make_cfg("dataset=digits", "num_clients=3", "split.central_test=true"))
    with pytest.raises(UserError, match="keeps none"):
        make_cfg(*SMALL, "strategy=local", "split.central_test=true")
    with pytest.raises(UserError, match="must be true or false"):
        make_cfg(*SMALL, "split.central_test=3")


def test_score_equals_evaluate_and_leaves_the_rng_alone():
    cfg = make_cfg(*SMALL, "split.central_test=true")
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    central = CentralTest(cfg)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(1)
    model = build_model(cfg.model, dataset_info(cfg.dataset))
    got = central.evaluate(model.state_dict())
    want = evaluate(model, central.x, central.y, 256)
    assert got == {"central_accuracy": want.accuracy, "central_loss": want.loss}
    assert len(central) == 180


def test_every_round_records_central_metrics_only_when_asked(tmp_path):
    common = (*SMALL, "num_rounds=2", "strategy.fraction_train=0.5")
    _, on = run_inline(tmp_path / "on", *common, "split.central_test=true",
                       "strategy.fraction_evaluate=0")
    assert [r["round"] for r in on] == [1, 2]
    assert all(0 <= r["central_accuracy"] <= 1 and r["central_loss"] > 0 for r in on)
    assert on[0]["central_accuracy"] != on[1]["central_accuracy"] or \
        on[0]["central_loss"] != on[1]["central_loss"]
    _, hyper = run_inline(tmp_path / "hyper", *common, "num_rounds=1", "split.central_test=true",
                          "strategy=fedhyper", "strategy.variant=G+CL")
    assert all("central_accuracy" in r for r in hyper)  # the FedHyper family: its own state
    _, off = run_inline(tmp_path / "off", *common, "num_rounds=1")
    assert all("central_accuracy" not in r for r in off)

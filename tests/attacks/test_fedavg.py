"""FedAvg's threat model: the replay reproduces a real upload, and its mismatch on a tiny
linear model has the closed form of one SGD step from zero weights."""

import math
from pathlib import Path

import pytest
import torch
from flwr.app import ConfigRecord, MetricRecord, RecordDict
from torch.nn import functional as F

from attacks.fedavg import FedAvgThreat
from fedplat.core.records import to_record
from fedplat.data.datasets import dataset_info
from fedplat.errors import UserError
from fedplat.models import build_model
from fedplat.privacy.capture import Capture, CapturedExchange
from fedplat.privacy.threat import Knowledge
from tests.helpers import make_cfg


def test_fedavg_replay_matches_the_upload_with_momentum_and_weight_decay(
        tmp_path, captured_run, assert_exact):
    _cfg, cap, know, x, y1h, y = captured_run(
        tmp_path, "num_rounds=2", "capture.round=2", "client.local_epochs=3",
        "client.momentum=0.9", "client.weight_decay=0.01", "client.lr=0.1")
    problem = FedAvgThreat().build(cap, know, torch.Generator())
    assert problem.num_images == 3 and problem.unknowns == {}
    assert_exact(problem, x, y1h, {})
    # a wrong batch does not explain the upload
    assert float(problem.distance(torch.randn_like(x), y1h, {}).detach()) > 0.05
    # labels: the most negative bias evidence are the batch's labels
    assert set(torch.nonzero(problem.label_scores < 0).flatten().tolist()) >= set(y.tolist())


def test_fedavg_rejects_several_batches_per_epoch(tmp_path, captured_run):
    _, cap, know, *_ = captured_run(tmp_path, "num_rounds=1", "capture.round=1",
                                    "client.batch_size=2")
    with pytest.raises(UserError, match=r"capture\.num_samples <= 2"):
        FedAvgThreat().build(cap, know, torch.Generator())


def _linear_capture(lr: float, x: torch.Tensor, y: torch.Tensor) -> tuple[Knowledge, Capture]:
    """A softmax regression (model=mlp, no hidden layer) sent at zero weights; the reply is one
    SGD step of lr on the batch (x, y), computed with torch.optim.SGD."""
    cfg = make_cfg("dataset=digits", "num_clients=2", "model=mlp", "model.hidden=[]",
                   "client.local_epochs=1", "client.momentum=0.0", "client.weight_decay=0.0")
    info = dataset_info(cfg.dataset)
    model = build_model(cfg.model, info)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    w1 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sent = RecordDict({"arrays": to_record(w0), "config": ConfigRecord({"lr": lr})})
    reply = RecordDict({"arrays": to_record(w1), "metrics": MetricRecord({"num-examples": 1})})
    cap = Capture(Path("unused"), 1, 0, 1,
                  {"train": CapturedExchange("train", "train", "", sent, reply)})
    low, high = torch.full((1,), -3.0), torch.full((1,), 3.0)
    return Knowledge(cfg, info, low, high), cap


def test_fedavg_mismatch_of_a_softmax_regression_has_its_closed_form():
    """From W = 0, b = 0 one step moves [W | b] by -lr (p - e_y) [x^T, 1]: for a candidate x'
    with the true label, 1 - cos = 1 - (x.x' + 1) / (sqrt(|x|^2 + 1) sqrt(|x'|^2 + 1))."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, 1, 8, 8), generator=gen)
    y = torch.tensor([3])
    know, cap = _linear_capture(0.5, x, y)
    problem = FedAvgThreat().build(cap, know, torch.Generator())
    assert problem.num_images == 1
    y1h = F.one_hot(y, 10).float()
    assert float(problem.distance(x, y1h, {}).detach()) == pytest.approx(0.0, abs=1e-6)
    xc = torch.randn((1, 1, 8, 8), generator=gen)
    a, b = x.flatten(), xc.flatten()
    want = 1 - (float(a @ b) + 1) / math.sqrt((float(a @ a) + 1) * (float(b @ b) + 1))
    assert float(problem.distance(xc, y1h, {}).detach()) == pytest.approx(want, rel=1e-4)
    # l2: |lr (p - e_y)|^2 (|x - x'|^2) / (|lr (p - e_y)|^2 (|x|^2 + 1))
    want_l2 = float((a - b) @ (a - b)) / (float(a @ a) + 1)
    assert float(problem.distance(xc, y1h, {}, "l2").detach()) == pytest.approx(want_l2,
                                                                                 rel=1e-4)
    # labels: only the true class's bias goes up, so it is the only negative score
    assert torch.nonzero(problem.label_scores < 0).flatten().tolist() == [3]


def test_fedavg_refuses_a_non_sgd_client_optimizer():
    know, cap = _linear_capture(0.5, torch.zeros((1, 1, 8, 8)), torch.tensor([0]))
    adam = Knowledge(make_cfg("dataset=digits", "num_clients=2", "model=mlp",
                              "model.hidden=[]", "client.optimizer=adam"),
                     know.info, know.low, know.high)
    with pytest.raises(UserError, match=r"client\.optimizer=adam"):
        FedAvgThreat().build(cap, adam, torch.Generator())

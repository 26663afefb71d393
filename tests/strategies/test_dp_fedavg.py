"""DP-FedAvg on the wire: uploads are w_0 plus a clipped update; bad input."""

import math

import pytest
import torch

from fedplat.core.records import from_record
from fedplat.errors import UserError
from fedplat.privacy.capture import load_capture
from tests.helpers import make_cfg, run_inline

SMALL = ("strategy=dp_fedavg", "num_clients=3", "simulation.torch_threads=1", "model=mlp",
         "model.hidden=[8]")


def test_captured_upload_is_the_clipped_update(tmp_path):
    _, rows = run_inline(tmp_path, *SMALL, "num_rounds=1", "capture.round=1",
                         "strategy.clip=0.01", "strategy.noise_multiplier=0.0")
    cap = load_capture(tmp_path, 1, 0)
    w0, w1 = from_record(cap.main.sent["arrays"]), from_record(cap.main.reply["arrays"])
    norm = torch.sqrt(sum((w1[k] - w0[k]).double().pow(2).sum() for k in w0))
    assert float(norm) == pytest.approx(0.01, rel=1e-4)
    assert cap.main.reply["metrics"]["dp_update_norm"] > 0.01  # it was clipped
    assert math.isfinite(rows[-1]["test_accuracy"])


@pytest.mark.parametrize(("override", "match"), [("strategy.clip=0", "strategy.clip"),
                                                 ("strategy.noise_multiplier=-1",
                                                  "strategy.noise_multiplier")])
def test_bad_dp_config(override, match):
    with pytest.raises(UserError, match=match):
        make_cfg(*SMALL, override)

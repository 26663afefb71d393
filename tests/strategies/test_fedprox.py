"""FedProx server: FedAvg plus mu in the (shared) training message; mu=0 runs equal FedAvg."""

import pytest

from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from fedplat.recording.recorder import without_timing
from strategies.fedprox import FedProx
from tests.helpers import make_cfg, run_inline


def test_every_training_message_carries_mu_in_one_shared_record():
    s = FedProx(make_cfg("strategy=fedprox", "num_clients=3", "strategy.mu=0.3"))
    s.setup({c: ClientInfo(c, 10, 1, 2) for c in range(3)})
    payloads = s.configure_train(1, [0, 1, 2])
    assert payloads[0] is payloads[2]
    assert payloads[1]["config"]["mu"] == pytest.approx(0.3)


def test_a_negative_mu_is_one_line():
    with pytest.raises(UserError, match=r"strategy\.mu"):
        make_cfg("strategy=fedprox", "strategy.mu=-1")


def test_mu_zero_is_fedavg_exactly(tmp_path):
    common = ("num_clients=4", "num_rounds=2", "dataset.num_samples=800", "model=mlp")
    _, fedavg = run_inline(tmp_path / "a", "strategy=fedavg", *common)
    _, prox = run_inline(tmp_path / "b", "strategy=fedprox", "strategy.mu=0", *common)
    assert without_timing(prox) == without_timing(fedavg)

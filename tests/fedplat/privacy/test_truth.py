"""The scorer's side: a run's saved config, the public input bounds, and the true private batch
rebuilt from the seeded data pipeline."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fedplat.data import load_federated
from fedplat.errors import UserError
from fedplat.privacy.capture import Capture, attack_batch
from fedplat.privacy.truth import knowledge, run_config, true_batch
from fedplat.recording.recorder import CONFIG_FILE
from tests.helpers import make_cfg


@pytest.fixture(scope="module")
def cfg():
    return make_cfg("dataset=digits", "num_clients=3", "model=mlp", "model.hidden=[4]",
                    "seed=5")


def test_run_config_reads_the_saved_config_or_says_it_is_not_a_run(tmp_path, cfg):
    with pytest.raises(UserError, match="is not a fedplat run directory"):
        run_config(tmp_path)
    OmegaConf.save(cfg, tmp_path / CONFIG_FILE)
    back = run_config(tmp_path)
    assert back.seed == 5 and back.dataset.name == "digits" and back.num_clients == 3


def test_knowledge_bounds_are_the_pooled_datasets_extremes(cfg):
    know = knowledge(cfg)
    x = torch.from_numpy(load_federated(cfg).x)
    assert know.low.shape == know.high.shape == (1,)
    assert float(know.low[0]) == float(x.min()) and float(know.high[0]) == float(x.max())
    assert float(know.low[0]) < 0 < float(know.high[0])  # standardised pixels
    assert know.info.num_classes == 10 and know.cfg is cfg


def test_true_batch_is_the_seeded_attack_batch_of_the_client(cfg):
    data = load_federated(cfg).client(2)
    x, y = true_batch(cfg, Capture(Path("unused"), 4, 2, 3))
    idx = attack_batch(5, 4, 2, data.num_train, 3)
    assert len(idx) == 3
    assert torch.equal(x, data.x_train[idx]) and torch.equal(y, data.y_train[idx])
    # another round draws another batch; no attack batch means the whole training split
    x5, _ = true_batch(cfg, Capture(Path("unused"), 5, 2, 3))
    assert not torch.equal(x5, x)
    x_all, y_all = true_batch(cfg, Capture(Path("unused"), 4, 2, 0))
    assert torch.equal(x_all, data.x_train) and torch.equal(y_all, data.y_train)

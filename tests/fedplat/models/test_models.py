import pytest
import torch
from omegaconf import OmegaConf

from fedplat.data.datasets import DatasetInfo
from fedplat.errors import UserError
from fedplat.models import build_model

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


def test_mlp_40_100_100_10_parameter_count():
    model = build_model(OmegaConf.create({"name": "mlp", "hidden": [100, 100]}), VEC)
    assert sum(p.numel() for p in model.parameters()) == 40 * 100 + 100 + 100 * 100 + 100 + 1010


def test_incompatible_model_is_a_user_error():
    with pytest.raises(UserError, match="cannot take vector data"):
        build_model(OmegaConf.create({"name": "cnn", "channels": [4], "hidden": []}), VEC)

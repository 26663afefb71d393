"""Model registry: `model=<name>` builds a network shaped for the configured dataset."""

from __future__ import annotations

import math
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from fedplat.config import CONF_DIR, check_choice, check_float, check_int_list
from fedplat.data.datasets import DatasetInfo, dataset_info
from fedplat.errors import UserError
from fedplat.models.gnn import GCN
from fedplat.models.nets import CNN, CNN1D, MLP


def _mlp(m: DictConfig, info: DatasetInfo) -> nn.Module:
    return MLP(math.prod(info.input_shape), list(m.hidden), info.num_classes)


def _cnn(m: DictConfig, info: DatasetInfo) -> nn.Module:
    return CNN(info.input_shape, list(m.channels), list(m.hidden), info.num_classes)


def _cnn1d(m: DictConfig, info: DatasetInfo) -> nn.Module:
    return CNN1D(math.prod(info.input_shape), list(m.channels), list(m.hidden),
                 info.num_classes)


def _gcn(m: DictConfig, info: DatasetInfo, masked: bool) -> nn.Module:
    return GCN(math.prod(info.input_shape), list(m.hidden), info.num_classes,
               dropout=float(m.get("dropout", 0.5)), masked=masked,
               mask_init=str(m.get("mask_init", "ones")),
               prune_threshold=float(m.get("prune_threshold") or 0.0),
               classifier_init=str(m.get("classifier_init", "xavier")))


#: Registered models: builder and the dataset kinds it accepts.
MODELS: dict[str, tuple[Callable[[DictConfig, DatasetInfo], nn.Module], tuple[str, ...]]] = {
    "mlp": (_mlp, ("vector", "image")),
    "cnn": (_cnn, ("image",)),
    "cnn1d": (_cnn1d, ("vector",)),
    "gcn": (lambda m, info: _gcn(m, info, masked=False), ("graph",)),
    "masked_gcn": (lambda m, info: _gcn(m, info, masked=True), ("graph",)),
}


def resolve_auto_model(cfg: DictConfig) -> None:
    """Replace `model=auto` by the model file that suits the dataset (mlp, cnn or gcn), in place."""
    if cfg.model.get("name") != "auto":
        return
    kind = dataset_info(cfg.dataset).kind
    name = {"image": "cnn", "graph": "gcn"}.get(kind, "mlp")
    loaded = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    struct = OmegaConf.is_struct(cfg)
    OmegaConf.set_struct(cfg, False)
    cfg.model = loaded
    OmegaConf.set_struct(cfg, struct)


def build_model(model_cfg: DictConfig, info: DatasetInfo) -> nn.Module:
    """Instantiate the configured network for `info`'s input shape and classes."""
    name = str(model_cfg.name)
    if name not in MODELS:
        raise UserError(f"unknown model '{name}' (choose from: auto, {', '.join(MODELS)})")
    builder, kinds = MODELS[name]
    if info.kind not in kinds:
        raise UserError(f"model '{name}' cannot take {info.kind} data of dataset '{info.name}' "
                        f"(it accepts: {', '.join(kinds)}); choose another model")
    return builder(model_cfg, info)


def validate_model_config(cfg: DictConfig) -> None:
    """Check the model name, its sizes and that it fits the dataset."""
    name = str(cfg.model.get("name"))
    if name == "auto":
        return
    if name not in MODELS:
        raise UserError(f"unknown model '{name}' (choose from: auto, {', '.join(MODELS)})")
    for key in ("hidden", "channels"):
        if key in cfg.model:
            check_int_list(cfg, f"model.{key}", lo=1)
    if name in ("gcn", "masked_gcn"):
        check_int_list(cfg, "model.hidden", lo=1, allow_empty=False)
        check_float(cfg, "model.dropout", 0.0, 1.0, hi_open=True)
        check_choice(cfg, "model.classifier_init", ["xavier", "linear"])
    if name == "masked_gcn":
        check_choice(cfg, "model.mask_init", ["ones", "xavier"])
        check_float(cfg, "model.prune_threshold", 0.0)
    build_model(cfg.model, dataset_info(cfg.dataset))


__all__ = ["CNN", "CNN1D", "GCN", "MLP", "MODELS", "build_model", "resolve_auto_model",
           "validate_model_config"]

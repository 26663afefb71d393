"""Model registry: `model=<name>` builds a network shaped for the configured dataset."""

from __future__ import annotations

import math
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from fedplat.config.checks import check_choice, check_float, check_int, check_int_list
from fedplat.config.tree import CONF_DIR
from fedplat.data.datasets import DatasetInfo, dataset_info
from fedplat.errors import UserError
from fedplat.models.gnn import GCN
from fedplat.models.nets import CNN, CNN1D, MLP, CharLSTM, HyperFLCNN, LeNet


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


def _sized(build: Callable[[], nn.Module], name: str, info: DatasetInfo) -> nn.Module:
    try:
        return build()
    except ValueError as exc:
        raise UserError(f"model '{name}' cannot take the {'x'.join(map(str, info.input_shape))} "
                        f"inputs of dataset '{info.name}': {exc}; choose another model") from None


def _lenet(m: DictConfig, info: DatasetInfo) -> nn.Module:
    return _sized(lambda: LeNet(info.input_shape, info.num_classes, int(m.n_kernels)), "lenet",
                  info)


def _hyperfl_cnn(m: DictConfig, info: DatasetInfo) -> nn.Module:
    return _sized(lambda: HyperFLCNN(info.input_shape, info.num_classes), "hyperfl_cnn", info)


def _char_lstm(m: DictConfig, info: DatasetInfo) -> nn.Module:
    return CharLSTM(info.num_classes, int(m.embed), int(m.hidden_size), int(m.layers))


#: Registered models: builder and the dataset kinds it accepts.
MODELS: dict[str, tuple[Callable[[DictConfig, DatasetInfo], nn.Module], tuple[str, ...]]] = {
    "mlp": (_mlp, ("vector", "image")),
    "cnn": (_cnn, ("image",)),
    "cnn1d": (_cnn1d, ("vector",)),
    "gcn": (lambda m, info: _gcn(m, info, masked=False), ("graph",)),
    "masked_gcn": (lambda m, info: _gcn(m, info, masked=True), ("graph",)),
    "lenet": (_lenet, ("image",)),
    "hyperfl_cnn": (_hyperfl_cnn, ("image",)),
    "char_lstm": (_char_lstm, ("sequence",)),
}


def _model_file(name: str) -> DictConfig:
    """The model config `conf/model/<name>.yaml` (OSError when there is no such file)."""
    loaded = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    if not isinstance(loaded, DictConfig):
        raise UserError(f"conf/model/{name}.yaml must be a mapping of model keys")
    return loaded


def resolve_auto_model(cfg: DictConfig) -> None:
    """Replace `model=auto` by the model file that suits the dataset, in place.

    Default: cnn for images, gcn for graphs, char_lstm for character sequences, mlp for
    vectors. A strategy may name its own choice per data kind in `strategy.auto_model` (e.g.
    hypernetwork methods prefer the papers' small LeNet to the wider default CNN, whose
    hypernetwork would be 100x larger); it is used when it fits the dataset, else the default.
    """
    if cfg.model.get("name") != "auto":
        return
    info = dataset_info(cfg.dataset)
    name = {"image": "cnn", "graph": "gcn", "sequence": "char_lstm"}.get(info.kind, "mlp")
    preferred = (cfg.strategy.get("auto_model") or {}).get(info.kind) if "strategy" in cfg \
        else None
    if preferred:
        try:
            build_model(_model_file(str(preferred)), info)
            name = str(preferred)
        except (UserError, OSError):
            pass
    loaded = _model_file(name)
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
    if "n_kernels" in cfg.model:
        check_int(cfg, "model.n_kernels", lo=1)
    if name == "char_lstm":
        for key in ("embed", "hidden_size", "layers"):
            check_int(cfg, f"model.{key}", lo=1)
    build_model(cfg.model, dataset_info(cfg.dataset))


__all__ = ["CNN", "CNN1D", "GCN", "MLP", "MODELS", "CharLSTM", "HyperFLCNN", "LeNet", "build_model",
           "resolve_auto_model", "validate_model_config"]

"""HyperFL (Guo, Zeng et al., AAAI 2025): federated hypernetworks against gradient inversion.

Each client's network is a feature extractor f(.; theta_i) and a classifier head g(.; phi_i).
theta_i is never trained directly: a hypernetwork h(.; varphi) generates it from a private
client embedding v_i, theta_i = h(v_i; varphi). Only the hypernetwork varphi is shared: the
server averages the clients' copies (FedAvg, weighted by training-set size) and sends the
average back; v_i, phi_i and theta_i stay on the client (its ClientState). The price is the
message size: the hypernetwork is ~128x the target (14.9 M parameters for the Fashion-MNIST
CNN, 60 MB each way per client per round, against FedAvg's 0.47 MB).

Local training (clients/hyperfl.py) has two phases: the classifier alone for 1 epoch (lr 0.1,
momentum 0.5), then hypernetwork and embedding for 5 epochs (lr 0.02, momentum 0.5), clipped
separately to norm 50, weight decay 5e-4 on both; optimizers are re-created every round. All
clients start from the same v, varphi and phi (one model deep-copied in the released code).
"""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import ConfigRecord, RecordDict
from omegaconf import DictConfig
from torch import nn
from typing_extensions import override

from fedplat.config.checks import check_choice, check_float, check_int
from fedplat.core import ops, seeding
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.core.stage import Stage
from fedplat.core.strategy import ClientInfo, Strategy
from fedplat.data.datasets import dataset_info
from fedplat.errors import UserError
from fedplat.models import build_model
from fedplat.models.hypernet import (
    HyperNetwork,
    TargetSpec,
    check_size_limit,
    check_sizes,
    check_target,
    head_names,
)

#: Stream id (under seeding.INIT) of the one model all clients and the server start from.
HYPERFL_INIT = 201


def body_spec(target: nn.Module) -> TargetSpec:
    """The generated tensors: every target parameter except the classifier head."""
    return TargetSpec.of(target, head_names(target))


def initial_model(cfg: DictConfig, cid: int | None = None, with_hypernet: bool = True
                  ) -> tuple[nn.Module, torch.Tensor, HyperNetwork | None]:
    """The run's one initial model: target (for its head), embedding v, hypernetwork.

    Built in that order from one seeded stream, so the server's hypernetwork and every client's
    (v, head) come from the same construction (HyperFL deep-copies one model to all clients).
    Clients pass `cid` only with `strategy.per_client_init=true`, and skip the hypernetwork
    (`with_hypernet=False`: it is built last, so skipping it changes nothing before it).
    """
    p = cfg.strategy
    stream = (seeding.INIT, HYPERFL_INIT) + ((cid,) if cid is not None else ())
    seeding.seed_torch(int(cfg.seed), *stream)
    target = build_model(cfg.model, dataset_info(cfg.dataset))
    v = nn.Embedding(1, int(p.hypernet.embed_dim)).weight.detach()[0].clone()
    hnet = None
    if with_hypernet:
        hnet = HyperNetwork(body_spec(target), int(p.hypernet.embed_dim), int(p.hypernet.hidden),
                            int(p.hypernet.n_hidden), relu_out=True)
    return target, v, hnet


def hyperfl_aggregate(states: dict[int, ops.State], num_examples: dict[int, float]) -> ops.State:
    """varphi^{t+1} = sum_i n_i varphi_i / sum_i n_i over the clients that replied."""
    return ops.weighted_average(states, num_examples)


def local_config(p: DictConfig) -> ConfigRecord:
    """The two-phase local training settings sent with every training message."""
    return ConfigRecord({
        "lr": float(p.lr), "lr_classifier": float(p.lr_classifier),
        "momentum": float(p.momentum), "classifier_momentum": float(p.classifier_momentum),
        "weight_decay": float(p.weight_decay), "clip": float(p.clip),
        "local_epochs": int(p.local_epochs), "classifier_epochs": int(p.classifier_epochs),
        "batch_size": int(p.batch_size), "factored_heads": bool(p.factored_heads),
        "stale_eval": bool(p.stale_eval)})


class HyperFL(Strategy):
    """FedAvg over the hypernetwork only; everything else stays on the clients."""

    threat_model = "attacks.hyperfl.HyperFLThreat"
    #: Which extractor evaluation uses (`fedplat evaluate`); see `evaluation_problem`.
    evaluation_keys = ("stale_eval",)

    @classmethod
    @override
    def evaluation_problem(cls, saved: DictConfig, new: DictConfig) -> str | None:
        """stale_eval=true needs `last_theta`, which clients keep only when trained with it."""
        if bool(new.strategy.stale_eval) and not bool(saved.strategy.stale_eval):
            return ("strategy.stale_eval=true evaluates the extractor of the last training "
                    "pass, which clients keep only in runs trained with stale_eval=true; this "
                    "run was not")
        return None

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        hn = cfg.strategy.hypernet
        check_sizes(hn.embed_dim, hn.hidden, hn.n_hidden, "strategy.hypernet")
        check_int(cfg, "strategy.hypernet.max_params", lo=1)
        target = build_model(cfg.model, dataset_info(cfg.dataset))
        check_target(target, str(cfg.model.name), exclude_head=True)
        check_size_limit(body_spec(target), int(hn.embed_dim), int(hn.hidden), int(hn.n_hidden),
                         int(hn.max_params), str(cfg.model.name), "strategy.hypernet")
        for key in ("lr", "lr_classifier", "clip"):
            check_float(cfg, f"strategy.{key}", 0.0, lo_open=True)
        for key in ("momentum", "classifier_momentum"):
            check_float(cfg, f"strategy.{key}", 0.0, 1.0, hi_open=True)
        check_float(cfg, "strategy.weight_decay", 0.0)
        check_int(cfg, "strategy.local_epochs", lo=1)
        check_int(cfg, "strategy.classifier_epochs", lo=0)
        check_int(cfg, "strategy.batch_size", lo=1)
        check_choice(cfg, "strategy.eval_population", ["all", "sampled"])
        for key in ("per_client_init", "stale_eval", "factored_heads"):
            if not isinstance(cfg.strategy[key], bool):
                raise UserError(f"strategy.{key}={cfg.strategy[key]!r} must be true or false")

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        _, _, hnet = initial_model(self.cfg)
        assert hnet is not None
        self.global_state = ops.clone(hnet.state_dict())
        self.last_sampled: list[int] = []
        self.history: list[dict[str, Any]] = []

    @override
    def sample_train(self, server_round: int) -> list[int]:
        """HyperFL's rule: m = max(int(fraction * N), 1) clients without replacement."""
        ids = sorted(self.clients)
        m = max(int(float(self.params.fraction_train) * len(ids)), 1)
        if m >= len(ids):
            chosen = ids
        else:
            stream = seeding.rng(self.seed, seeding.SAMPLING, server_round, Stage.TRAIN.stream)
            draw = stream.choice(ids, m, replace=False)
            chosen = sorted(int(c) for c in draw)
        self.last_sampled = chosen
        return chosen

    @override
    def sample_evaluate(self, server_round: int) -> list[int]:
        if self.params.eval_population == "sampled":
            return list(self.last_sampled)
        return super().sample_evaluate(server_round)

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        content = RecordDict({"arrays": to_record(self.global_state),
                              "config": local_config(self.params)})
        return {cid: content for cid in cids}  # one record shared by all messages

    @override
    def aggregate_train(self, server_round: int, replies: dict[int, RecordDict],
                        failures: dict[int, str]) -> dict[str, float]:
        states = {cid: from_record(rd["arrays"]) for cid, rd in replies.items()}
        weights = {cid: metrics_of(rd)["num-examples"] for cid, rd in replies.items()}
        new = hyperfl_aggregate(states, weights)
        step = ops.norm(ops.subtract(new, self.global_state))
        self.global_state = new
        return {"update_norm": step}

    @override
    def configure_evaluate(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        content = RecordDict({"arrays": to_record(self.global_state),
                              "config": local_config(self.params)})
        return {cid: content for cid in cids}

    @override
    def aggregate_evaluate(self, server_round: int, replies: dict[int, RecordDict],
                           failures: dict[int, str]) -> dict[str, float]:
        accs = [metrics_of(rd).get("test_accuracy") for rd in replies.values()]
        accs = [a for a in accs if a is not None and a == a]
        if accs:
            self.history.append({"round": server_round, "accuracy_mean": sum(accs) / len(accs),
                                 "clients": len(accs)})
        return {}

    @override
    def summary(self) -> dict[str, Any]:
        if not self.history:
            return {}
        return {"paper": {
            "metric": "unweighted mean over clients of each client's test accuracy with its "
                      "own generated extractor and classifier (HyperFL Table 1: final round; "
                      "the ResNet script prints the best round: max_round)",
            "population": str(self.params.eval_population),
            "final": self.history[-1],
            "max_round": max(self.history, key=lambda r: r["accuracy_mean"])}}

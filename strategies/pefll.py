"""PeFLL (Scott, Zakerinia, Lampert, ICLR 2024): personalised FL by learning to learn.

The server learns an embedding network vnet (eta_v), which maps a client's labelled data to a
descriptor, and a hypernetwork hnet (eta_h), which maps the descriptor to the client's whole
model. There is no per-client table: a client that never trained gets its model from one
forward pass over its data, with no gradient step.

One round, for M sampled training clients (the paper's protocol, three round trips):
1. phase `embed`: server sends eta_v; the client draws one batch of 32 (kept in its state) and
   returns u_i = mean of vnet(x, y) over it.
2. main exchange: server forms v_i = (u_i - m) / s (m, s: two scalars frozen from the first
   descriptor of the run) and sends theta_i = hnet(v_i); the client runs K = 50 SGD steps
   (pFedHN's inner loop) and returns delta_i = theta_i - theta~_i. The server back-propagates it
   through hnet: g_h,i and du_i = (d theta_i / d u_i)^T delta_i.
3. phase `embedgrad`: server sends eta_v and du_i; the client re-runs vnet on the same batch
   and returns g_v,i = (d u_i / d eta_v)^T du_i. The server averages [g_h, g_v] over the
   clients that completed all three, clips the joint vector to norm 50 and takes an Adam step
   (lr 2e-4, no weight decay). Same maths as the released code's single joint VJP (tested).

Evaluation: phase `embed` to every client (descriptor from its whole training split), then
theta_i to each; classes absent from the client's descriptor data are masked. A share of the
clients (`unseen_fraction`, default 10%) never trains: they are only evaluated this way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import ConfigRecord, RecordDict
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F
from typing_extensions import override

from fedplat.config.checks import check_choice, check_float, check_int
from fedplat.core import seeding
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.core.stage import MAIN, Stage
from fedplat.core.strategy import ClientInfo, Strategy
from fedplat.data.datasets import DatasetInfo
from fedplat.errors import UserError
from fedplat.models.hypernet import HyperNetwork, vjp
from fedplat.models.nets import MLP, LeNet
from strategies.pfedhn import (
    MASK_MODES,
    EvalLog,
    apply_gradients,
    embed_dim_of,
    group_metrics,
    inner_config,
    seen_unseen,
    target_spec,
    validate_hypernet,
    validate_inner,
)

#: Stream ids (under seeding.INIT) of the embedding network and the hypernetwork.
VNET_INIT, HNET_INIT = 301, 302


# --------------------------------------------------------------------------------------------
# The embedding network and the descriptor


class EmbeddingNet(nn.Module):
    """vnet: (x, y) -> R^d per sample.

    `cnn` (images): PeFLL's `CNNEmbed`, the LeNet architecture on the image with C one-hot label
    planes appended (`use_labels`). `mlp` (vectors): x with the one-hot label appended, then
    dense 120-84-d. `label`: a linear map of the one-hot label only (`MLPEmbed`). Without
    labels (the paper's unlabelled clients) the input is the image alone.
    """

    def __init__(self, info: DatasetInfo, dim: int, kind: str, use_labels: bool) -> None:
        super().__init__()
        self.kind, self.use_labels, self.num_classes = kind, use_labels, info.num_classes
        extra = info.num_classes if use_labels else 0
        if kind == "cnn":
            c, h, w = info.input_shape
            self.net: nn.Module = LeNet((c + extra, h, w), dim)
        elif kind == "mlp":
            self.net = MLP(math.prod(info.input_shape) + extra, [120, 84], dim)
        else:
            self.net = nn.Linear(info.num_classes, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample embeddings (B, d)."""
        onehot = F.one_hot(y, self.num_classes).to(x.dtype)
        if self.kind == "label":
            return self.net(onehot)
        if not self.use_labels:
            return self.net(x)
        if self.kind == "cnn":
            planes = onehot[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            return self.net(torch.cat([x, planes], dim=1))
        return self.net(torch.cat([x.flatten(1), onehot], dim=1))


def embed_kind(cfg: DictConfig, info: DatasetInfo) -> str:
    """`strategy.embed_model`; auto = cnn for images of at least 16x16 pixels, else mlp."""
    kind = str(cfg.strategy.embed_model)
    if kind == "auto":
        big = info.kind == "image" and min(info.input_shape[1:]) >= 16
        return "cnn" if big else "mlp"
    return kind


def build_vnet(cfg: DictConfig, info: DatasetInfo) -> EmbeddingNet:
    """The configured embedding network, initialised from the run's seed."""
    seeding.seed_torch(int(cfg.seed), seeding.INIT, VNET_INIT)
    return EmbeddingNet(info, embed_dim_of(cfg), embed_kind(cfg, info),
                        bool(cfg.strategy.use_labels))


def descriptor(vnet: nn.Module, x: torch.Tensor, y: torch.Tensor, num_batches: int,
               divisor_quirk: bool = False) -> torch.Tensor:
    """The descriptor u = sum of vnet(x, y) over the descriptor data / count.

    count = number of samples (the paper's mean); `divisor_quirk`: 2 x number of batches (the
    released code divides by len((x, y)) per batch), a constant factor for full batches.
    """
    total = vnet(x, y).sum(0)
    return total / (2 * num_batches if divisor_quirk else len(y))


def descriptor_indices(n: int, batch_size: int, num_batches: int,
                       generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """Indices of the descriptor data and its number of batches.

    The first `num_batches` full batches (-1: all) of a shuffled loader with drop_last, as in
    the released code; a client with fewer samples than one batch uses all it has (the code
    would divide by zero).
    """
    perm = torch.randperm(n, generator=generator)
    full = n // batch_size
    if full == 0:
        return perm, 1
    nb = full if num_batches == -1 else min(num_batches, full)
    return perm[:nb * batch_size], nb


def normalise(u: torch.Tensor, m: float | None, s: float | None, mode: str) -> torch.Tensor:
    """Normalised descriptor (u - m) / s with the frozen scalars, or u itself (`none`)."""
    if mode == "none" or m is None or s is None:
        return u
    return (u - m) / s


def server_gradients(hnet: HyperNetwork, u: torch.Tensor, delta: Mapping[str, torch.Tensor],
                     m: float | None, s: float | None, mode: str
                     ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Phase 2 on the server: (d theta / d eta_h)^T delta and du = (d theta / d u)^T delta."""
    leaf = u.detach().clone().requires_grad_(True)
    theta = hnet(normalise(leaf, m, s, mode))
    grads = vjp(theta, delta, [*hnet.parameters(), leaf])
    return grads[:-1], grads[-1]


def client_vnet_gradient(vnet: nn.Module, x: torch.Tensor, y: torch.Tensor, num_batches: int,
                         du: torch.Tensor, divisor_quirk: bool = False) -> list[torch.Tensor]:
    """Phase 3 on the client: (d u / d eta_v)^T du on the same descriptor data."""
    u = descriptor(vnet, x, y, num_batches, divisor_quirk)
    return vjp({"u": u}, {"u": du}, list(vnet.parameters()))


def joint_step(params: list[torch.Tensor], grads: list[torch.Tensor],
               optimizer: torch.optim.Optimizer, clip: float,
               l2: list[float] | None = None) -> float:
    """Add l2 * param (the paper's regularisers), clip jointly, step; return the norm before."""
    if l2 is not None:
        grads = [g + c * p.detach() if c else g for g, p, c in zip(grads, params, l2)]
    return apply_gradients(params, grads, optimizer, clip)


# --------------------------------------------------------------------------------------------
# The strategy


class PeFLL(Strategy):
    """Embedding network and hypernetwork on the server; three exchanges per round."""

    #: The absent-class mask applies to evaluation only (`fedplat evaluate`).
    evaluation_keys = ("mask_absent",)

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        validate_hypernet(cfg, exclude_head=False)
        validate_inner(cfg)
        n = int(cfg.num_clients)
        frac = check_float(cfg, "strategy.unseen_fraction", 0.0, 1.0, hi_open=True)
        seen, _ = seen_unseen(n, float(frac or 0.0))
        if not seen:
            raise UserError(f"strategy.unseen_fraction={frac} leaves no training client of "
                            f"{n}; lower it")
        check_int(cfg, "strategy.clients_per_round", lo=1, hi=len(seen))
        check_choice(cfg, "strategy.optimizer", ["adam", "sgd"])
        check_float(cfg, "strategy.lr", 0.0, lo_open=True)
        check_float(cfg, "strategy.embed_lr", 0.0, lo_open=True, allow_none=True)
        check_float(cfg, "strategy.momentum", 0.0, 1.0, hi_open=True)
        check_float(cfg, "strategy.weight_decay", 0.0)
        check_float(cfg, "strategy.clip", 0.0, lo_open=True)
        check_float(cfg, "strategy.l2_h", 0.0)
        check_float(cfg, "strategy.l2_v", 0.0)
        check_int(cfg, "strategy.embed_batches", lo=-1)
        if cfg.strategy.embed_batches == 0:
            raise UserError("strategy.embed_batches=0 gives an empty descriptor; use >= 1 or "
                            "-1 (all batches)")
        check_choice(cfg, "strategy.embed_model", ["auto", "cnn", "mlp", "label"])
        check_choice(cfg, "strategy.descriptor_norm", ["frozen_scalar", "none"])
        for key in ("use_labels", "divisor_quirk"):
            if not isinstance(cfg.strategy[key], bool):
                raise UserError(f"strategy.{key}={cfg.strategy[key]!r} must be true or false")
        from fedplat.data.datasets import dataset_info

        info = dataset_info(cfg.dataset)
        kind = embed_kind(cfg, info)
        if kind == "cnn" and info.kind != "image":
            raise UserError(f"strategy.embed_model=cnn needs image data; dataset "
                            f"'{info.name}' has vectors (use mlp or auto)")
        if kind == "label" and not cfg.strategy.use_labels:
            raise UserError("strategy.embed_model=label embeds labels only and cannot run with "
                            "strategy.use_labels=false")
        if kind == "cnn":
            try:
                build_vnet(cfg, info)
            except ValueError as exc:
                raise UserError(f"strategy.embed_model=cnn cannot take dataset '{info.name}': "
                                f"{exc}; use embed_model=mlp") from None

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        p = self.params
        _, spec = target_spec(self.cfg, exclude_head=False)
        self.vnet = build_vnet(self.cfg, self.dataset)
        seeding.seed_torch(self.seed, seeding.INIT, HNET_INIT)
        self.hnet = HyperNetwork(spec, embed_dim_of(self.cfg), int(p.hypernet.hidden),
                                 int(p.hypernet.n_hidden))
        self.params_v = list(self.vnet.parameters())
        self.params_h = list(self.hnet.parameters())
        lr = float(p.lr)
        embed_lr = lr if p.embed_lr is None else float(p.embed_lr)
        if p.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                [{"params": self.params_h}, {"params": self.params_v, "lr": embed_lr}], lr=lr)
        else:
            self.optimizer = torch.optim.SGD(
                [{"params": self.params_h}, {"params": self.params_v, "lr": embed_lr}], lr=lr,
                momentum=float(p.momentum), weight_decay=float(p.weight_decay))
        self.seen, self.unseen = seen_unseen(len(clients), float(p.unseen_fraction))
        self.m: float | None = None
        self.s: float | None = None
        self.u: dict[int, torch.Tensor] = {}
        self.g_h: dict[int, list[torch.Tensor]] = {}
        self.du: dict[int, torch.Tensor] = {}
        self.eval_u: dict[int, torch.Tensor] = {}
        self.log = EvalLog()

    # -- helpers ------------------------------------------------------------------------------

    def _vnet_payload(self) -> RecordDict:
        p = self.params
        return RecordDict({
            "vnet": to_record(self.vnet.state_dict()),
            "config": ConfigRecord({"batch_size": int(p.batch_size),
                                    "embed_batches": int(p.embed_batches),
                                    "divisor_quirk": bool(p.divisor_quirk)})})

    def _freeze_norm(self, u: Mapping[int, torch.Tensor]) -> None:
        """(m, s) = mean and unbiased std of the run's first descriptor, then frozen."""
        if self.m is None and u:
            first = u[min(u)]
            self.m, self.s = float(first.mean()), float(first.std())

    @torch.no_grad()
    def generate(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generated weights hnet((u - m) / s), detached."""
        v = normalise(u, self.m, self.s, str(self.params.descriptor_norm))
        return {k: t.detach() for k, t in self.hnet(v).items()}

    @torch.no_grad()
    def generate_many(self, descriptors: Mapping[int, torch.Tensor]
                      ) -> dict[int, dict[str, torch.Tensor]]:
        """`generate` for several clients in one batched hypernetwork pass."""
        if not descriptors:
            return {}
        cids = sorted(descriptors)
        v = normalise(torch.stack([descriptors[c] for c in cids]), self.m, self.s,
                      str(self.params.descriptor_norm))
        stacked = self.hnet.forward_many(v)
        return {cid: {k: t[i] for k, t in stacked.items()} for i, cid in enumerate(cids)}

    # -- rounds -------------------------------------------------------------------------------

    @override
    def sample_train(self, server_round: int) -> list[int]:
        k = int(self.params.clients_per_round)
        chosen = seeding.rng(self.seed, seeding.SAMPLING, server_round, Stage.TRAIN.stream).choice(
            self.seen, k, replace=False)
        return sorted(int(c) for c in chosen)

    @override
    def exchanges(self, stage: Stage, server_round: int) -> tuple[str, ...]:
        return ("embed", MAIN, "embedgrad") if stage == Stage.TRAIN else ("embed", MAIN)

    @override
    def configure_exchange(self, stage: Stage, exchange: str, server_round: int,
                           cids: list[int]) -> dict[int, RecordDict]:
        if exchange == "embed":
            content = self._vnet_payload()
            return {cid: content for cid in cids}
        # embedgrad: eta_v again (the client recomputes vnet on its stored batch) and du_i
        return {cid: RecordDict({**self._vnet_payload(),
                                 "du": to_record({"u": self.du[cid]})})
                for cid in sorted(self.du)}

    @override
    def aggregate_exchange(self, stage: Stage, exchange: str, server_round: int,
                           replies: dict[int, RecordDict],
                           failures: dict[int, str]) -> dict[str, Any]:
        if exchange == "embed":
            u = {cid: from_record(rd["arrays"])["u"] for cid, rd in sorted(replies.items())}
            self._freeze_norm(u)
            if stage == Stage.TRAIN:
                self.u, self.g_h, self.du = u, {}, {}
            else:
                self.eval_u = u
            return {}
        # embedgrad: the round's update from the clients that completed all three phases
        complete = sorted(c for c in replies if c in self.g_h)
        if not complete:
            return {"complete_clients": 0.0}
        g_v = {c: [from_record(replies[c]["arrays"])[n] for n, _ in
                   self.vnet.named_parameters()] for c in complete}
        grads_h = [sum(self.g_h[c][i] for c in complete) / len(complete)
                   for i in range(len(self.params_h))]
        grads_v = [sum(g_v[c][i] for c in complete) / len(complete)
                   for i in range(len(self.params_v))]
        p = self.params
        l2 = [float(p.l2_h)] * len(self.params_h) + [float(p.l2_v)] * len(self.params_v)
        norm = joint_step(self.params_h + self.params_v, grads_h + grads_v, self.optimizer,
                          float(p.clip), l2)
        return {"grad_norm": norm, "complete_clients": float(len(complete))}

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        cfg = inner_config(self.params)
        thetas = self.generate_many({c: self.u[c] for c in cids if c in self.u})
        return {cid: RecordDict({"arrays": to_record(theta), "config": cfg})
                for cid, theta in thetas.items()}

    @override
    def aggregate_train(self, server_round: int, replies: dict[int, RecordDict],
                        failures: dict[int, str]) -> dict[str, float]:
        for cid, rd in sorted(replies.items()):
            delta = from_record(rd["arrays"])
            self.g_h[cid], self.du[cid] = server_gradients(
                self.hnet, self.u[cid], delta, self.m, self.s, str(self.params.descriptor_norm))
        return {}

    @override
    def configure_evaluate(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        mode = ConfigRecord({"mask_absent": str(self.params.mask_absent)})
        thetas = self.generate_many({c: self.eval_u[c] for c in cids if c in self.eval_u})
        return {cid: RecordDict({"arrays": to_record(theta), "config": mode})
                for cid, theta in thetas.items()}

    @override
    def aggregate_evaluate(self, server_round: int, replies: dict[int, RecordDict],
                           failures: dict[int, str]) -> dict[str, float]:
        per_client = {cid: metrics_of(rd) for cid, rd in replies.items()}
        metrics = group_metrics(per_client, {"seen": self.seen, "unseen": self.unseen})
        self.log.add(server_round, metrics, {c: m["test_accuracy"] for c, m in per_client.items()
                                    if c in self.seen and "test_accuracy" in m})
        return metrics

    @override
    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"paper": self.log.summary(
            "seen_val_accuracy",
            "pooled test accuracy (sum correct / sum samples) of the training clients at the "
            "evaluation with the highest pooled validation accuracy of the training clients; "
            "unseen clients (never trained, model from one descriptor pass) at the same "
            "evaluation (PeFLL)")}
        out["descriptor_norm"] = {"m": self.m, "s": self.s}
        out["unseen_clients"] = self.unseen
        return out


__all__ = ["MASK_MODES", "EmbeddingNet", "PeFLL", "build_vnet", "client_vnet_gradient",
           "descriptor", "descriptor_indices", "joint_step", "normalise", "server_gradients"]

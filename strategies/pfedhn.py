"""pFedHN (Shamsian et al., ICML 2021): a server-side hypernetwork with per-client embeddings.

The server owns phi = {embedding table E (N x d), hypernetwork h}. Each round it samples one
client i (`clients_per_round`), sends theta_i = h(E[i]); the client runs K local SGD steps and
returns delta_i = theta_i - theta~_i (raw, not divided by the lr). The server treats delta_i as
dL/dtheta_i and back-propagates it through h: g = (d theta_i / d phi)^T delta_i (one
vector-Jacobian product over every parameter, the whole table included), clips g to norm 50
and takes an SGD step (momentum 0.9, weight decay 1e-3 on all of phi, so every row of E decays
every step, not only row i). Personalisation comes from E, sharing from h; the hypernetwork
never leaves the server, only theta_i (the target's size) crosses the network.

Novel clients (paper section 5, not in the released code): with `novel_fraction > 0` the last
clients never train; in the last `novel_rounds` rounds phi is frozen and each round one novel
client's embedding row alone is fitted by the same protocol (plain SGD at `novel_lr`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, RecordDict
from omegaconf import DictConfig
from torch import nn
from typing_extensions import override

from fedplat.config.checks import check_choice, check_float, check_int
from fedplat.core import seeding
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.core.stage import Stage
from fedplat.core.strategy import ClientInfo, Strategy
from fedplat.data.datasets import dataset_info
from fedplat.errors import UserError
from fedplat.models import build_model
from fedplat.models.hypernet import (
    HyperNetwork,
    TargetSpec,
    auto_embed_dim,
    check_size_limit,
    check_sizes,
    check_target,
    clip_by_global_norm,
    head_names,
    vjp,
)

#: Stream id (under seeding.INIT) of the server's hypernetwork initialisation.
HYPERNET_INIT = 101

MASK_MODES = ("none", "neg_inf", "multiply")


# --------------------------------------------------------------------------------------------
# The math, as pure functions


class EmbeddedHyperNetwork(nn.Module):
    """pFedHN's `CNNHyper`: an embedding table (N x d, N(0, 1) init) and a hypernetwork."""

    def __init__(self, num_clients: int, spec: TargetSpec, embed_dim: int, hidden: int,
                 n_hidden: int) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(num_clients, embed_dim)
        self.hnet = HyperNetwork(spec, embed_dim, hidden, n_hidden)

    def forward(self, cid: int) -> dict[str, torch.Tensor]:
        """theta_cid = h(E[cid])."""
        return self.hnet(self.embeddings.weight[cid])

    def forward_many(self, cids: list[int]) -> dict[str, torch.Tensor]:
        """Targets of several clients in one batched pass: {name: (len(cids), *shape)}."""
        return self.hnet.forward_many(self.embeddings.weight[cids])


def server_optimizer(model: EmbeddedHyperNetwork, kind: str, lr: float, embed_lr: float | None,
                     momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """The server optimizer: SGD with an `embed_lr` group for E, or Adam (no decay)."""
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(
        [{"params": list(model.hnet.parameters())},
         {"params": list(model.embeddings.parameters()),
          "lr": lr if embed_lr is None else embed_lr}],
        lr=lr, momentum=momentum, weight_decay=weight_decay)


def hypernet_gradients(generate: Callable[[int], Mapping[str, torch.Tensor]],
                       deltas: Mapping[int, Mapping[str, torch.Tensor]],
                       params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Mean over clients of (d theta_i / d params)^T delta_i, theta_i = generate(i)."""
    total: list[torch.Tensor] | None = None
    for cid in sorted(deltas):  # sorted: float sums independent of reply order
        grads = vjp(generate(cid), deltas[cid], params)
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
    assert total is not None
    return [g / len(deltas) for g in total]


def apply_gradients(params: list[torch.Tensor], grads: list[torch.Tensor],
                    optimizer: torch.optim.Optimizer, clip: float) -> float:
    """Clip `grads` jointly to `clip`, install them as .grad and step; return the norm before."""
    clipped, norm = clip_by_global_norm(grads, clip)
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(params, clipped):
        p.grad = g.detach().clone()
    optimizer.step()
    return norm


def pfedhn_step(model: EmbeddedHyperNetwork, optimizer: torch.optim.Optimizer,
                deltas: Mapping[int, Mapping[str, torch.Tensor]], clip: float) -> float:
    """One hypernetwork step from the clients' delta-theta (averaged when several)."""
    params = list(model.parameters())
    grads = hypernet_gradients(model, deltas, params)
    return apply_gradients(params, grads, optimizer, clip)


def novel_embedding_step(model: EmbeddedHyperNetwork, cid: int,
                         delta: Mapping[str, torch.Tensor], lr: float, clip: float) -> float:
    """Fit only E[cid] (phi frozen): plain SGD on the clipped VJP; return the norm before."""
    grad = vjp(model(cid), delta, [model.embeddings.weight])[0][cid]
    (clipped,), norm = clip_by_global_norm([grad], clip)
    with torch.no_grad():
        model.embeddings.weight[cid] -= lr * clipped
    return norm


def group_metrics(per_client: Mapping[int, Mapping[str, float]],
                  groups: Mapping[str, Iterable[int]]) -> dict[str, float]:
    """Pooled (sample-weighted) and client-mean test/val accuracy per client group."""
    out: dict[str, float] = {}
    for group, members in groups.items():
        ids = [c for c in sorted(members) if c in per_client]
        for split, count in (("test", "num-examples"), ("val", "num-val-examples")):
            key = f"{split}_accuracy"
            rows = [(per_client[c][key], per_client[c].get(count, 0.0)) for c in ids
                    if key in per_client[c] and per_client[c][key] == per_client[c][key]]
            if not rows:
                continue
            total = sum(n for _, n in rows)
            out[f"{group}_{key}"] = sum(a * n for a, n in rows) / total if total else math.nan
            out[f"{group}_{key}_mean"] = sum(a for a, _ in rows) / len(rows)
    return out


class EvalLog:
    """Per-evaluation history and the papers' model selection (best validation round)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, server_round: int, metrics: Mapping[str, float],
            client_test: Mapping[int, float]) -> None:
        """Record one evaluation."""
        accs = list(client_test.values())
        self.rows.append({"round": server_round, **metrics,
                          "client_min": min(accs) if accs else None,
                          "client_max": max(accs) if accs else None,
                          "client_std": float(np.std(accs)) if accs else None})

    def select(self, key: str) -> dict[str, Any] | None:
        """The row with the highest `key` (first on ties: strict improvement), or None."""
        rows = [r for r in self.rows if isinstance(r.get(key), float | int)
                and r[key] == r[key]]
        return max(rows, key=lambda r: r[key]) if rows else None

    def summary(self, select_key: str, describe: str) -> dict[str, Any]:
        """Final row and the row selected by `select_key`, each with all recorded metrics."""
        if not self.rows:
            return {}
        best = self.select(select_key)
        return {"metric": describe, "selected_by": select_key,
                "best": best, "final": self.rows[-1]}


def seen_unseen(num_clients: int, unseen_fraction: float) -> tuple[list[int], list[int]]:
    """Training ('seen') clients first, the last round(f * N) clients unseen (PeFLL's layout)."""
    n_unseen = round(unseen_fraction * num_clients)
    return list(range(num_clients - n_unseen)), list(range(num_clients - n_unseen, num_clients))


def target_spec(cfg: DictConfig, exclude_head: bool) -> tuple[nn.Module, TargetSpec]:
    """The configured target network and the tensors the hypernetwork generates."""
    target = build_model(cfg.model, dataset_info(cfg.dataset))
    check_target(target, str(cfg.model.name), exclude_head=exclude_head)
    return target, TargetSpec.of(target, head_names(target) if exclude_head else ())


def embed_dim_of(cfg: DictConfig) -> int:
    """`strategy.hypernet.embed_dim`, with -1 meaning int(1 + N/4)."""
    d = int(cfg.strategy.hypernet.embed_dim)
    return auto_embed_dim(int(cfg.num_clients)) if d == -1 else d


def validate_hypernet(cfg: DictConfig, exclude_head: bool, allow_auto_dim: bool = True) -> None:
    """Sizes > 0 (embed_dim may be -1 = auto), and a target the hypernetwork can generate."""
    hn = cfg.strategy.hypernet
    d = hn.embed_dim
    if allow_auto_dim and d == -1:
        d = auto_embed_dim(int(cfg.num_clients))
    elif isinstance(d, int) and not isinstance(d, bool) and d < 1:
        auto = " or -1 (auto: int(1 + N/4))" if allow_auto_dim else ""
        raise UserError(f"strategy.hypernet.embed_dim={d} must be an integer >= 1{auto}")
    check_sizes(d, hn.hidden, hn.n_hidden, "strategy.hypernet")
    check_int(cfg, "strategy.hypernet.max_params", lo=1)
    _, spec = target_spec(cfg, exclude_head)
    check_size_limit(spec, d, int(hn.hidden), int(hn.n_hidden), int(hn.max_params),
                     str(cfg.model.name), "strategy.hypernet")


def validate_inner(cfg: DictConfig) -> None:
    """The client's inner loop settings (K steps of SGD with clipping)."""
    check_int(cfg, "strategy.inner_steps", lo=1)
    check_int(cfg, "strategy.batch_size", lo=1)
    check_float(cfg, "strategy.inner_lr", 0.0, lo_open=True)
    check_float(cfg, "strategy.inner_momentum", 0.0, 1.0, hi_open=True)
    check_float(cfg, "strategy.inner_weight_decay", 0.0)
    check_float(cfg, "strategy.inner_clip", 0.0, lo_open=True)
    check_choice(cfg, "strategy.batch_sampling", ["fresh", "epoch"])
    check_choice(cfg, "strategy.mask_absent", MASK_MODES)


def inner_config(params: DictConfig) -> ConfigRecord:
    """What a client needs for its inner loop (sent with every training message)."""
    return ConfigRecord({
        "inner_steps": int(params.inner_steps), "lr": float(params.inner_lr),
        "momentum": float(params.inner_momentum),
        "weight_decay": float(params.inner_weight_decay),
        "batch_size": int(params.batch_size), "clip": float(params.inner_clip),
        "batch_sampling": str(params.batch_sampling)})


# --------------------------------------------------------------------------------------------
# The strategy


class PFedHN(Strategy):
    """Hypernetwork and embedding table on the server; theta_i down, delta-theta up."""

    #: pFedHN-PC sets this: the target's head is private to each client, not generated.
    personal_head = False
    #: Also pFedHN-PC's: its private head is an unknown of the same threat model.
    threat_model = "attacks.pfedhn.PFedHNThreat"
    #: The absent-class mask applies to evaluation only (`fedplat evaluate`).
    evaluation_keys = ("mask_absent",)

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        validate_hypernet(cfg, cls.personal_head)
        validate_inner(cfg)
        n = int(cfg.num_clients)
        check_choice(cfg, "strategy.optimizer", ["sgd", "adam"])
        check_float(cfg, "strategy.lr", 0.0, lo_open=True)
        check_float(cfg, "strategy.embed_lr", 0.0, lo_open=True, allow_none=True)
        check_float(cfg, "strategy.momentum", 0.0, 1.0, hi_open=True)
        check_float(cfg, "strategy.weight_decay", 0.0)
        check_float(cfg, "strategy.clip", 0.0, lo_open=True)
        frac = check_float(cfg, "strategy.novel_fraction", 0.0, 1.0, hi_open=True)
        seen, novel = seen_unseen(n, float(frac or 0.0))
        if not seen:
            raise UserError(f"strategy.novel_fraction={frac} leaves no training client of "
                            f"{n}; lower it")
        check_int(cfg, "strategy.clients_per_round", lo=1, hi=len(seen))
        rounds = check_int(cfg, "strategy.novel_rounds", lo=0, hi=int(cfg.num_rounds) - 1)
        if novel and rounds == 0:
            raise UserError(f"strategy.novel_fraction={frac} makes {len(novel)} novel clients "
                            "but strategy.novel_rounds=0 leaves their embeddings untrained; "
                            "set strategy.novel_rounds >= 1")
        check_float(cfg, "strategy.novel_lr", 0.0, lo_open=True)

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        p = self.params
        self.target, spec = target_spec(self.cfg, self.personal_head)
        seeding.seed_torch(self.seed, seeding.INIT, HYPERNET_INIT)
        self.model = EmbeddedHyperNetwork(len(clients), spec, embed_dim_of(self.cfg),
                                          int(p.hypernet.hidden), int(p.hypernet.n_hidden))
        self.optimizer = server_optimizer(self.model, str(p.optimizer), float(p.lr),
                                          None if p.embed_lr is None else float(p.embed_lr),
                                          float(p.momentum), float(p.weight_decay))
        self.seen, self.novel = seen_unseen(len(clients), float(p.novel_fraction))
        self.novel_start = int(self.cfg.num_rounds) - int(p.novel_rounds) + 1
        self.log = EvalLog()

    def is_novel_round(self, server_round: int) -> bool:
        """True in the last `novel_rounds` rounds (when there are novel clients)."""
        return bool(self.novel) and server_round >= self.novel_start

    @override
    def sample_train(self, server_round: int) -> list[int]:
        if self.is_novel_round(server_round):  # round-robin: every novel client gets its share
            return [self.novel[(server_round - self.novel_start) % len(self.novel)]]
        k = int(self.params.clients_per_round)
        chosen = seeding.rng(self.seed, seeding.SAMPLING, server_round, Stage.TRAIN.stream).choice(
            self.seen, k, replace=False)
        return sorted(int(c) for c in chosen)

    @torch.no_grad()
    def generate(self, cid: int) -> dict[str, torch.Tensor]:
        """theta_cid (detached)."""
        return {k: v.detach() for k, v in self.model(cid).items()}

    @torch.no_grad()
    def generate_many(self, cids: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        """Targets of every client in `cids` from one batched hypernetwork pass (detached)."""
        if not cids:
            return {}
        stacked = self.model.forward_many(list(cids))
        return {cid: {k: v[i] for k, v in stacked.items()} for i, cid in enumerate(cids)}

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        cfg = inner_config(self.params)
        thetas = self.generate_many(cids)
        return {cid: RecordDict({"arrays": to_record(thetas[cid]), "config": cfg})
                for cid in cids}

    @override
    def aggregate_train(self, server_round: int, replies: dict[int, RecordDict],
                        failures: dict[int, str]) -> dict[str, float]:
        deltas = {cid: from_record(rd["arrays"]) for cid, rd in replies.items()}
        if self.is_novel_round(server_round):
            norms = [novel_embedding_step(self.model, cid, d, float(self.params.novel_lr),
                                          float(self.params.clip))
                     for cid, d in sorted(deltas.items())]
            return {"novel_grad_norm": float(np.mean(norms))}
        norm = pfedhn_step(self.model, self.optimizer, deltas, float(self.params.clip))
        return {"hn_grad_norm": norm}

    def eval_payload(self, cid: int,
                     theta: dict[str, torch.Tensor] | None = None) -> RecordDict:
        """theta_cid (generated here unless given) and the masking rule."""
        theta = self.generate(cid) if theta is None else theta
        return RecordDict({"arrays": to_record(theta),
                           "config": ConfigRecord({"mask_absent": str(self.params.mask_absent)})})

    @override
    def configure_evaluate(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        thetas = self.generate_many(cids)
        return {cid: self.eval_payload(cid, thetas[cid]) for cid in cids}

    @override
    def aggregate_evaluate(self, server_round: int, replies: dict[int, RecordDict],
                           failures: dict[int, str]) -> dict[str, float]:
        per_client = {cid: metrics_of(rd) for cid, rd in replies.items()}
        groups = {"seen": self.seen, "unseen": self.novel} if self.novel else {"seen": self.seen}
        metrics = group_metrics(per_client, groups)
        self.log.add(server_round, metrics, {c: m["test_accuracy"] for c, m in per_client.items()
                                    if c in self.seen and "test_accuracy" in m})
        return metrics

    @override
    def summary(self) -> dict[str, Any]:
        return {"paper": self.log.summary(
            "seen_val_accuracy",
            "pooled test accuracy (sum correct / sum samples) of the training clients at the "
            "evaluation with the highest pooled validation accuracy (pFedHN, PeFLL); unseen "
            "clients' accuracy reported at the same evaluation and at the final one")}

"""FED-PUB client: masked GCN with personal masks, regularised local training, embedding.

Per round (specs/fedpub.md §3.2): load the received weights and biases, **keeping the client's
own masks** (never taken from a message); train `local_epochs` full-batch Adam steps on

    CE(train nodes) + l1 · Σ_masks ‖M‖₁ + loc_l2 · Σ_{weights, biases} ‖θ - anchor‖₂

(plain, not squared, per-tensor L2 norms; the proximal term from round 2 on; anchor = the
received model); evaluate val/test on the local subgraph right after training; compute the
functional embedding (eval mode, pruned masks) as the mean last-convolution output on the proxy
graph, which is rebuilt here from `strategy.proxy.seed` instead of being shipped. Masks and Adam
state stay in the client's private state; masks are uploaded only with `as_released`.

In the paper's semantics both regularisers take part in the gradient. The released code built
them from detached `state_dict()` tensors, so they changed the logged loss only (§8 Q1):
`as_released=true` reproduces that.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import torch
from flwr.app import ArrayRecord, RecordDict
from torch import nn
from typing_extensions import override

from fedplat.core import seeding
from fedplat.core.client import Client, ClientState, eval_reply, train_reply
from fedplat.core.records import from_record

log = logging.getLogger("fedplat")

#: Seed stream of the proxy graph (mixed with strategy.proxy.seed).
PROXY_STREAM = 0xFED9B


@functools.lru_cache(maxsize=4)
def proxy_graph(n_graphs: int, nodes_per_graph: int, p_in: float, p_out: float,
                num_features: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxy graph: `n_graphs` random G(nodes_per_graph, p_in) blocks (p_out across them).

    Features are N(0, 1). Both come from `seed` alone (numpy for edges, a torch generator for
    features), so the server and every client build the identical graph; nothing is shipped.
    Returns (x, edge_index) with both directions of every edge.
    """
    rng = seeding.rng(seed, PROXY_STREAM)
    n = n_graphs * nodes_per_graph
    block = np.repeat(np.arange(n_graphs), nodes_per_graph)
    prob = np.where(block[:, None] == block[None, :], p_in, p_out)
    src, dst = np.nonzero(np.triu(rng.random((n, n)) < prob, k=1))
    edge_index = torch.from_numpy(np.stack([np.concatenate([src, dst]),
                                            np.concatenate([dst, src])]).astype(np.int64))
    gen = seeding.torch_generator(seed, PROXY_STREAM)
    x = torch.randn(n, num_features, generator=gen)
    return x, edge_index


def regularizer(model: nn.Module, anchor: dict[str, torch.Tensor], l1: float, loc_l2: float,
                proximal: bool, detached: bool) -> torch.Tensor:
    """l1 · Σ‖M‖₁ + loc_l2 · Σ‖θ - anchor‖₂ over the model's masks / other parameters.

    `detached=True` computes the same value from detached tensors (no gradient: the released
    code's behaviour).
    """
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, p in model.named_parameters():
        t = p.detach() if detached else p
        if "mask" in name:
            if l1:
                total = total + l1 * t.abs().sum()
        elif proximal and loc_l2 and name in anchor:
            total = total + loc_l2 * torch.linalg.vector_norm(t - anchor[name])
    return total


def mask_sparsity(model: nn.Module, threshold: float) -> float:
    """Fraction of mask entries with |m| < threshold (pruned in eval mode)."""
    masks = [p.detach() for n, p in model.named_parameters() if "mask" in n]
    total = sum(m.numel() for m in masks)
    return sum(int((m.abs() < threshold).sum()) for m in masks) / total if total else 0.0


@torch.no_grad()
def functional_embedding(model: nn.Module, x: torch.Tensor,
                         edge_index: torch.Tensor) -> torch.Tensor:
    """Mean over the proxy nodes of the last convolution's output (eval mode: no dropout)."""
    model.eval()
    return model.embed(x, edge_index).mean(dim=0)


class FedPubClient(Client):
    """Keeps its masks and optimizer state; trains the model it receives."""

    def _proxy(self) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.cfg.strategy.proxy
        x, ei = proxy_graph(int(p.n_graphs), int(p.nodes_per_graph), float(p.p_in),
                            float(p.p_out), int(self.data.info.input_shape[0]), int(p.seed))
        return x.to(self.device), ei.to(self.device)

    def _model(self, received: dict[str, torch.Tensor], state: ClientState) -> nn.Module:
        """A masked GCN with the received weights/biases and this client's own masks."""
        model = self.new_model()
        own = model.state_dict()
        masks = state.get_tensors("masks")
        for name in own:
            if "mask" in name:
                if masks is not None:
                    own[name] = masks[name]
            elif name in received:
                own[name] = received[name]
        return self.load(model, own)

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        p = self.cfg.strategy
        as_released = bool(p.as_released)
        received = from_record(payload["arrays"])
        model = self._model(received, state)
        source = from_record(payload["global"]) if "global" in payload else received
        anchor = {k: v.to(self.device) for k, v in source.items() if "mask" not in k}
        l1, loc_l2 = float(p.l1), float(p.loc_l2)

        def extra(m: nn.Module) -> torch.Tensor:
            return regularizer(m, anchor, l1, loc_l2, proximal=server_round > 1,
                               detached=as_released)

        result = self.train_model(model, server_round, state=state, extra_loss=extra)
        metrics = self.eval_metrics(model)
        metrics["num-test-examples"] = metrics.pop("num-examples")
        if metrics["num-test-examples"] == 0:
            if as_released:
                metrics["test_accuracy"] = 1.0  # the released code counts it as correct
            else:
                log.warning("client %d has no test nodes: left out of the mean", self.cid)
                metrics["test_accuracy"] = math.nan
        threshold = float(self.cfg.model.get("prune_threshold") or 0.0)
        metrics["mask_sparsity"] = mask_sparsity(model, threshold)
        metrics["regularizer"] = float(regularizer(model, anchor, l1, loc_l2, server_round > 1,
                                                 True))
        embedding = functional_embedding(model, *self._proxy())
        trained = model.state_dict()
        state.set_tensors("masks", {k: v for k, v in trained.items() if "mask" in k})
        upload = {k: v for k, v in trained.items() if as_released or "mask" not in k}
        reply = train_reply(result, upload, **metrics)
        reply["embedding"] = ArrayRecord({"embedding": embedding.detach().cpu()})
        return reply

    @override
    def evaluate(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        """The received (personalised) model with this client's masks, before local training.

        Not part of FED-PUB's protocol (its metrics come with the train reply and
        `fraction_evaluate` is 0); available for comparisons.
        """
        model = self._model(from_record(payload["arrays"]), state)
        return eval_reply(self.eval_metrics(model))

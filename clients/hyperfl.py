"""HyperFL client: private embedding v and classifier phi, two-phase local training.

State (ClientState, never sent): `embedding` {v}, `classifier` {head tensors}; with the compat
flag `strategy.stale_eval`, `last_theta` (the extractor of the last phase-B forward pass, which
the released code evaluates). Reply: the trained hypernetwork varphi_i and metrics, nothing else.

Round (the released code's `local_training`):
* Phase A, `classifier_epochs` (1): theta = h(v; varphi) fixed; SGD on phi only (lr 0.1,
  momentum 0.5, weight decay 5e-4).
* Phase B, `local_epochs` (5): phi frozen; per batch theta = h(v; varphi) and
  L = CE(g(f(x; theta); phi), y) back-propagated into varphi and v (functional call: the
  gradient path the released code rebuilds by hand); gradients of varphi and of v clipped
  separately to norm 50; SGD on {varphi, v} (lr 0.02, momentum 0.5, weight decay 5e-4 on both).
* Both optimizers are new every round; batches of 50 from a shuffled epoch.

Speed: the hypernetwork's heads hold ~99% of its 15 M parameters, and their gradient for one
embedding is a rank-1 outer product (dL/dtheta) f^T. `FactoredHeads` runs SGD with momentum and
weight decay on them exactly, as alpha W0 + sum_j c_j d_j f_j^T, so a step costs two passes over
W0 instead of a dozen; the dense weights are formed once at the end of the round. Same maths
(tested against plain autograd SGD); `strategy.factored_heads=false` runs the dense version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import RecordDict
from torch import nn
from torch.nn import functional as F
from typing_extensions import override

from fedplat.core.client import Client, ClientState, eval_reply, train_reply
from fedplat.core.records import from_record
from fedplat.models.hypernet import (
    GeneratedModel,
    HyperNetwork,
    functional_forward,
    head_names,
    skeleton,
)
from fedplat.training.loops import TrainResult, batches, evaluate
from strategies.hyperfl import body_spec, initial_model


class FactoredHeads:
    """SGD on a weight matrix whose gradients are rank-1, kept as W = alpha W0 + D diag(c) F^T.

    Momentum and weight decay, no dampening or Nesterov. Matches `torch.optim.SGD` exactly:
    d_t = g_t + wd W_t, buf_t = m buf_{t-1} + d_t (buf_1 = d_1), W_{t+1} = W_t - lr buf_t,
    with g_t = s_t delta_t f_t^T. buf has the same form (beta W0 + D diag(e) F^T), so every
    step only appends one column to D and F.
    """

    def __init__(self, w0: torch.Tensor, lr: float, momentum: float, weight_decay: float,
                 capacity: int = 64) -> None:
        self.w0 = w0
        self.lr, self.momentum, self.wd = lr, momentum, weight_decay
        self.alpha, self.beta = 1.0, 0.0
        self.n = 0
        self._d = w0.new_zeros(w0.shape[0], capacity)  # columns: delta_j
        self._f = w0.new_zeros(w0.shape[1], capacity)  # columns: f_j
        self.c = w0.new_zeros(0)
        self.e = w0.new_zeros(0)
        self.started = False

    def _stacks(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._d[:, :self.n], self._f[:, :self.n]

    def matvec(self, f: torch.Tensor) -> torch.Tensor:
        """W f."""
        out = self.alpha * (self.w0 @ f)
        if self.n:
            d, fs = self._stacks()
            out = out + d @ (self.c * (fs.T @ f))
        return out

    def rmatvec(self, delta: torch.Tensor) -> torch.Tensor:
        """W^T delta."""
        out = self.alpha * (self.w0.T @ delta)
        if self.n:
            d, fs = self._stacks()
            out = out + fs @ (self.c * (d.T @ delta))
        return out

    def step(self, delta: torch.Tensor, f: torch.Tensor, scale: float) -> None:
        """One SGD step with gradient scale * delta f^T (scale = the clipping factor)."""
        if self.n == self._d.shape[1]:
            self._d = torch.cat([self._d, torch.zeros_like(self._d)], 1)
            self._f = torch.cat([self._f, torch.zeros_like(self._f)], 1)
        self._d[:, self.n] = delta.detach()
        self._f[:, self.n] = f.detach()
        self.n += 1
        c = torch.cat([self.c, self.c.new_zeros(1)])
        e = torch.cat([self.e, self.e.new_zeros(1)])
        d0 = self.wd * self.alpha
        dc = self.wd * c
        dc[-1] += scale
        if self.started:
            self.beta = self.momentum * self.beta + d0
            e = self.momentum * e + dc
        else:
            self.beta, e, self.started = d0, dc, True
        self.alpha -= self.lr * self.beta
        self.c, self.e = c - self.lr * e, e

    def dense(self) -> torch.Tensor:
        """The current W as a dense matrix."""
        out = self.alpha * self.w0
        if self.n:
            d, fs = self._stacks()
            out = out + (d * self.c) @ fs.T
        return out


def _flat_heads(hnet: HyperNetwork) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """All heads' weights stacked (P x hidden), their biases (P), and each head's rows."""
    w = torch.cat([h.weight.detach() for h in hnet.heads])
    b = torch.cat([h.bias.detach() for h in hnet.heads])
    return w, b, [h.out_features for h in hnet.heads]


def _unflatten(hnet: HyperNetwork, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    parts = flat.split([h.out_features for h in hnet.heads])
    return {n: p.reshape(s) for n, s, p in zip(hnet.spec.names, hnet.spec.shapes, parts)}


def _ce(target: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor,
        y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(functional_forward(target, params, x), y)


def phase_a(target: nn.Module, theta: Mapping[str, torch.Tensor],
            head: Mapping[str, nn.Parameter], x: torch.Tensor, y: torch.Tensor, *, epochs: int,
            batch_size: int, lr: float, momentum: float, weight_decay: float,
            generator: torch.Generator) -> float:
    """Train the classifier alone on a fixed extractor; return the first epoch's mean loss."""
    opt = torch.optim.SGD(list(head.values()), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    fixed = {k: v.detach() for k, v in theta.items()}
    first: list[float] = []
    for epoch in range(epochs):
        for idx in batches(len(y), batch_size, generator):
            idx = idx.to(x.device)
            opt.zero_grad(set_to_none=True)
            loss = _ce(target, {**fixed, **head}, x[idx], y[idx])
            loss.backward()
            opt.step()
            if epoch == 0:
                first.append(float(loss.detach()))
    return sum(first) / len(first) if first else float("nan")


def phase_b_dense(target: nn.Module, hnet: HyperNetwork, v: nn.Parameter,
                  head: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                  epochs: int, batch_size: int, lr: float, momentum: float, weight_decay: float,
                  clip: float, generator: torch.Generator
                  ) -> tuple[float, dict[str, torch.Tensor]]:
    """Phase B with plain autograd and torch's SGD (the reference for `phase_b_factored`).

    Returns the last epoch's mean loss and the extractor of the last forward pass.
    """
    opt = torch.optim.SGD([{"params": list(hnet.parameters())}, {"params": [v]}], lr=lr,
                          momentum=momentum, weight_decay=weight_decay)
    frozen = {k: t.detach() for k, t in head.items()}
    last: list[float] = []
    theta: dict[str, torch.Tensor] = {}
    for _ in range(epochs):
        last = []
        for idx in batches(len(y), batch_size, generator):
            idx = idx.to(x.device)
            opt.zero_grad(set_to_none=True)
            theta = hnet(v)
            loss = _ce(target, {**theta, **frozen}, x[idx], y[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(list(hnet.parameters()), clip)
            nn.utils.clip_grad_norm_([v], clip)
            opt.step()
            last.append(float(loss.detach()))
    return sum(last) / len(last), {k: t.detach() for k, t in theta.items()}


def phase_b_factored(target: nn.Module, hnet: HyperNetwork, v: nn.Parameter,
                     head: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                     epochs: int, batch_size: int, lr: float, momentum: float,
                     weight_decay: float, clip: float, generator: torch.Generator
                     ) -> tuple[float, dict[str, torch.Tensor]]:
    """Phase B with the heads' weights in `FactoredHeads`; same result as `phase_b_dense`.

    Trunk, head biases and v are ordinary tensors stepped by torch's SGD; on return `hnet`
    holds the trained (dense) weights.
    """
    w0, b0, _ = _flat_heads(hnet)
    bias = nn.Parameter(b0.clone())
    trunk = list(hnet.trunk.parameters())
    steps = epochs * -(-len(y) // batch_size)
    heads = FactoredHeads(w0, lr, momentum, weight_decay, capacity=max(steps, 1))
    opt = torch.optim.SGD([{"params": [*trunk, bias]}, {"params": [v]}], lr=lr,
                          momentum=momentum, weight_decay=weight_decay)
    frozen = {k: t.detach() for k, t in head.items()}
    last: list[float] = []
    theta: dict[str, torch.Tensor] = {}
    for _ in range(epochs):
        last = []
        for idx in batches(len(y), batch_size, generator):
            idx = idx.to(x.device)
            opt.zero_grad(set_to_none=True)
            for p in trunk:
                p.grad = None
            v.grad = None
            feat = hnet.trunk(v)
            flat = (heads.matvec(feat.detach()) + bias.detach()).requires_grad_(True)
            theta = _unflatten(hnet, flat)
            loss = _ce(target, {**theta, **frozen}, x[idx], y[idx])
            (delta,) = torch.autograd.grad(loss, [flat])
            feat.backward(heads.rmatvec(delta))  # trunk and v gradients
            bias.grad = delta.clone()
            # clip the hypernetwork (heads' rank-1 weight gradient included) and v separately
            sq = float(delta.pow(2).sum()) * (float(feat.detach().pow(2).sum()) + 1.0)
            sq += sum(float(p.grad.pow(2).sum()) for p in trunk if p.grad is not None)
            factor = min(1.0, clip / (sq ** 0.5 + 1e-6))
            if factor < 1.0:
                for p in [*trunk, bias]:
                    if p.grad is not None:
                        p.grad.mul_(factor)
            nn.utils.clip_grad_norm_([v], clip)
            heads.step(delta, feat.detach(), factor)  # uses W before this step, like SGD
            opt.step()
            last.append(float(loss.detach()))
    with torch.no_grad():
        w = heads.dense()
        for h, wp, bp in zip(hnet.heads, w.split([h.out_features for h in hnet.heads]),
                             bias.detach().split([h.out_features for h in hnet.heads])):
            h.weight.copy_(wp)
            h.bias.copy_(bp)
    return sum(last) / len(last), {k: t.detach() for k, t in theta.items()}


class HyperFLClient(Client):
    """Keeps v and phi across rounds; shares only the hypernetwork."""

    def private(self, state: ClientState) -> tuple[nn.Module, nn.Parameter,
                                                   dict[str, nn.Parameter]]:
        """Target structure, embedding v and classifier phi (from state, else the initial model)."""
        target = skeleton(self.cfg.model, self.data.info)
        saved_v = state.get_tensors("embedding")
        saved_head = state.get_tensors("classifier")
        if saved_v is None or saved_head is None:
            per_client = bool(self.cfg.strategy.per_client_init)
            init, v0, _ = initial_model(self.cfg, self.cid if per_client else None,
                                        with_hypernet=False)
            saved_v = {"v": v0}
            saved_head = {n: p.detach() for n, p in init.named_parameters()
                          if n in head_names(init)}
        v = nn.Parameter(saved_v["v"].clone().to(self.device))
        head = {n: nn.Parameter(t.clone().to(self.device)) for n, t in saved_head.items()}
        return target, v, head

    def hypernet(self, target: nn.Module, payload: RecordDict) -> HyperNetwork:
        """The received hypernetwork (allocated without initialisation, then loaded)."""
        hn = self.cfg.strategy.hypernet
        with torch.device("meta"):
            hnet = HyperNetwork(body_spec(target), int(hn.embed_dim), int(hn.hidden),
                                int(hn.n_hidden), relu_out=True)
        state = {k: t.to(self.device) for k, t in from_record(payload["arrays"]).items()}
        hnet.load_state_dict(state, assign=True)
        return hnet

    def accuracy(self, target: nn.Module, params: Mapping[str, torch.Tensor]) -> float:
        """Test accuracy of the client's model with the given tensors."""
        bs = int(self.cfg.client.eval_batch_size)
        with torch.no_grad():
            return evaluate(GeneratedModel(target, params), self.data.x_test, self.data.y_test,
                            bs).accuracy

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        c = payload["config"]
        target, v, head = self.private(state)
        hnet = self.hypernet(target, payload)
        gen = self.generator(server_round)
        x, y = self.data.x_train, self.data.y_train
        with torch.no_grad():
            theta = hnet(v)
        acc_pre = self.accuracy(target, {**theta, **head})
        loss_a = phase_a(target, theta, head, x, y, epochs=int(c["classifier_epochs"]),
                         batch_size=int(c["batch_size"]), lr=float(c["lr_classifier"]),
                         momentum=float(c["classifier_momentum"]),
                         weight_decay=float(c["weight_decay"]), generator=gen)
        phase_b = phase_b_factored if bool(c["factored_heads"]) else phase_b_dense
        for p in hnet.parameters():
            p.requires_grad_(True)
        loss_b, last_theta = phase_b(
            target, hnet, v, head, x, y, epochs=int(c["local_epochs"]),
            batch_size=int(c["batch_size"]), lr=float(c["lr"]), momentum=float(c["momentum"]),
            weight_decay=float(c["weight_decay"]), clip=float(c["clip"]), generator=gen)
        with torch.no_grad():
            theta = hnet(v)
        acc_post = self.accuracy(target, {**theta, **head})
        state.set_tensors("embedding", {"v": v.detach()})
        state.set_tensors("classifier", {k: p.detach() for k, p in head.items()})
        if bool(c["stale_eval"]):
            state.set_tensors("last_theta", last_theta)
        steps = (int(c["classifier_epochs"]) + int(c["local_epochs"])) * \
            -(-len(y) // int(c["batch_size"]))
        extra: dict[str, Any] = {"acc_pre": acc_pre, "acc_post": acc_post, "loss_a": loss_a}
        return train_reply(TrainResult(loss_b, self.data.num_train, steps),
                           {k: t.detach() for k, t in hnet.state_dict().items()}, **extra)

    @override
    def evaluate(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        target, v, head = self.private(state)
        stale = state.get_tensors("last_theta") if bool(payload["config"]["stale_eval"]) \
            else None
        if stale is not None:
            theta = {k: t.to(self.device) for k, t in stale.items()}
        else:
            with torch.no_grad():
                theta = self.hypernet(target, payload)(v)
        with torch.no_grad():
            return eval_reply(self.eval_metrics(GeneratedModel(target, {**theta, **head})))

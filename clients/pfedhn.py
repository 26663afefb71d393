"""pFedHN client: K SGD steps from the generated weights, reply with delta-theta.

Each step draws a fresh random batch (pFedHN's "first batch of a new shuffled iterator":
sampling with replacement across steps, not epochs), clips the gradient of the generated
tensors to norm 50 and steps a fresh SGD optimizer (momentum reset every round). The reply is
the raw difference theta - theta~ (not divided by the learning rate); the server descends along
it. PeFLL's client runs the same inner loop (`inner_updates`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from flwr.app import RecordDict
from torch import nn
from torch.nn import functional as F
from typing_extensions import override

from fedplat.core.client import Client, ClientState, eval_reply, train_reply
from fedplat.core.records import from_record
from fedplat.models.hypernet import GeneratedModel, functional_forward, skeleton
from fedplat.training.loops import TrainResult


def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator,
                  sampling: str = "fresh") -> Iterator[torch.Tensor]:
    """`steps` index batches for an inner loop.

    `fresh`: the first batch of a new shuffle at each step; `epoch`: consecutive batches of
    shuffled epochs (the last batch of an epoch may be smaller).
    """
    if sampling == "fresh":
        for _ in range(steps):
            yield torch.randperm(n, generator=generator)[:batch_size]
        return
    done = 0
    while done < steps:
        for idx in torch.randperm(n, generator=generator).split(batch_size):
            if done == steps:
                return
            yield idx
            done += 1


def inner_updates(target: nn.Module, theta: Mapping[str, torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor, *, steps: int, batch_size: int, lr: float, momentum: float,
                  weight_decay: float, clip: float, generator: torch.Generator,
                  sampling: str = "fresh", head: Mapping[str, nn.Parameter] | None = None,
                  head_optimizer: torch.optim.Optimizer | None = None
                  ) -> tuple[dict[str, torch.Tensor], float]:
    """K SGD steps on the generated tensors `theta` (and on a private `head`, not clipped).

    Returns theta~ (detached) and the mean training loss. A fresh SGD optimizer over theta is
    created here (pFedHN re-creates the inner optimizer every round); `head_optimizer`, if
    given, persists across rounds (pFedHN-PC) and is only stepped.
    """
    params = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}
    opt = torch.optim.SGD(list(params.values()), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    extra = dict(head or {})
    losses = []
    target.train()
    for idx in batch_indices(len(y), batch_size, steps, generator, sampling):
        idx = idx.to(x.device)
        opt.zero_grad(set_to_none=True)
        if head_optimizer is not None:
            head_optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(functional_forward(target, {**params, **extra}, x[idx]), y[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite inner-loop loss {loss.item()}; lower "
                                     "strategy.inner_lr")
        loss.backward()
        nn.utils.clip_grad_norm_(list(params.values()), clip)
        opt.step()
        if head_optimizer is not None:
            head_optimizer.step()
        losses.append(float(loss.detach()))
    return {k: v.detach() for k, v in params.items()}, sum(losses) / len(losses)


def present_classes(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """0/1 vector of the classes present in `y`."""
    return (torch.bincount(y.cpu(), minlength=num_classes) > 0).to(torch.float32)


class PFedHNClient(Client):
    """Stateless (pFedHN-PC keeps a private head, see clients/pfedhn_pc.py)."""

    def target(self) -> nn.Module:
        """The target network's structure (every tensor comes from the server or the state)."""
        return skeleton(self.cfg.model, self.data.info)

    def head(self, state: ClientState, config: Mapping[str, object]
             ) -> tuple[dict[str, nn.Parameter], torch.optim.Optimizer | None]:
        """Private head parameters and their persistent optimizer (none in plain pFedHN)."""
        return {}, None

    def save_head(self, state: ClientState, head: Mapping[str, nn.Parameter],
                  optimizer: torch.optim.Optimizer | None) -> None:
        """Persist the private head (no-op in plain pFedHN)."""

    def theta(self, payload: RecordDict) -> dict[str, torch.Tensor]:
        """The generated tensors sent by the server, on this client's device."""
        return {k: v.to(self.device) for k, v in from_record(payload["arrays"]).items()}

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        c = payload["config"]
        theta = self.theta(payload)
        head, head_opt = self.head(state, c)
        new, loss = inner_updates(
            self.target(), theta, self.data.x_train, self.data.y_train,
            steps=int(c["inner_steps"]), batch_size=int(c["batch_size"]), lr=float(c["lr"]),
            momentum=float(c["momentum"]), weight_decay=float(c["weight_decay"]),
            clip=float(c["clip"]), generator=self.generator(server_round),
            sampling=str(c["batch_sampling"]), head=head, head_optimizer=head_opt)
        self.save_head(state, head, head_opt)
        delta = {k: theta[k] - new[k] for k in theta}
        return train_reply(TrainResult(loss, self.data.num_train, int(c["inner_steps"])), delta)

    @override
    def evaluate(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        mode = str(payload["config"]["mask_absent"]) if "config" in payload else "none"
        head, _ = self.head(state, {})
        mask = present_classes(self.data.y_train, self.data.info.num_classes)
        model = GeneratedModel(self.target(), {**self.theta(payload), **head}, mask, mode)
        with torch.no_grad():
            return eval_reply(self.eval_metrics(model))

"""pFedHN-PC client: the pFedHN inner loop plus a private head kept in the client's state.

The head (the target's last layer, e.g. LeNet's fc3: 84 -> C) is initialised independently per
client (PyTorch's default init from the stream (seed, INIT, 102, cid)) and trained jointly with
the generated tensors at every inner step by its own SGD optimizer (inner lr, momentum, weight
decay), whose momentum buffers persist across rounds; the head is not gradient-clipped and
never leaves the client.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from typing_extensions import override

from clients.pfedhn import PFedHNClient
from fedplat.core import seeding
from fedplat.core.client import ClientState
from fedplat.models.hypernet import head_names

#: Stream id (under seeding.INIT) of the private heads' initialisation.
HEAD_INIT = 102


class PFedHNPCClient(PFedHNClient):
    """Keeps `head` and `head_opt` (momentum buffers) in its ClientState."""

    @override
    def head(self, state: ClientState, config: Mapping[str, object]
             ) -> tuple[dict[str, nn.Parameter], torch.optim.Optimizer | None]:
        saved = state.get_tensors("head")
        if saved is None:
            fresh = self.new_model((seeding.INIT, HEAD_INIT, self.cid))
            names = head_names(fresh)
            saved = {n: p.detach() for n, p in fresh.named_parameters() if n in names}
        head = {n: nn.Parameter(v.detach().clone().to(self.device)) for n, v in saved.items()}
        if "lr" not in config:
            return head, None
        opt = torch.optim.SGD(list(head.values()), lr=float(config["lr"]),
                              momentum=float(config["momentum"]),
                              weight_decay=float(config["weight_decay"]))
        buffers = state.get_tensors("head_opt")
        if buffers is not None:
            for n, p in head.items():
                opt.state[p]["momentum_buffer"] = buffers[n].to(self.device)
        return head, opt

    @override
    def save_head(self, state: ClientState, head: Mapping[str, nn.Parameter],
                  optimizer: torch.optim.Optimizer | None) -> None:
        state.set_tensors("head", {n: p.detach() for n, p in head.items()})
        if optimizer is not None:
            buffers = {n: optimizer.state[p]["momentum_buffer"] for n, p in head.items()
                       if optimizer.state[p].get("momentum_buffer") is not None}
            if buffers:
                state.set_tensors("head_opt", buffers)

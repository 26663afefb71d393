"""FedProx client: local training with the proximal term mu/2 * ||w - w_t||^2.

w_t is the global model received this round. The term is added to every batch loss through the
training loop's `extra_loss` hook, so clipping, the non-finite check and the seeded batch order
are FedAvg's. Stateless, like the FedAvg client. It changes `train`, so the vmapped FedAvg path
(`FedAvgClient.train_batched`, which has no proximal term) leaves it alone.
"""

from __future__ import annotations

import torch
from flwr.app import RecordDict
from torch import nn
from typing_extensions import override

from clients.fedavg import FedAvgClient
from fedplat.core.client import ClientState
from fedplat.core.records import from_record


def proximal_term(model: nn.Module, anchor: dict[str, torch.Tensor], mu: float) -> torch.Tensor:
    """mu/2 * ||w - anchor||^2 over the model's parameters (differentiable in w)."""
    total = sum(((p - anchor[name]) ** 2).sum() for name, p in model.named_parameters())
    return 0.5 * mu * torch.as_tensor(total)


class FedProxClient(FedAvgClient):
    """Trains the received global model with the proximal term the server's mu asks for."""

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        global_state = from_record(payload["arrays"])
        model = self.load(self.new_model(), global_state)
        anchor = {name: p.detach().clone() for name, p in model.named_parameters()}
        config = payload["config"]
        mu = float(config["mu"])
        result = self.train_model(
            model, server_round, lr=float(config["lr"]), state=state,
            extra_loss=(lambda m: proximal_term(m, anchor, mu)) if mu > 0 else None)
        return self.reply_after_training(result, model, model.state_dict())

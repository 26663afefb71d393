"""DP-FedAvg client: train like FedAvg, then clip the update and add Gaussian noise."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from flwr.app import RecordDict
from typing_extensions import override

from clients.fedavg import FedAvgClient
from fedplat.core.client import ClientState, train_reply
from fedplat.core.records import from_record


def privatize(update: Mapping[str, torch.Tensor], clip: float, noise_multiplier: float,
              generator: torch.Generator) -> tuple[dict[str, torch.Tensor], float]:
    """Clip `update` to L2 norm `clip` and add Gaussian noise; also return the norm before.

    Floating entries are clipped jointly; noise N(0, (noise_multiplier * clip)^2) is added to
    every coordinate.
    """
    floats = [k for k, v in update.items() if v.is_floating_point()]
    norm = float(torch.sqrt(sum(update[k].double().pow(2).sum() for k in floats)))
    scale = min(1.0, clip / (norm + 1e-12))
    out = dict(update)
    std = noise_multiplier * clip
    for k in floats:
        noise = torch.randn(update[k].shape, generator=generator, dtype=update[k].dtype)
        out[k] = update[k] * scale + std * noise.to(update[k].device)
    return out, norm


class DPFedAvgClient(FedAvgClient):
    """Sends w_0 + privatize(w - w_0); integer buffers are sent as trained."""

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        w0 = {k: v.to(self.device) for k, v in from_record(payload["arrays"]).items()}
        model = self.load(self.new_model(), w0)
        c = payload["config"]
        result = self.train_model(model, server_round, lr=float(c["lr"]))
        trained = model.state_dict()
        update = {k: trained[k] - w0[k] for k in trained if trained[k].is_floating_point()}
        noisy, norm = privatize(update, float(c["clip"]), float(c["noise_multiplier"]),
                                self.generator(server_round, 1))
        sent = {k: (w0[k] + noisy[k]) if k in noisy else trained[k] for k in trained}
        return train_reply(result, sent, dp_update_norm=norm)

"""Exponential decay of a learning rate, the schedule baseline of FedHyper.

Decay-G: x_{t+1} = x_t + eta_g0 * gamma^(t-1) * Delta_t (round t = 1, 2, ...).
Decay-SL (`strategy.apply_to=local`): the clients' rate is client.lr * gamma^(t-1) and the
global rate stays eta_g0. The released code's Decay-SL is a no-op (its local rates are reset
every round, spec P1); this one applies the schedule.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_choice, check_float
from fedplat.core.strategy import ClientInfo
from strategies.server_opt import RoundInput, ServerOpt


def decayed(rate0: float, gamma: float, server_round: int) -> float:
    """rate0 * gamma^(server_round - 1): the first round uses the initial rate."""
    return rate0 * gamma ** (server_round - 1)


class Decay(ServerOpt):
    """Exponentially decaying global (`apply_to=global`) or local (`local`) rate."""

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        check_float(cfg, "strategy.eta_g0", 0.0, lo_open=True)
        check_float(cfg, "strategy.gamma", 0.0, 1.0, lo_open=True)
        check_choice(cfg, "strategy.apply_to", ["global", "local"])

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        self.global_rate = float(self.params.eta_g0)

    @override
    def local_lr(self, server_round: int) -> float:
        lr0 = float(self.cfg.client.lr)
        if self.params.apply_to == "local":
            return decayed(lr0, float(self.params.gamma), server_round)
        return lr0

    @override
    def server_step(self, inp: RoundInput) -> tuple[torch.Tensor, dict[str, float]]:
        eta0 = float(self.params.eta_g0)
        if self.params.apply_to == "global":
            self.global_rate = decayed(eta0, float(self.params.gamma), inp.server_round)
        return self.global_rate * inp.delta, {}

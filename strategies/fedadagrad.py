"""FedAdagrad (Reddi et al., ICLR 2021), FedHyper's baseline.

Adagrad on the server over the averaged update: v_t = v_{t-1} + Delta_t^2,
x_{t+1} = x_t + eta * Delta_t / (sqrt(v_t) + tau). A port of Flower's Message-API
`flwr.serverapp.strategy.FedAdagrad` (tests check equality), applied to trainable parameters
with buffers averaged and the unweighted mean by default (see strategies/server_opt.py).
`strategy.repo_rule=true` uses FedHyper's released variant (g = 0.1 Delta, v += g^2,
step = g / sqrt(v + 0.0316)).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_float
from fedplat.core.strategy import ClientInfo
from strategies.server_opt import RoundInput, ServerOpt, check_bool

Vec = torch.Tensor


def fedadagrad_step(delta: Vec, v: Vec, eta: float, tau: float) -> tuple[Vec, Vec]:
    """Flower's FedAdagrad: returns (step, v)."""
    v = v + delta * delta
    return eta * delta / (torch.sqrt(v) + tau), v


def repo_fedadagrad_step(delta: Vec, v: Vec) -> tuple[Vec, Vec]:
    """FedHyper's released FedAdagrad: g = 0.1 Delta, v += g^2, step = g / sqrt(v + 0.0316)."""
    g = 0.1 * delta
    v = v + g * g
    return g / torch.sqrt(v + 0.0316), v


class FedAdagrad(ServerOpt):
    """Adagrad on the server over the averaged update."""

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        check_float(cfg, "strategy.eta", 0.0, lo_open=True)
        check_float(cfg, "strategy.tau", 0.0, lo_open=True)
        check_bool(cfg, "strategy.repo_rule")

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        self.v: Vec | None = None
        self.global_rate = float(self.params.eta)

    @override
    def server_step(self, inp: RoundInput) -> tuple[torch.Tensor, dict[str, float]]:
        if self.v is None:
            self.v = torch.zeros_like(inp.delta)
        if bool(self.params.repo_rule):
            step, self.v = repo_fedadagrad_step(inp.delta, self.v)
        else:
            step, self.v = fedadagrad_step(inp.delta, self.v, float(self.params.eta),
                                           float(self.params.tau))
        return step, {}

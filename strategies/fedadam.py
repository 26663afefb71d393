"""FedAdam (Reddi et al., ICLR 2021, "Adaptive Federated Optimization"), FedHyper's baseline.

The server treats the averaged client update Delta_t as a pseudo-gradient and takes an Adam
step on the global trainable parameters. The math is a port of Flower's Message-API
`flwr.serverapp.strategy.FedAdam` (tests check equality on the same inputs), including its
bias correction eta * sqrt(1 - beta_2^(t+1)) / (1 - beta_1^(t+1)) with the round number t.
Differences from Flower's class, shared by all FedHyper baselines (strategies/server_opt.py):
the rule applies to trainable parameters only (buffers take the plain average), and the
average is unweighted unless `strategy.weighted_avg=true` (Flower weights by samples).

`strategy.repo_rule=true` uses instead the non-standard FedAdam of FedHyper's released code
(pseudo-gradient 0.1 * Delta, second moment built from the first moment, 0.0316 inside the
square root), for comparison with the paper's curves.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_float
from fedplat.core.strategy import ClientInfo
from strategies.server_opt import RoundInput, ServerOpt, check_bool

Vec = torch.Tensor


def fedadam_step(delta: Vec, m: Vec, v: Vec, server_round: int, eta: float, beta_1: float,
                 beta_2: float, tau: float) -> tuple[Vec, Vec, Vec, float]:
    """Flower's FedAdam: returns (step, m, v, bias-corrected rate)."""
    m = beta_1 * m + (1.0 - beta_1) * delta
    v = beta_2 * v + (1.0 - beta_2) * delta * delta
    t = server_round + 1.0
    eta_norm = eta * math.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
    return eta_norm * m / (torch.sqrt(v) + tau), m, v, eta_norm


def repo_fedadam_step(delta: Vec, m: Vec, v: Vec, scale: float = 1.0) -> tuple[Vec, Vec, Vec]:
    """FedHyper's released FedAdam; returns (step, m, v).

    g = 0.1 * scale * Delta, m = 0.9 m + 0.1 g, v = 0.99 v + 0.01 m^2 (built from m, not g),
    step = (m / 0.1) / sqrt(v / 0.01 + 0.0316).
    """
    g = 0.1 * scale * delta
    m = 0.9 * m + 0.1 * g
    v = 0.99 * v + 0.01 * m * m
    return (m / 0.1) / torch.sqrt(v / 0.01 + 0.0316), m, v


class FedAdam(ServerOpt):
    """Adam on the server over the averaged update; `lr_global` logs the rate in use."""

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        check_float(cfg, "strategy.eta", 0.0, lo_open=True)
        check_float(cfg, "strategy.beta_1", 0.0, 1.0, hi_open=True)
        check_float(cfg, "strategy.beta_2", 0.0, 1.0, hi_open=True)
        check_float(cfg, "strategy.tau", 0.0, lo_open=True)
        check_bool(cfg, "strategy.repo_rule")

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        self.m: Vec | None = None
        self.v: Vec | None = None
        self.global_rate = float(self.params.eta)

    def rate_scale(self, inp: RoundInput) -> tuple[float, dict[str, float]]:
        """Factor on the server rate this round (1 here; FedHyper-Adam adapts it)."""
        return 1.0, {}

    @override
    def server_step(self, inp: RoundInput) -> tuple[torch.Tensor, dict[str, float]]:
        p = self.params
        if self.m is None or self.v is None:
            self.m, self.v = torch.zeros_like(inp.delta), torch.zeros_like(inp.delta)
        scale, metrics = self.rate_scale(inp)
        if bool(p.repo_rule):
            step, self.m, self.v = repo_fedadam_step(inp.delta, self.m, self.v, scale)
            self.global_rate = scale
        else:
            step, self.m, self.v, eta_norm = fedadam_step(
                inp.delta, self.m, self.v, inp.server_round, float(p.eta) * scale, float(p.beta_1),
                float(p.beta_2), float(p.tau))
            self.global_rate = float(p.eta) * scale
            metrics["lr_global_bias_corrected"] = eta_norm
        return step, metrics

"""FedExP (Jhunjhunwala, Wang and Joshi, ICLR 2023), a FedHyper baseline.

An adaptive global rate from extrapolation (POCS): with client updates Delta_i = x_i - x_t and
their average Delta_t,
    eta_g = max(1, sum_i w_i ||Delta_i||^2 / (2 (||Delta_t||^2 + eps))),  w_i = 1/M (unweighted),
and x_{t+1} = x_t + eta_g Delta_t. The reference x_t is the global model the clients started
from *this* round. FedHyper's released code measures the client updates against a state_dict
captured once and silently left behind after round 1 (spec P6); that bug is not reproduced.
The released code also hard-codes M = 10 and eps = 0; here M is the number of clients averaged
and eps is `strategy.eps`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_float
from strategies.server_opt import RoundInput, ServerOpt


def fedexp_rate(client_deltas: Mapping[int, torch.Tensor], weights: Mapping[int, float],
                delta: torch.Tensor, eps: float) -> float:
    """max(1, sum_i w_i ||Delta_i||^2 / (2 (||Delta||^2 + eps))), weights summing to 1."""
    spread = sum(weights[c] * float(d.to(torch.float64).pow(2).sum())
                 for c, d in sorted(client_deltas.items()))
    denom = 2.0 * (float(delta.to(torch.float64).pow(2).sum()) + eps)
    if denom <= 0.0:
        return 1.0
    return max(1.0, spread / denom)


class FedExP(ServerOpt):
    """Global rate from the spread of the client updates; logged as `lr_global`."""

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        check_float(cfg, "strategy.eps", 0.0)

    @override
    def server_step(self, inp: RoundInput) -> tuple[torch.Tensor, dict[str, float]]:
        self.global_rate = fedexp_rate(inp.client_deltas, inp.weights, inp.delta,
                                       float(self.params.eps))
        return self.global_rate * inp.delta, {}

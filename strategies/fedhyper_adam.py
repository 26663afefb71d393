"""FedHyper-Adam: FedAdam whose server rate is adapted by FedHyper's global hypergradient.

The rate offset `a` follows FedHyper-GM's rule on consecutive *raw* averaged updates
(a <- clip(a + beta <Delta_{t-1}, Delta_t>, a_clip_lo, a_clip_hi), [-0.2, 4] in the released
code), and the Adam step uses the rate eta * (1 + a). The released code instead multiplies the
pseudo-gradient by (1 + a) inside its non-standard FedAdam; `strategy.repo_rule=true`
reproduces that (see strategies/fedadam.py).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_float
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from strategies.fedadam import FedAdam
from strategies.fedhyper import dot, update_hyper
from strategies.server_opt import RoundInput, check_bool, check_bounds

log = logging.getLogger("fedplat")


class FedHyperAdam(FedAdam):
    """FedAdam with eta_t = eta * (1 + a_t), a_t from consecutive raw updates."""

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        lo = check_float(cfg, "strategy.a_clip_lo")
        hi = check_float(cfg, "strategy.a_clip_hi")
        assert lo is not None and hi is not None
        check_bounds(lo, hi, "strategy.a_clip_lo", "strategy.a_clip_hi")
        if lo <= -1.0:
            raise UserError(f"strategy.a_clip_lo={lo:g} allows a server rate eta * (1 + a) <= 0;"
                            " keep it above -1")
        if not lo <= 0.0 <= hi:
            raise UserError(f"strategy.a_clip_lo={lo:g}, strategy.a_clip_hi={hi:g} must enclose "
                            "0 (a starts at 0)")
        check_float(cfg, "strategy.hyper_lr", 0.0)
        check_bool(cfg, "strategy.normalized_hypergrad")

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        self.a = 0.0

    @override
    def rate_scale(self, inp: RoundInput) -> tuple[float, dict[str, float]]:
        metrics: dict[str, float] = {"hypergrad_skipped": 0.0}
        if self.prev_delta is not None:
            h = dot(self.prev_delta, inp.delta)
            metrics["hypergrad"] = h
            p = self.params
            self.a, ok = update_hyper(self.a, h, lo=float(p.a_clip_lo), hi=float(p.a_clip_hi),
                                      beta=float(p.hyper_lr),
                                      normalized=bool(p.normalized_hypergrad))
            if not ok:
                log.warning("round %d: non-finite hypergradient (%s); rate factor left at %g",
                            inp.server_round, h, 1.0 + self.a)
                metrics["hypergrad_skipped"] = 1.0
        metrics["rate_factor"] = 1.0 + self.a
        return 1.0 + self.a, metrics

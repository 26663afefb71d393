"""FedHyper's server-side update rules as pure functions over flat parameter vectors.

FedHyper (Wang et al., ICLR 2024) runs hypergradient descent (Baydin et al., 2018) on learning
rates. For a step x_{t+1} = x_t + eta * Delta_t, the derivative of the loss after the next step
with respect to eta is -<Delta_{t-1}, Delta_t> (up to the rate of the inner optimiser), so
descending on eta means *adding* the inner product of consecutive updates: the rate goes up
while consecutive updates agree and down when they oppose (spec P3). Every vector here is a
raw descent direction (new minus old), so no sign flips are needed.

All rules follow the authors' released code (ATP-1010/FedHyper, see docs/fedhyper.md): the
global rate is eta_g = 1 + a with `a` clipped to [lo, hi] (G: [-0.8, 4], GM: [-0.2, 4]); the
server-side local rate (SL) is clip(eta_l0 * (1 + a_sl), lr_lo, hi) with an unclipped a_sl.
A non-finite hypergradient is skipped (the rate keeps its value) and reported to the caller,
so one overflow can never turn the model into NaNs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_choice, check_float
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from strategies.server_opt import RoundInput, ServerOpt, check_bool, check_bounds

log = logging.getLogger("fedplat")

#: Building blocks of `strategy.variant`, combined with '+' (e.g. G+CL); FULL = GM+CL.
COMPONENTS = ("G", "GM", "SL", "CL")
ALIASES = {"FULL": "GM+CL"}


@dataclass(frozen=True)
class Variant:
    """Which rates FedHyper adapts.

    The global rate (G, or GM with server momentum), the server-side local rate (SL) and/or
    the client-side local rate (CL).
    """

    server: str | None  # "G", "GM" or None (global rate fixed at eta_g0)
    sl: bool
    cl: bool

    @classmethod
    def parse(cls, text: str) -> Variant:
        """`G`, `GM`, `SL`, `CL`, `FULL` or a '+' combination such as `G+CL`."""
        raw = ALIASES.get(str(text).strip().upper(), str(text).strip().upper())
        parts = [p.strip() for p in raw.split("+") if p.strip()]
        choices = "G, GM, SL, CL, FULL or a combination such as G+CL"
        bad = [p for p in parts if p not in COMPONENTS]
        if not parts or bad:
            raise UserError(f"strategy.variant={text!r} is not valid (choose from: {choices})")
        if len(set(parts)) != len(parts):
            raise UserError(f"strategy.variant={text!r} repeats a component")
        if "G" in parts and "GM" in parts:
            raise UserError(f"strategy.variant={text!r} combines G and GM; both adapt the "
                            "global rate, pick one")
        server = "GM" if "GM" in parts else "G" if "G" in parts else None
        return cls(server=server, sl="SL" in parts, cl="CL" in parts)

    @property
    def name(self) -> str:
        """Canonical name, e.g. `GM+CL`."""
        parts = [p for p, on in ((self.server, self.server is not None), ("SL", self.sl),
                                 ("CL", self.cl)) if on and p]
        return "+".join(parts)


def dot(u: torch.Tensor, v: torch.Tensor) -> float:
    """<u, v> over all entries, accumulated in float64 (no float32 overflow on large models)."""
    return float(torch.dot(u.reshape(-1).to(torch.float64), v.reshape(-1).to(torch.float64)))


def update_hyper(a: float, h: float, *, lo: float = -math.inf, hi: float = math.inf,
                 beta: float = 1.0, normalized: bool = False) -> tuple[float, bool]:
    """One hypergradient step on the rate offset: a <- clip(a + beta * h, lo, hi).

    `h` is the inner product of consecutive updates (minus the hypergradient). With
    `normalized` the increment is sigmoid(0.1 * h), the authors' optional variant (always
    positive: the rate can only grow). Returns (new a, applied); a non-finite `h` or result
    leaves `a` unchanged and returns applied=False.
    """
    if not math.isfinite(h):
        return a, False
    inc = 0.5 * (1.0 + math.tanh(0.05 * h)) if normalized else h  # sigmoid(0.1 h), no overflow
    new = a + beta * inc
    if not math.isfinite(new):
        return a, False
    return min(hi, max(lo, new)), True


def g_step(delta: torch.Tensor, a: float) -> torch.Tensor:
    """FedHyper-G: the server step (1 + a) * Delta_t."""
    return (1.0 + a) * delta


def gm_step(delta: torch.Tensor, mom: torch.Tensor, a: float,
            beta_m: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """FedHyper-GM: step = (1 + a) Delta_t + beta_m * a * m_{t-1}; m_t = Delta_t + beta_m m_{t-1}.

    The momentum term is scaled by `a`, not by 1 + a (spec P11): a = 0 is plain FedAvg and a
    negative `a` subtracts momentum. Returns (step, new momentum).
    """
    step = (1.0 + a) * delta + (beta_m * a) * mom
    return step, delta + beta_m * mom


def sl_window(lr0: float, mode: str, lr_lo: float, lr_hi: float,
              gamma_beta: float) -> tuple[float, float]:
    """Bounds of the server-side local rate.

    `absolute`: [lr_lo, lr_hi] (released code); `relative`: [lr0 / gamma_beta,
    lr0 * gamma_beta] (the paper's gamma_beta, form unverified).
    """
    if mode == "relative":
        return lr0 / gamma_beta, lr0 * gamma_beta
    return lr_lo, lr_hi


def sl_rate(lr0: float, a_sl: float, lo: float, hi: float) -> float:
    """FedHyper-SL: the local rate every client uses next round, clip(lr0 * (1 + a_sl))."""
    return min(hi, max(lo, lr0 * (1.0 + a_sl)))


# ---------------------------------------------------------------------------------------------
# The strategy


def a_bounds(params: DictConfig, server: str | None) -> tuple[float, float]:
    """Clip interval of `a` for the G or GM rule (config values)."""
    if server == "GM":
        return float(params.a_clip_gm_lo), float(params.a_clip_gm_hi)
    return float(params.a_clip_g_lo), float(params.a_clip_g_hi)


def validate_cl_config(cfg: DictConfig) -> None:
    """Checks of `strategy.cl.*` (the client-side rule), shared with fedhyper_adam."""
    cap = check_float(cfg, "strategy.cl.step_cap", 0.0, lo_open=True)
    lo = check_float(cfg, "strategy.cl.mult_lo", 0.0, lo_open=True)
    hi = check_float(cfg, "strategy.cl.mult_hi", 0.0, lo_open=True)
    assert cap is not None and lo is not None and hi is not None
    check_bounds(lo, hi, "strategy.cl.mult_lo", "strategy.cl.mult_hi")
    if not lo <= 1.0 <= hi:
        raise UserError(f"strategy.cl.mult_lo={lo:g} and strategy.cl.mult_hi={hi:g} must "
                        "enclose 1 (the multiplier starts at 1 every round)")
    check_float(cfg, "strategy.cl.global_weight")
    check_float(cfg, "strategy.cl.hyper_lr", 0.0)
    check_bool(cfg, "strategy.cl.persist")


class FedHyper(ServerOpt):
    """FedHyper-G / GM / SL / CL and their combinations (`strategy.variant`).

    State: `a` (global-rate offset, eta_g = 1 + a, a_0 = eta_g0 - 1), `mom` (GM momentum),
    `a_sl` (SL offset, unclipped, kept across rounds unless `sl_reset_each_round`), the raw
    previous update (base class). CL lives on the clients (clients/adaptive_rate.py); the server
    only sends it Delta_{t-1}.
    """

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        p = cfg.strategy
        variant = Variant.parse(str(p.variant))
        for rule in ("g", "gm"):
            lo_key, hi_key = f"strategy.a_clip_{rule}_lo", f"strategy.a_clip_{rule}_hi"
            lo = check_float(cfg, lo_key)
            hi = check_float(cfg, hi_key)
            assert lo is not None and hi is not None
            check_bounds(lo, hi, lo_key, hi_key)
            if lo <= -1.0:
                raise UserError(f"{lo_key}={lo:g} allows a global rate 1 + a <= 0; keep it "
                                "above -1")
        eta0 = check_float(cfg, "strategy.eta_g0")
        assert eta0 is not None
        if eta0 <= 0:
            raise UserError(f"strategy.eta_g0={eta0:g}: the initial global rate must be > 0")
        if variant.server is not None:
            lo, hi = a_bounds(p, variant.server)
            if not 1 + lo <= eta0 <= 1 + hi:
                rule = variant.server.lower()
                raise UserError(f"strategy.eta_g0={eta0:g} is outside the {variant.server} "
                                f"rate range [{1 + lo:g}, {1 + hi:g}] (1 + strategy.a_clip_"
                                f"{rule}_lo/hi); change eta_g0 or the bounds")
        check_float(cfg, "strategy.hyper_lr", 0.0)
        check_float(cfg, "strategy.server_momentum", 0.0, 1.0, hi_open=True)
        check_bool(cfg, "strategy.normalized_hypergrad")
        check_bool(cfg, "strategy.sl_reset_each_round")
        mode = check_choice(cfg, "strategy.sl.bounds", ["absolute", "relative"])
        lr_lo = check_float(cfg, "strategy.sl.lr_lo", 0.0, lo_open=True)
        lr_hi = check_float(cfg, "strategy.sl.lr_hi", 0.0, lo_open=True)
        assert lr_lo is not None and lr_hi is not None
        check_bounds(lr_lo, lr_hi, "strategy.sl.lr_lo", "strategy.sl.lr_hi")
        check_float(cfg, "strategy.sl.gamma_beta", 1.0)
        if variant.sl and mode == "absolute" and not lr_lo <= float(cfg.client.lr) <= lr_hi:
            raise UserError(f"client.lr={cfg.client.lr:g} is outside the SL window "
                            f"[{lr_lo:g}, {lr_hi:g}] (strategy.sl.lr_lo/lr_hi); widen it or "
                            "use strategy.sl.bounds=relative")
        validate_cl_config(cfg)

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        p = self.params
        self.variant = Variant.parse(str(p.variant))
        self.sends_prev_delta = self.variant.cl
        self.eta_g0 = float(p.eta_g0)
        self.a = self.eta_g0 - 1.0
        self.a_lo, self.a_hi = a_bounds(p, self.variant.server)
        self.beta = float(p.hyper_lr)
        self.beta_m = float(p.server_momentum)
        self.normalized = bool(p.normalized_hypergrad)
        self.mom: torch.Tensor | None = None
        self.a_sl = 0.0
        self.lr0 = float(self.cfg.client.lr)
        self.sl_lo, self.sl_hi = sl_window(self.lr0, str(p.sl.bounds), float(p.sl.lr_lo),
                                           float(p.sl.lr_hi), float(p.sl.gamma_beta))
        self.global_rate = self.eta_g0

    @override
    def local_lr(self, server_round: int) -> float:
        if self.variant.sl and not bool(self.params.sl_reset_each_round):
            return sl_rate(self.lr0, self.a_sl, self.sl_lo, self.sl_hi)
        # released code (spec P1): the per-client rate list is rebuilt from --lr every round
        return self.lr0

    def _hyper(self, server_round: int, a: float, h: float, lo: float, hi: float,
               what: str) -> tuple[float, int]:
        new, ok = update_hyper(a, h, lo=lo, hi=hi, beta=self.beta, normalized=self.normalized)
        if not ok:
            log.warning("round %d: non-finite %s hypergradient (%s); rate left at %g", server_round,
                        what, h, 1.0 + a)
        return new, int(not ok)

    @override
    def server_step(self, inp: RoundInput) -> tuple[torch.Tensor, dict[str, float]]:
        v, delta, prev = self.variant, inp.delta, self.prev_delta
        metrics: dict[str, float] = {}
        skipped = 0
        if v.server == "G":
            if prev is not None:
                h = dot(prev, delta)
                metrics["hypergrad"] = h
                self.a, bad = self._hyper(inp.server_round, self.a, h, self.a_lo, self.a_hi,
                                          "global")
                skipped += bad
            step = g_step(delta, self.a)
        elif v.server == "GM":
            if self.mom is not None:
                h = dot(self.mom, delta)
                metrics["hypergrad"] = h
                self.a, bad = self._hyper(inp.server_round, self.a, h, self.a_lo, self.a_hi,
                                          "global")
                skipped += bad
            mom = self.mom if self.mom is not None else torch.zeros_like(delta)
            step, self.mom = gm_step(delta, mom, self.a, self.beta_m)
        else:
            step = self.eta_g0 * delta
        if v.server is not None:
            self.global_rate = 1.0 + self.a
        if v.sl and prev is not None:
            h_sl = dot(prev, delta)
            metrics["hypergrad_sl"] = h_sl
            self.a_sl, bad = self._hyper(inp.server_round, self.a_sl, h_sl, -math.inf, math.inf,
                                         "SL")
            skipped += bad
        if v.sl:
            metrics["lr_local_next"] = self.local_lr(inp.server_round + 1)
        metrics["hypergrad_skipped"] = float(skipped)
        return step, metrics

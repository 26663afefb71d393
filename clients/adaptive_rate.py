"""Local training at the rate the server sends, optionally adapted per step by a hypergradient.

What it is: FedAvg-style training from the received global model, at the learning rate the
server sends each round (server-side schedules and optimizers: FedHyper's G/GM/SL, FedAdam,
FedAdagrad, FedExp, decay baselines), plus FedHyper's client-side hypergradient rate (CL) when
the server turns it on. One client class for all of these, so every method in a comparison
trains with the same code. With CL on (the server says so in the config and sends the previous
raw global update Delta_{t-1}), the learning rate changes after every local step, following
the authors' released client (spec section 2, "FedHyper-CL"):

* the rate is base_lr * mu, mu = 1 at the start of each round (or carried over with
  `strategy.cl.persist=true`);
* the first mini-batch of every local epoch only steps (spec P9);
* after every later step, s = theta_after - theta_before is the actual parameter displacement
  (the optimiser's step, momentum or Adam preconditioning included, spec P4);
  x = global_weight * <s, Delta_{t-1}> / K (K clients sampled this round), y = <s, p> with p the
  previous displacement (Delta_{t-1} for the first measured step); gamma = min(step_cap,
  1 + x + y) with no lower cap (spec P12); mu <- clip(gamma * mu, mult_lo, mult_hi); p <- s.

`strategy.cl.hyper_lr` (beta_cl, default 1 = the released code) scales x + y. It is an
extension: the raw inner products grow with the number of parameters and with the square of
the rate (spec P4), so on models far smaller than the paper's ResNet-18 the rule barely moves
the rate unless beta_cl compensates (see docs/fedhyper.md).

A non-finite x + y skips the update (mu and p unchanged) and is counted in `cl_nonfinite`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from flwr.app import RecordDict
from torch import nn
from typing_extensions import override

from fedplat.core.client import Client, ClientState, eval_reply, train_reply
from fedplat.core.records import from_record
from fedplat.training.loops import make_optimizer, train


@dataclass(frozen=True)
class CLParams:
    """Constants of the client-side rule (`strategy.cl.*`)."""

    step_cap: float = 1.1
    mult_lo: float = 0.1
    mult_hi: float = 10.0
    global_weight: float = 0.1
    hyper_lr: float = 1.0


def cl_gamma(s_dot_global: float, s_dot_prev: float, num_sampled: int,
             global_weight: float, step_cap: float, hyper_lr: float = 1.0) -> float | None:
    """Per-step factor gamma = min(step_cap, 1 + beta_cl (w <s, Delta_{t-1}> / K + <s, p>)).

    None when the sum is not finite (the caller skips the update).
    """
    g = 1.0 + hyper_lr * (global_weight * s_dot_global / num_sampled + s_dot_prev)
    if not math.isfinite(g):
        return None
    return min(step_cap, g)


def cl_multiplier(mu: float, gamma: float, lo: float, hi: float) -> tuple[float, int, int]:
    """The new multiplier clip(gamma * mu, lo, hi), and whether it was cut at the floor/ceiling."""
    new = gamma * mu
    if new < lo:
        return lo, 1, 0
    if new > hi:
        return hi, 0, 1
    return new, 0, 0


def _dot(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(torch.dot(u.to(torch.float64), v.to(torch.float64)))


class CLController:
    """Tracks one client round: feed it the parameters after every step, get the multiplier.

    Pure in the sense that it sees only flat vectors (no model, no optimiser), so the rule is
    testable with hand-computed numbers.
    """

    def __init__(self, theta0: torch.Tensor, prev_global: torch.Tensor, num_sampled: int,
                 params: CLParams, mu: float = 1.0) -> None:
        self.theta = theta0.detach().clone()
        self.global_update = prev_global.detach().reshape(-1)
        self.prev = self.global_update
        self.k = max(1, int(num_sampled))
        self.params = params
        self.mu = mu
        self.mu_min = self.mu_max = mu
        self.updates = self.floor_hits = self.ceil_hits = self.nonfinite = 0

    def observe(self, theta: torch.Tensor, first_of_epoch: bool) -> float:
        """Parameters after a step -> multiplier for the next step."""
        theta = theta.detach()
        s = theta - self.theta
        self.theta = theta.clone()
        if first_of_epoch:
            return self.mu
        p = self.params
        gamma = cl_gamma(_dot(s, self.global_update), _dot(s, self.prev), self.k,
                         p.global_weight, p.step_cap, p.hyper_lr)
        if gamma is None:
            self.nonfinite += 1
            return self.mu
        self.mu, floor, ceil = cl_multiplier(self.mu, gamma, p.mult_lo, p.mult_hi)
        self.floor_hits += floor
        self.ceil_hits += ceil
        self.updates += 1
        self.mu_min, self.mu_max = min(self.mu_min, self.mu), max(self.mu_max, self.mu)
        self.prev = s
        return self.mu


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _flat(params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


class AdaptiveRateClient(Client):
    """Trains the received global model; adapts its rate per step when the server asks (CL)."""

    def cl_params(self) -> CLParams:
        """`strategy.cl.*`, or the released code's constants when the strategy has none."""
        cl = self.cfg.strategy.get("cl")
        if cl is None:
            return CLParams()
        return CLParams(float(cl.step_cap), float(cl.mult_lo), float(cl.mult_hi),
                        float(cl.global_weight), float(cl.get("hyper_lr", 1.0)))

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        model = self.load(self.new_model(), from_record(payload["arrays"]))
        conf = payload["config"]
        lr = float(conf["lr"])
        c = self.cfg.client
        opt = make_optimizer(model.parameters(), c, lr=lr)
        ctrl: CLController | None = None
        hook = None
        cl_cfg = self.cfg.strategy.get("cl")
        persist = bool(cl_cfg.persist) if cl_cfg is not None else False
        if bool(conf.get("cl", False)):
            named = _trainable(model)
            params = [p for _, p in named]
            prev_rec = from_record(payload["prev_delta"])
            prev = torch.cat([prev_rec[n].reshape(-1).to(self.device, torch.float32)
                              for n, _ in named])
            saved = state.get_values("cl") if persist else None
            mu0 = float(saved["mu"]) if saved else 1.0
            ctrl = CLController(_flat(params), prev, int(conf["num_sampled"]),
                                self.cl_params(), mu=mu0)
            for g in opt.param_groups:
                g["lr"] = lr * mu0
            controller = ctrl

            def hook(epoch: int, batch: int) -> None:
                mu = controller.observe(_flat(params), first_of_epoch=batch == 0)
                for g in opt.param_groups:
                    g["lr"] = lr * mu

        result = train(model, self.data.x_train, self.data.y_train, opt,
                       epochs=int(c.local_epochs), batch_size=int(c.batch_size),
                       generator=self.generator(server_round), after_step=hook)
        if ctrl is None:
            rates = {"lr_initial": lr, "lr_final": lr, "lr_min": lr, "lr_max": lr}
        else:
            if persist:
                state.set_values("cl", {"mu": ctrl.mu})
            rates = {"lr_initial": lr, "lr_final": lr * ctrl.mu,
                     "lr_min": lr * ctrl.mu_min, "lr_max": lr * ctrl.mu_max,
                     "cl_updates": ctrl.updates, "cl_floor_hits": ctrl.floor_hits,
                     "cl_ceil_hits": ctrl.ceil_hits, "cl_nonfinite": ctrl.nonfinite}
        return train_reply(result, model.state_dict(), **rates)

    @override
    def evaluate(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        model = self.load(self.new_model(), from_record(payload["arrays"]))
        return eval_reply(self.eval_metrics(model))

"""Shared server half of FedHyper and its baselines: average the clients, then step.

x_t are the global *trainable parameters*. Clients start from the global model and return
their trained weights; the server forms Delta_t = avg_i(x_i) - x_t over the trainable
parameters only (spec P7: buffers such as BatchNorm statistics are not part of any rule; they
take the plain average). The average is the unweighted mean over the clients that replied,
as in FedHyper's released code (spec P5), or weighted by training samples with
`strategy.weighted_avg=true`; the hypergradients and the step always use the same average.

A subclass turns Delta_t into a server step (`server_step`) and may choose the local rate sent
to clients (`local_lr`). The raw Delta_t (never the scaled step, spec P8) is kept as
`prev_delta` and, when the client rule needs it (FedHyper-CL), sent to every client next round
as its own ArrayRecord, so it is counted in the downlink bytes.

Every round returns the rates in use: `lr_global` (the effective global rate, where a subclass
has one), `lr_local` (the rate sent to clients) and, from the clients' replies, the mean/min/max
of the client rates at the end of local training (`lr_client_*`). `write_artifacts` draws
them as `rates.png`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from flwr.app import ConfigRecord, RecordDict
from omegaconf import DictConfig, OmegaConf
from typing_extensions import override

from fedplat.core import ops
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.core.strategy import ClientInfo, Strategy
from fedplat.errors import UserError

log = logging.getLogger("fedplat")


def check_bool(cfg: DictConfig, key: str) -> bool:
    """A boolean key (true/false)."""
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        raise UserError(f"{key}={value!r} must be true or false")
    return value


def check_bounds(lo: float, hi: float, lo_key: str, hi_key: str) -> None:
    """Raise a one-line UserError naming both keys when lo > hi."""
    if lo > hi:
        raise UserError(f"{lo_key}={lo:g} is above {hi_key}={hi:g}; the lower bound must not "
                        "exceed the upper bound")


@dataclass(frozen=True)
class RoundInput:
    """What a server rule sees in one round (all vectors over trainable parameters)."""

    server_round: int
    x: torch.Tensor  # global parameters the clients started from
    delta: torch.Tensor  # raw averaged update, avg_i(x_i) - x
    client_deltas: dict[int, torch.Tensor]  # x_i - x per client that was averaged
    weights: dict[int, float]  # normalised averaging weights (sum to 1)


def client_rate_stats(replies: Mapping[int, RecordDict]) -> dict[str, float]:
    """Client-rate statistics of a round from the replies of `AdaptiveRateClient`.

    Mean/min/max of the clients' final local rates, their per-step extremes, and the summed
    CL counters.
    """
    per = [metrics_of(rd) for _, rd in sorted(replies.items())]
    final = [m["lr_final"] for m in per if "lr_final" in m]
    out: dict[str, float] = {}
    if final:
        out["lr_client_mean"] = sum(final) / len(final)
        out["lr_client_min"] = min(final)
        out["lr_client_max"] = max(final)
    lows = [m["lr_min"] for m in per if "lr_min" in m]
    highs = [m["lr_max"] for m in per if "lr_max" in m]
    if lows:
        out["lr_client_step_min"] = min(lows)
        out["lr_client_step_max"] = max(highs)
    for key in ("cl_updates", "cl_floor_hits", "cl_ceil_hits", "cl_nonfinite"):
        vals = [m[key] for m in per if key in m]
        if vals:
            out[f"{key}_total"] = float(sum(vals))
    return out


class ServerOpt(Strategy):
    """Global model + a server rule over the averaged update. Subclasses set `server_step`."""

    #: Send the previous raw update to the clients (FedHyper-CL needs it).
    sends_prev_delta: bool = False
    #: Whether this strategy has a global rate to log as `lr_global`.
    logs_global_rate: bool = True
    has_global_model: ClassVar[bool] = True

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        check_bool(cfg, "strategy.weighted_avg")

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        model = self.initial_model()
        self.trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        self.global_state = ops.clone(model.state_dict())
        self.shapes = {k: self.global_state[k].shape for k in self.trainable}
        self.dtypes = {k: self.global_state[k].dtype for k in self.trainable}
        self.prev_delta: torch.Tensor | None = None
        self.sent_lr = float(self.cfg.client.lr)
        self.global_rate = 1.0
        self.weighted = bool(self.params.get("weighted_avg", False))

    @override
    def global_model(self) -> dict[str, torch.Tensor] | None:
        return self.global_state

    # -- vectors <-> state dicts ----------------------------------------------------------

    def vector(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Trainable parameters of `state` as one float32 vector (named_parameters order)."""
        return ops.flatten(state, self.trainable)

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of `vector`."""
        out, start = {}, 0
        for k in self.trainable:
            n = math.prod(self.shapes[k])
            out[k] = vec[start:start + n].reshape(self.shapes[k]).to(self.dtypes[k]).clone()
            start += n
        return out

    # -- what subclasses define -----------------------------------------------------------

    def local_lr(self, server_round: int) -> float:
        """Learning rate the clients start local training with in round `server_round`."""
        return float(self.cfg.client.lr)

    def server_step(self, inp: RoundInput) -> tuple[torch.Tensor, dict[str, float]]:
        """The step added to x_t, and round metrics. Sets `self.global_rate` if it has one."""
        raise NotImplementedError

    # -- rounds ---------------------------------------------------------------------------

    def _train_payload(self, server_round: int, num_sampled: int) -> RecordDict:
        self.sent_lr = self.local_lr(server_round)
        content = RecordDict({"arrays": to_record(self.global_state)})
        content["config"] = ConfigRecord({"lr": self.sent_lr, "num_sampled": num_sampled,
                                          "cl": self.sends_prev_delta})
        if self.sends_prev_delta:
            prev = self.prev_delta if self.prev_delta is not None else torch.zeros(
                sum(math.prod(s) for s in self.shapes.values()))
            content["prev_delta"] = to_record(self.unflatten(prev))
        return content

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        content = self._train_payload(server_round, len(cids))  # one record shared by all messages
        return {cid: content for cid in cids}

    @override
    def aggregate_train(self, server_round: int, replies: dict[int, RecordDict],
                        failures: dict[int, str]) -> dict[str, float]:
        x = self.vector(self.global_state)
        states: dict[int, dict[str, torch.Tensor]] = {}
        deltas: dict[int, torch.Tensor] = {}
        bad = []
        for cid, rd in sorted(replies.items()):
            state = from_record(rd["arrays"])
            d = self.vector(state) - x
            if bool(torch.isfinite(d).all()):
                states[cid], deltas[cid] = state, d
            else:
                bad.append(cid)
        metrics: dict[str, float] = {"nonfinite_clients": float(len(bad))}
        if bad:
            log.warning("round %d: ignoring clients %s: non-finite weights", server_round, bad)
        if not states:
            log.warning("round %d: no usable client update; the global model is unchanged",
                        server_round)
            return metrics
        raw = {cid: float(metrics_of(replies[cid])["num-examples"]) if self.weighted else 1.0
               for cid in states}
        total = sum(raw.values())
        weights = {cid: w / total for cid, w in raw.items()}
        avg = ops.weighted_average(states, weights)
        delta = self.vector(avg) - x
        step, extra = self.server_step(RoundInput(server_round, x, delta, deltas, weights))
        if not bool(torch.isfinite(step).all()):
            log.warning("round %d: non-finite server step; applying the plain average",
                        server_round)
            step, metrics["nonfinite_step"] = delta, 1.0
        new = dict(avg)  # buffers: plain average
        new.update(self.unflatten(x + step))
        self.global_state = new
        self.prev_delta = delta
        metrics.update(extra)
        metrics["delta_norm"] = float(delta.norm())
        metrics["update_norm"] = float(step.norm())
        metrics["lr_local"] = self.sent_lr
        if self.logs_global_rate:
            metrics["lr_global"] = self.global_rate
        metrics.update(client_rate_stats({c: replies[c] for c in states}))
        return metrics

    @override
    def configure_evaluate(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        content = RecordDict({"arrays": to_record(self.global_state)})
        return {cid: content for cid in cids}

    @override
    def summary(self) -> dict[str, Any]:
        return {"lr_global_last": self.global_rate, "lr_local_last": self.sent_lr}

    @override
    def write_artifacts(self, run_dir: Path, rows: list[dict[str, Any]]) -> None:
        title = " ".join(str(self.params.get(k)) for k in ("name", "variant") if k in self.params)
        plot_rates(rows, run_dir / "rates.png", title)


def plot_rates(rows: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> None:
    """Global rate (and server-side local rate) per round; client rates with min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(r["round"], float(r[key])) for r in rows if isinstance(r.get(key), int | float)]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("lr_global", "global rate"),):
        xs, ys = series(key)
        if xs:
            ax1.plot(xs, ys, label=label)
    ax1.set_xlabel("round")
    ax1.set_ylabel("global rate")
    ax1.set_title(f"{title} global rate".strip())
    ax1.grid(alpha=0.3)
    xs, mean = series("lr_client_mean")
    _, lo = series("lr_client_min")
    _, hi = series("lr_client_max")
    if xs:
        ax2.plot(xs, mean, label="client rate (mean, end of round)")
        if len(lo) == len(xs) and len(hi) == len(xs):
            ax2.fill_between(xs, lo, hi, alpha=0.25, label="min-max over clients")
    xs2, sent = series("lr_local")
    if xs2:
        ax2.plot(xs2, sent, ls="--", label="rate sent to clients")
    xs3, smin = series("lr_client_step_min")
    _, smax = series("lr_client_step_max")
    if xs3 and len(smax) == len(xs3):
        ax2.plot(xs3, smin, ls=":", c="grey", lw=0.8, label="per-step extremes")
        ax2.plot(xs3, smax, ls=":", c="grey", lw=0.8)
    ax2.set_yscale("log")
    ax2.set_xlabel("round")
    ax2.set_ylabel("local rate")
    ax2.set_title("client learning rates")
    ax2.grid(alpha=0.3)
    for ax in (ax1, ax2):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

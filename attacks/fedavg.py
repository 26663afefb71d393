"""FedAvg's threat model: the server sees the global weights it sent and the weights returned.

The upload is w_K after K local SGD steps from w_0, so the attacker replays K full-batch steps
from w_0 (known: it sent them) on a candidate batch and compares w_K - w_0 with the observed
difference. Known: the model structure, the client's optimiser (SGD, momentum, weight decay,
lr as sent), the local epochs, and the batch size n (the reply's num-examples), which must fit
in one batch (each epoch is one step on all n images). Labels: from the change of the last
layer's bias (iDLG).
"""

from __future__ import annotations

import torch
from typing_extensions import override

from fedplat.errors import UserError
from fedplat.models.hypernet import head_names, skeleton
from fedplat.privacy.capture import Capture
from fedplat.privacy.threat import (
    AttackProblem,
    Knowledge,
    SGDSpec,
    ThreatModel,
    arrays,
    bias_scores,
    num_images,
    one_step_per_epoch,
    replay_sgd,
)


class FedAvgThreat(ThreatModel):
    """Weights down, weights up (also DP variants: the attacker ignores clipping and noise)."""

    name = "fedavg"

    @override
    def build(self, capture: Capture, knowledge: Knowledge,
              generator: torch.Generator) -> AttackProblem:
        cfg = knowledge.cfg
        ex = capture.main
        w0, w1 = arrays(ex.sent), arrays(ex.reply)
        c = cfg.client
        n = num_images(capture, int(c.local_epochs))
        if str(c.optimizer) != "sgd":
            raise UserError(f"the fedavg threat model replays SGD; this run used "
                            f"client.optimizer={c.optimizer}")
        one_step_per_epoch(n, int(c.batch_size), "client.batch_size")
        config = ex.sent.get("config")
        lr = float(config["lr"]) if config is not None and "lr" in config else float(c.lr)
        steps = int(c.local_epochs)
        spec = SGDSpec(lr, float(c.momentum), float(c.weight_decay))
        target = skeleton(cfg.model, knowledge.info)
        names = [k for k, _ in target.named_parameters()]
        fixed = {k: v for k, v in w0.items() if k not in names}
        observed = {k: w1[k] - w0[k] for k in names}
        start = {k: w0[k] for k in names}

        def simulate(x: torch.Tensor, y: torch.Tensor, unknowns: object) -> dict[str, torch.Tensor]:
            final, _ = replay_sgd(target, start, fixed, x, y, steps, spec)
            return {k: final[k] - w0[k] for k in names}

        bias = [h for h in head_names(target) if h.endswith("bias")]
        scores = bias_scores(observed[bias[0]], lr * steps) if bias else None
        return AttackProblem(
            n, observed, simulate, {}, scores,
            [f"server knows w_0 (sent) and w_{steps} (uploaded)",
             f"client ran {steps} full-batch SGD step(s) on {n} image(s): lr {lr}, momentum "
             f"{spec.momentum}, weight decay {spec.weight_decay}",
             "model structure and input normalisation are public",
             "labels inferred from the last-layer bias update" if scores is not None
             else "labels optimised jointly"])

"""pFedHN's (and pFedHN-PC's) threat model: the server sent theta_i and receives delta-theta.

The server generated theta_i = h(E[i]) itself, so it knows the client's starting weights; the
reply is delta = theta_i - theta~_i after K inner SGD steps (momentum, weight decay, gradient
clipping to norm `clip` over the generated tensors). The attacker replays the K steps on a
candidate batch. Known: everything in the training message (K, lr, momentum, weight decay,
clip, batch size) and the batch size n (num-examples), which must fit in one batch (every step
then uses all n images).

pFedHN-PC: the target's head is private (never sent, trained jointly by its own SGD whose
momentum persists across rounds). The attacker guesses the head (a default-initialised layer)
and optimises it with the images; the head's momentum is taken as empty, which is exact in the
client's first training round. pFedHN: labels from the change of the generated head's bias.
"""

from __future__ import annotations

import torch
from typing_extensions import override

from fedplat.models import build_model
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


def guess_layers(cfg: object, knowledge: Knowledge, names: list[str],
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Default-initialised values for the named parameters (the attacker's own random draw)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(knowledge.cfg.model, knowledge.info)
    return {n: p.detach().clone() for n, p in model.named_parameters() if n in names}


class PFedHNThreat(ThreatModel):
    """theta down, delta-theta up; a private head (pFedHN-PC) is an unknown."""

    name = "pfedhn"

    @override
    def build(self, capture: Capture, knowledge: Knowledge,
              generator: torch.Generator) -> AttackProblem:
        cfg = knowledge.cfg
        ex = capture.main
        theta, delta = arrays(ex.sent), arrays(ex.reply)
        conf = ex.sent["config"]
        n = num_images(capture)
        one_step_per_epoch(n, int(conf["batch_size"]), "strategy.batch_size")
        steps, lr = int(conf["inner_steps"]), float(conf["lr"])
        spec = SGDSpec(lr, float(conf["momentum"]), float(conf["weight_decay"]),
                       float(conf["clip"]))
        head_spec = SGDSpec(lr, float(conf["momentum"]), float(conf["weight_decay"]))
        target = skeleton(cfg.model, knowledge.info)
        private = [k for k, _ in target.named_parameters() if k not in theta]
        unknowns = guess_layers(cfg, knowledge, private, generator) if private else {}

        def simulate(x: torch.Tensor, y: torch.Tensor,
                     guess: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            final, _ = replay_sgd(target, theta, {}, x, y, steps, spec,
                                  head=dict(guess) or None, head_spec=head_spec)
            return {k: theta[k] - final[k] for k in theta}

        bias = [h for h in head_names(target) if h.endswith("bias") and h in theta]
        scores = bias_scores(-delta[bias[0]], lr * steps) if bias else None
        facts = ["server knows theta_i (it generated it) and delta-theta (uploaded)",
                 f"client ran {steps} full-batch SGD step(s) on {n} image(s): lr {lr}, momentum "
                 f"{spec.momentum}, weight decay {spec.weight_decay}, clip {spec.clip}",
                 "model structure and input normalisation are public"]
        if private:
            facts.append(f"private head {', '.join(private)} unknown: guessed (default init) "
                         "and optimised; its momentum assumed empty (client's first round)")
        facts.append("labels inferred from the generated head's bias update"
                     if scores is not None else "labels optimised jointly")
        return AttackProblem(n, delta, simulate, unknowns, scores, facts)

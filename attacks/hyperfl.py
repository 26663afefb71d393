"""HyperFL's threat model: the server sees only the hypernetwork it sent and the one returned.

What the client uploads is varphi_K, its hypernetwork after phase B (K SGD steps of the
hypernetwork and the private embedding v, both clipped to norm `clip` separately, momentum,
weight decay); phase A before it trained the private classifier phi alone. To reproduce the
upload for a candidate batch the attacker also needs v and phi, which never leave the client.

* `init=unknown` (default; HyperFL's threat model, paper section 5): v and phi are unknowns,
  guessed (v ~ N(0, 1) like nn.Embedding, phi a default-initialised layer) and optimised
  jointly with the images and soft labels.
* `init=recovered` (a HyperFL-aware attack, same knowledge as `unknown`): v is read off the
  upload. The trunk's first layer is Linear(v): its gradient is the rank-1 matrix u v^T and its
  bias gradient is u, so v = G^T g / |g|^2 with (G, g) the observed first-layer update with the
  known weight decay removed; exact for one phase-B step, an estimate for several (v moves
  between steps). phi stays unknown (guessed and optimised), and so does the rest.
* `init=public`: the run's shared initial v and phi (strategies.hyperfl.initial_model) are
  taken as the client's state at the start of the round and phase A is replayed on the
  candidate batch. Exact in a client's first training round when all clients start from the
  same model (the released code's default, spec H4), since the server built that model too.

The hypernetwork's heads hold ~99% of its 15 M parameters and their per-step gradient is the
rank-1 matrix delta f^T (delta = dL/dtheta, f = trunk(v)). Replaying K steps of SGD with
momentum and weight decay keeps the heads in the form alpha W_0 + D diag(c) F^T (D, F: one
column per step), so the simulated update and its cosine with the observed one are computed
from K matrix-vector products with the observed update, never materialising a 15 M-entry
tensor per iteration (`PhaseBReplay.mismatch`; `PhaseBReplay.update` materialises it for
tests). Known: the hypernetwork architecture, phase-B settings from the training message, the
batch size n (num-examples, one batch per epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn
from typing_extensions import override

from fedplat.errors import UserError
from fedplat.models.hypernet import HyperNetwork, head_names, skeleton
from fedplat.privacy.capture import Capture
from fedplat.privacy.threat import (
    AttackProblem,
    Knowledge,
    SGDSpec,
    ThreatModel,
    UnrolledSGD,
    arrays,
    num_images,
    one_step_per_epoch,
    replay_sgd,
    soft_cross_entropy,
    upload_distance,
)
from strategies.hyperfl import body_spec, initial_model

Tensors = dict[str, torch.Tensor]
#: (x, y, guesses) -> (embedding, classifier) at the start of phase B
Start = Callable[[torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]],
                 tuple[torch.Tensor, Tensors]]


class _KnownMatVec(torch.autograd.Function):
    """W f with a precomputed value: the forward pass is free, the backward pass is W^T g.

    With a fixed embedding the first step's trunk output f does not change between attack
    iterations, but the replay still differentiates through it (trunk gradients), so the
    product keeps its graph while its 15 M-entry forward pass is done once.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, w: torch.Tensor, f: torch.Tensor,
                value: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return value.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        (w,) = ctx.saved_tensors
        return None, w.T @ grad, None


@dataclass
class Replayed:
    """Phase B replayed: heads as alpha W0 + D diag(c) F^T (bias alpha b0 + D c), trunk dense."""

    alpha: float
    c: torch.Tensor          # (K,)
    deltas: torch.Tensor     # (P, K): dL/dtheta per step
    feats: torch.Tensor      # (H, K): trunk(v) per step
    w0f_b0: torch.Tensor     # (P, K): W0 f_j + b0 per step
    trunk_delta: Tensors


class PhaseBReplay:
    """Differentiable replay of HyperFL's phase B from the hypernetwork the server sent."""

    def __init__(self, cfg: DictConfig, knowledge: Knowledge, sent: Tensors,
                 received: Tensors, conf: Mapping[str, object]) -> None:
        self.target = skeleton(cfg.model, knowledge.info)
        hn = cfg.strategy.hypernet
        with torch.device("meta"):
            hnet = HyperNetwork(body_spec(self.target), int(hn.embed_dim), int(hn.hidden),
                                int(hn.n_hidden), relu_out=True)
        self.trunk = hnet.trunk
        self.spec = hnet.spec
        self.head_rows = [h.out_features for h in hnet.heads]
        nheads = len(hnet.heads)
        wk = [f"heads.{i}.weight" for i in range(nheads)]
        bk = [f"heads.{i}.bias" for i in range(nheads)]
        self.trunk_keys = [k for k in sent if k.startswith("trunk.")]
        missing = set(wk + bk + self.trunk_keys) ^ set(sent)
        if missing:
            raise UserError("the captured hypernetwork does not match the run's configuration "
                            f"(unexpected or missing entries: {sorted(missing)[:3]})")
        self.w0 = torch.cat([sent[k] for k in wk])
        self.b0 = torch.cat([sent[k] for k in bk])
        self.t0 = {k[len("trunk."):]: sent[k] for k in self.trunk_keys}
        self.dw_obs = torch.cat([received[k] for k in wk]) - self.w0
        self.db_obs = torch.cat([received[k] for k in bk]) - self.b0
        self.dt_obs = {k[len("trunk."):]: received[k] - sent[k] for k in self.trunk_keys}
        self.steps = int(conf["local_epochs"])  # type: ignore[call-overload]
        self.lr = float(conf["lr"])  # type: ignore[arg-type]
        self.momentum = float(conf["momentum"])  # type: ignore[arg-type]
        self.wd = float(conf["weight_decay"])  # type: ignore[arg-type]
        self.clip = float(conf["clip"])  # type: ignore[arg-type]
        # constants of the cosine
        d = torch.float64
        self.w0_dot_obs = float((self.w0.to(d) * self.dw_obs.to(d)).sum()
                                + (self.b0.to(d) * self.db_obs.to(d)).sum())
        self.w0_sq = float(self.w0.to(d).pow(2).sum() + self.b0.to(d).pow(2).sum())
        self._known: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.obs_sq = float(self.dw_obs.to(d).pow(2).sum() + self.db_obs.to(d).pow(2).sum()
                            + sum(t.to(d).pow(2).sum() for t in self.dt_obs.values()))

    def theta(self, flat: torch.Tensor) -> Tensors:
        """Generated target tensors from their flat vector."""
        parts = flat.split(self.head_rows)
        return {n: p.reshape(s) for n, s, p in zip(self.spec.names, self.spec.shapes, parts)}

    def replay(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor,
               head: Mapping[str, torch.Tensor]) -> Replayed:
        """K phase-B steps from (varphi_0, v) with the classifier `head` frozen."""
        lr, m, wd = self.lr, self.momentum, self.wd
        trunk = {k: t.detach().requires_grad_(True) for k, t in self.t0.items()}
        tnames = list(trunk)
        tparams = [trunk[k] for k in tnames]
        topt = UnrolledSGD(SGDSpec(lr, m, wd))
        vopt = UnrolledSGD(SGDSpec(lr, m, wd, self.clip))
        v_cur = v if v.requires_grad else v.detach().requires_grad_(True)
        alpha, beta = 1.0, 0.0
        c: list[torch.Tensor] = []
        e: list[torch.Tensor] = []
        deltas: list[torch.Tensor] = []
        feats: list[torch.Tensor] = []
        w0fb: list[torch.Tensor] = []
        for j in range(self.steps):
            f = torch.func.functional_call(self.trunk, dict(zip(tnames, tparams)), (v_cur,))
            if j == 0 and not v.requires_grad:  # the first f is the same every iteration
                base = _KnownMatVec.apply(self.w0, f, self._products(v, f)[1]) + self.b0
            else:
                base = self.w0 @ f + self.b0
            flat = alpha * base
            for i in range(j):
                flat = flat + c[i] * deltas[i] * (feats[i] @ f + 1.0)
            logits = torch.func.functional_call(self.target, {**self.theta(flat), **head}, (x,))
            loss = soft_cross_entropy(logits, y)
            grads = torch.autograd.grad(loss, [flat, *tparams, v_cur], create_graph=True)
            delta, gt, gv = grads[0], list(grads[1:-1]), grads[-1]
            sq = delta.pow(2).sum() * (f.pow(2).sum() + 1.0) + sum(g.pow(2).sum() for g in gt)
            s = torch.clamp(self.clip / (torch.sqrt(sq) + 1e-6), max=1.0)
            # heads: torch SGD with gradient s * delta f^T (bias: s * delta), exactly
            c = [*c, torch.zeros((), dtype=delta.dtype)]
            dc = [wd * ci for ci in c]
            dc[-1] = dc[-1] + s
            d0 = wd * alpha
            if j == 0:
                beta, e = d0, dc
            else:
                beta = m * beta + d0
                e = [m * ei + di for ei, di in zip([*e, torch.zeros(())], dc)]
            alpha = alpha - lr * beta
            c = [ci - lr * ei for ci, ei in zip(c, e)]
            deltas.append(delta)
            feats.append(f)
            w0fb.append(base)
            tparams = topt.step(tparams, [s * g for g in gt])
            (v_cur,) = vopt.step([v_cur], [gv])
        return Replayed(alpha, torch.stack(c), torch.stack(deltas, 1), torch.stack(feats, 1),
                        torch.stack(w0fb, 1),
                        {k: p - self.t0[k] for k, p in zip(tnames, tparams)})

    def _products(self, v: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                     torch.Tensor]:
        """(v, W0 f, dW_obs f) for a fixed embedding, computed once."""
        if self._known is None or not torch.equal(self._known[0], v.detach()):
            fd = f.detach()
            self._known = (v.detach().clone(), self.w0 @ fd, self.dw_obs @ fd)
        return self._known

    def mismatch(self, r: Replayed, kind: str, v: torch.Tensor | None = None) -> torch.Tensor:
        """1 - cos(simulated update, observed update), or their squared L2 distance.

        `v`: the embedding the replay started from, when it is fixed (reuses dW_obs f_0).
        """
        a1 = r.alpha - 1.0
        if v is not None and not v.requires_grad:
            first = _KnownMatVec.apply(self.dw_obs, r.feats[:, 0], self._products(
                v, r.feats[:, 0])[2])
            rest = self.dw_obs @ r.feats[:, 1:]
            obs_f = torch.cat([first[:, None], rest], 1) + self.db_obs[:, None]
        else:
            obs_f = self.dw_obs @ r.feats + self.db_obs[:, None]      # (P, K)
        dot = a1 * self.w0_dot_obs + (r.c * (r.deltas * obs_f).sum(0)).sum()
        gram = (r.deltas.T @ r.deltas) * (r.feats.T @ r.feats + 1.0)  # (K, K)
        sim_sq = (a1 ** 2) * self.w0_sq + 2 * a1 * (r.c * (r.deltas * r.w0f_b0).sum(0)).sum() \
            + r.c @ gram @ r.c
        for k, t in r.trunk_delta.items():
            dot = dot + (t * self.dt_obs[k]).sum()
            sim_sq = sim_sq + t.pow(2).sum()
        if kind == "l2":  # relative, like fedplat.privacy.threat.upload_distance
            return (sim_sq - 2 * dot + self.obs_sq) / self.obs_sq
        return 1.0 - dot / (torch.sqrt(sim_sq.clamp(min=0)) * self.obs_sq ** 0.5 + 1e-12)

    def update(self, r: Replayed) -> Tensors:
        """The simulated hypernetwork update, materialised (for tests and small models)."""
        a1 = r.alpha - 1.0
        dw = a1 * self.w0 + (r.deltas * r.c) @ r.feats.T
        db = a1 * self.b0 + r.deltas @ r.c
        out: Tensors = {}
        for i, (w, b) in enumerate(zip(dw.split(self.head_rows), db.split(self.head_rows))):
            out[f"heads.{i}.weight"] = w
            out[f"heads.{i}.bias"] = b
        out.update({f"trunk.{k}": t for k, t in r.trunk_delta.items()})
        return out

    def observed(self) -> Tensors:
        """The observed update in the same layout as `update`."""
        out: Tensors = {}
        for i, (w, b) in enumerate(zip(self.dw_obs.split(self.head_rows),
                                       self.db_obs.split(self.head_rows))):
            out[f"heads.{i}.weight"] = w
            out[f"heads.{i}.bias"] = b
        out.update({f"trunk.{k}": t for k, t in self.dt_obs.items()})
        return out


def recover_embedding(replay: PhaseBReplay) -> torch.Tensor:
    """The client's embedding v from its upload: v = G^T g / |g|^2 (see module doc).

    (G, g) = -(observed first-layer update) / lr - weight_decay * (sent first layer): the
    clipped gradient s u v^T and s u of one SGD step (the momentum buffer starts empty).
    """
    w, b = replay.t0.get("0.weight"), replay.t0.get("0.bias")
    if w is None or b is None:
        raise UserError("init=recovered needs the hypernetwork trunk to start with a Linear "
                        "layer on the embedding")
    gw = -replay.dt_obs["0.weight"] / replay.lr - replay.wd * w
    gb = -replay.dt_obs["0.bias"] / replay.lr - replay.wd * b
    return (gw.double().T @ gb.double() / gb.double().pow(2).sum().clamp(min=1e-30)).float()


class HyperFLThreat(ThreatModel):
    """Hypernetwork down, hypernetwork up; embedding and classifier private (see module doc)."""

    name = "hyperfl"
    OPTIONS = {"init": ("unknown", "unknown: guess v and phi (the paper's threat model); "
                                   "recovered: v read off the trunk's first-layer update, "
                                   "phi guessed; public: the run's shared initial v and phi, "
                                   "phase A replayed (exact in a client's first round)")}

    @override
    def build(self, capture: Capture, knowledge: Knowledge,
              generator: torch.Generator) -> AttackProblem:
        mode = str(self.options["init"])
        if mode not in ("unknown", "recovered", "public"):
            raise UserError(f"option init={mode!r} is not valid (choose from: unknown, "
                            "recovered, public)")
        cfg = knowledge.cfg
        ex = capture.main
        conf = ex.sent["config"]
        n = num_images(capture)
        one_step_per_epoch(n, int(conf["batch_size"]), "strategy.batch_size")
        replay = PhaseBReplay(cfg, knowledge, arrays(ex.sent), arrays(ex.reply), conf)
        heads = head_names(replay.target)
        facts = ["server knows varphi_t (sent) and varphi_i (uploaded), nothing else",
                 f"phase B: {replay.steps} full-batch step(s) on {n} image(s): lr {replay.lr}, "
                 f"momentum {replay.momentum}, weight decay {replay.wd}, clip {replay.clip}",
                 "hypernetwork/target structure and input normalisation are public",
                 "labels optimised jointly (no classifier update is visible)"]
        if mode == "unknown":
            unknowns = self._guess(cfg, knowledge, heads, generator)

            def start(x: torch.Tensor, y: torch.Tensor, guess: Mapping[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, Tensors]:
                return guess["embedding"], {k: guess[k] for k in heads}

            facts.insert(1, "embedding v and classifier phi unknown: guessed (v ~ N(0, 1), "
                            "default-initialised phi) and optimised with the images")
        elif mode == "recovered":
            guess = self._guess(cfg, knowledge, heads, generator)
            unknowns = {k: guess[k] for k in heads}
            v_hat = recover_embedding(replay)

            def start(x: torch.Tensor, y: torch.Tensor, guess: Mapping[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, Tensors]:
                return v_hat, {k: guess[k] for k in heads}

            facts.insert(1, "embedding v recovered from the upload (rank-1 first-layer update "
                            "of the trunk; exact for one phase-B step), classifier phi unknown: "
                            "guessed and optimised with the images")
        else:
            unknowns = {}
            start = self._public_start(cfg, capture, replay, heads, conf)
            facts.insert(1, "v and phi = the run's shared initial values (HyperFL gives every "
                            "client the same initial model); phase A replayed on the batch")

        def mismatch(x: torch.Tensor, y: torch.Tensor, guess: Mapping[str, torch.Tensor],
                     kind: str) -> torch.Tensor:
            v, head = start(x, y, guess)
            return replay.mismatch(replay.replay(x, y, v, head), kind, v)

        def simulate(x: torch.Tensor, y: torch.Tensor,
                     guess: Mapping[str, torch.Tensor]) -> Tensors:
            v, head = start(x, y, guess)
            return replay.update(replay.replay(x, y, v, head))

        problem = AttackProblem(n, replay.observed(), simulate, unknowns, None, facts,
                                mismatch=mismatch)
        return problem

    @staticmethod
    def _guess(cfg: DictConfig, knowledge: Knowledge, heads: list[str],
               generator: torch.Generator) -> Tensors:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            v = nn.Embedding(1, int(cfg.strategy.hypernet.embed_dim)).weight.detach()[0]
            from fedplat.models import build_model

            target = build_model(cfg.model, knowledge.info)
        return {"embedding": v.clone(),
                **{k: p.detach().clone() for k, p in target.named_parameters() if k in heads}}

    @staticmethod
    def _public_start(cfg: DictConfig, capture: Capture, replay: PhaseBReplay,
                      heads: list[str], conf: Mapping[str, object]) -> Start:
        per_client = bool(cfg.strategy.get("per_client_init", False))
        init, v0, _ = initial_model(cfg, capture.client if per_client else None,
                                    with_hypernet=False)
        head0 = {k: p.detach() for k, p in init.named_parameters() if k in heads}
        with torch.no_grad():
            f0 = torch.func.functional_call(replay.trunk, replay.t0, (v0,))
            theta0 = replay.theta(replay.w0 @ f0 + replay.b0)
        spec = SGDSpec(float(conf["lr_classifier"]),  # type: ignore[arg-type]
                       float(conf["classifier_momentum"]),  # type: ignore[arg-type]
                       float(conf["weight_decay"]))  # type: ignore[arg-type]
        epochs = int(conf["classifier_epochs"])  # type: ignore[call-overload]

        def start(x: torch.Tensor, y: torch.Tensor, guess: Mapping[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, Tensors]:
            head, _ = replay_sgd(replay.target, head0, theta0, x, y, epochs, spec)
            return v0, head

        return start


__all__ = ["HyperFLThreat", "PhaseBReplay", "upload_distance"]

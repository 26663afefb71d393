"""SemiPFL user: fine-tunes its generated autoencoder on unlabeled data, mixes frozen base models.

Train step, main exchange: load theta_j, train the AE on every training sample with labels
ignored (MSE, Adam, gradients zeroed every batch: the released code zeroes once per epoch and
so accumulates them, spec P-S2), keep theta~_j as a candidate and return it. Phase "combine":
receive the base models the server trained on codes of theta~_j, fit the mixture weights on the
labeled samples only (uniform without labels), commit (AE, base models, weights) as the
personal model, report its weighted F1 on the test split. Evaluation uses the committed model,
or, for a user never trained, the AE and base models in the message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from flwr.app import MetricRecord, RecordDict
from torch import nn
from torch.nn import functional as F
from typing_extensions import override

from fedplat.core.client import Client, ClientState, eval_reply, train_reply
from fedplat.core.records import from_record
from fedplat.core.stage import Stage
from fedplat.training.loops import TrainResult, evaluate
from strategies.semipfl import (
    COMBINE,
    AutoEncoder,
    BaseModel,
    PersonalModel,
    autoencoder_of,
    base_log_probs,
    base_model_of,
    finetune_bases,
    fit_mixture,
    reconstruction_errors,
    unpack,
)


def train_autoencoder(ae: AutoEncoder, x: torch.Tensor, *, epochs: int, batch_size: int,
                      lr: float, generator: torch.Generator) -> TrainResult:
    """Fresh Adam on the MSE reconstruction loss; zero_grad every batch. Mean loss."""
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    ae.train()
    total, seen, steps = 0.0, 0, 0
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            opt.zero_grad(set_to_none=True)
            xb = x[idx.to(x.device)]
            loss = F.mse_loss(ae(xb), xb.flatten(1))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite AE loss {loss.item()}; lower "
                                         "strategy.ae_lr")
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            steps += 1
    ae.eval()
    return TrainResult(total / seen if seen else math.nan, seen, steps)


class SemiPFLClient(Client):
    """State: `ae_candidate` (after the AE step), then `ae`, `bases`, `mix` (personal model)."""

    def autoencoder(self, state: Mapping[str, torch.Tensor]) -> AutoEncoder:
        """The configured AE with the given weights, on this client's device."""
        ae = autoencoder_of(self.cfg, self.data.info).to(self.device)
        return self.load(ae, state)  # type: ignore[return-value]

    def bases(self, states: Mapping[int, Mapping[str, torch.Tensor]]) -> list[BaseModel]:
        """Frozen base models in source order."""
        out = []
        for _, st in sorted(states.items()):
            b = base_model_of(self.cfg, self.data.info).to(self.device)
            self.load(b, st)
            out.append(b.eval())
        return out

    def personal_model(self, ae: AutoEncoder, bases: list[BaseModel],
                       config: Mapping[str, object]) -> tuple[nn.Module, dict[str, float]]:
        """Fit the mixture on the labeled samples; the model and fit statistics."""
        if not bases:
            return _NoModel(self.data.info.num_classes), {"n_labeled": self.data.num_train}
        lp = base_log_probs(ae.encoder, bases, self.data.x_train)
        w, nll = fit_mixture(lp, self.data.y_train, steps=int(config["mix_steps"]),
                             lr=float(config["mix_lr"]))
        stats = {"n_labeled": float(self.data.num_train), "n_bases": float(len(bases)),
                 "mix_max_weight": float(torch.softmax(w, 0).max())}
        if nll == nll:
            stats["mix_nll"] = nll
        steps = int(config.get("finetune_steps", 0))  # type: ignore[call-overload]
        if steps > 0 and self.data.num_train > 0:
            with torch.no_grad():
                z = ae.encoder.eval()(self.data.x_train)
            stats["finetune_nll"] = finetune_bases(
                bases, z, self.data.y_train, w, steps=steps,
                lr=float(config["finetune_lr"]))  # type: ignore[arg-type]
        return PersonalModel(ae.encoder, bases, w), stats

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        c = payload["config"]
        ae = self.autoencoder(from_record(payload["arrays"]))
        x_all = self.data.x_train_all  # labels ignored: every training sample
        pre = float(reconstruction_errors(ae, self.data.x_test).mean())
        result = train_autoencoder(ae, x_all, epochs=int(c["ae_epochs"]),
                                   batch_size=int(c["batch_size"]), lr=float(c["ae_lr"]),
                                   generator=self.generator(server_round))
        post = float(reconstruction_errors(ae, self.data.x_test).mean())
        state.set_tensors("ae_candidate", ae.state_dict())
        return train_reply(result, ae.state_dict(), ae_mse_pre=pre, ae_mse_post=post)

    @override
    def exchange(self, stage: Stage, name: str, payload: RecordDict, state: ClientState,
              server_round: int) -> RecordDict:
        if stage != "train" or name != COMBINE:
            return super().exchange(stage, name, payload, state, server_round)
        candidate = state.get_tensors("ae_candidate")
        if candidate is None:
            raise RuntimeError("combine without a trained autoencoder: the AE step of this "
                               "round did not reach this client")
        _, base_states = unpack(from_record(payload["arrays"]))
        if not base_states:  # the filter kept no server data: keep the previous model
            return RecordDict({"metrics": MetricRecord({"n_bases": 0})})
        ae = self.autoencoder(candidate)
        bases = self.bases(base_states)
        bs = int(self.cfg.client.eval_batch_size)
        uniform, _ = self.personal_model(ae, bases, {"mix_steps": 0, "mix_lr": 1.0})
        with torch.no_grad():  # before any fine-tuning changes the shared base models
            f1_uniform = evaluate(uniform, self.data.x_test, self.data.y_test, bs).f1
        model, stats = self.personal_model(ae, bases, payload["config"])
        assert isinstance(model, PersonalModel)
        with torch.no_grad():
            test = evaluate(model, self.data.x_test, self.data.y_test, bs)
        state.set_tensors("ae", ae.state_dict())
        # The personal model's base models (fine-tuned ones when strategy.finetune_steps > 0).
        tuned = {m: b.state_dict() for m, b in zip(sorted(base_states), model.bases)}
        state.set_tensors("bases", {f"b{m}.{k}": v.detach().clone()
                                    for m, st in tuned.items() for k, v in st.items()})
        state.set_tensors("mix", {"w": model.w})
        return RecordDict({"metrics": MetricRecord({
            "num-examples": test.num_examples, "user_f1": test.f1, "uniform_f1": f1_uniform,
            "user_accuracy": test.accuracy, **stats})})

    @override
    def evaluate(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        if "arrays" in payload:  # never trained: the server's AE and base models
            ae_state, base_states = unpack(from_record(payload["arrays"]))
            model, _ = self.personal_model(self.autoencoder(ae_state), self.bases(base_states),
                                           payload["config"])
        else:
            saved_ae, saved_bases, mix = (state.get_tensors(n) for n in ("ae", "bases", "mix"))
            if saved_ae is None or saved_bases is None or mix is None:
                raise RuntimeError("no personal model in this client's state; the server "
                                   "should have sent one")
            _, base_states = unpack(saved_bases)
            model = PersonalModel(self.autoencoder(saved_ae).encoder, self.bases(base_states),
                                  mix["w"].to(self.device))
        with torch.no_grad():
            return eval_reply(self.eval_metrics(model))


class _NoModel(nn.Module):
    """Uniform log-probabilities: a user whose filter kept no server data has no classifier."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log(1/C) for every class."""
        return torch.full((len(x), self.num_classes), -math.log(self.num_classes),
                          device=x.device)

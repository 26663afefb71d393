"""PeFLL client: descriptor from its data, pFedHN's inner loop, the embedding-network gradient.

Training round (strategies/pefll.py has the protocol):
* phase `embed`: load eta_v, draw the descriptor batch (one batch of 32 by default), keep its
  indices in the client's state (`descriptor_batch`) and reply u_i.
* main exchange: K SGD steps from theta_i (clients/pfedhn.py `inner_updates`), reply delta_i.
* phase `embedgrad`: load eta_v, recompute u_i on the stored batch, reply
  g_v,i = (d u_i / d eta_v)^T du_i.
Evaluation: phase `embed` computes the descriptor from the whole training split (all full
batches) and remembers which classes it contained (`eval_present`); the main exchange
evaluates theta_i with the absent classes masked. No gradient step is taken in evaluation, so
an unseen client is served by one descriptor pass.
"""

from __future__ import annotations

import torch
from flwr.app import MetricRecord, RecordDict
from typing_extensions import override

from clients.pfedhn import PFedHNClient, present_classes
from fedplat.core.client import ClientState, eval_reply
from fedplat.core.records import from_record, to_record
from fedplat.core.stage import Stage
from fedplat.models.hypernet import GeneratedModel
from strategies.pefll import (
    EmbeddingNet,
    client_vnet_gradient,
    descriptor,
    descriptor_indices,
    embed_kind,
)
from strategies.pfedhn import embed_dim_of

#: Sub-stream of the client generator for descriptor batches (apart from inner-loop batches).
DESCRIPTOR_STREAM = 7


class PeFLLClient(PFedHNClient):
    """Keeps only the current round's descriptor batch (and the classes seen at evaluation)."""

    def vnet(self, payload: RecordDict) -> EmbeddingNet:
        """The received embedding network (allocated without initialisation, then loaded)."""
        with torch.device("meta"):
            net = EmbeddingNet(self.data.info, embed_dim_of(self.cfg),
                               embed_kind(self.cfg, self.data.info),
                               bool(self.cfg.strategy.use_labels))
        net.load_state_dict({k: v.to(self.device) for k, v in
                             from_record(payload["vnet"]).items()}, assign=True)
        return net

    @override
    def exchange(self, stage: Stage, name: str, payload: RecordDict, state: ClientState,
              server_round: int) -> RecordDict:
        c = payload["config"]
        quirk = bool(c["divisor_quirk"])
        x, y = self.data.x_train, self.data.y_train
        if name == "embed":
            batches = int(c["embed_batches"]) if stage == Stage.TRAIN else -1
            gen = self.generator(server_round, DESCRIPTOR_STREAM, Stage(stage).stream)
            idx, nb = descriptor_indices(len(y), int(c["batch_size"]), batches, gen)
            idx = idx.to(x.device)
            if stage == Stage.TRAIN:
                state.set_values("descriptor_batch", {"idx": idx.tolist(), "batches": nb})
            else:
                present = present_classes(y[idx], self.data.info.num_classes)
                state.set_values("eval_present", {"mask": [int(p) for p in present.tolist()]})
            with torch.no_grad():
                u = descriptor(self.vnet(payload), x[idx], y[idx], nb, quirk)
            return RecordDict({"arrays": to_record({"u": u}),
                               "metrics": MetricRecord({"num-examples": len(idx)})})
        if name == "embedgrad":
            stored = state.get_values("descriptor_batch")
            if stored is None:
                raise RuntimeError("no descriptor batch stored for this round: the embed phase "
                                   "did not reach this client")
            idx = torch.tensor(stored["idx"], dtype=torch.long, device=x.device)
            du = from_record(payload["du"])["u"].to(self.device)
            vnet = self.vnet(payload)
            grads = client_vnet_gradient(vnet, x[idx], y[idx], int(stored["batches"]), du, quirk)
            names = [n for n, _ in vnet.named_parameters()]
            return RecordDict({"arrays": to_record(dict(zip(names, grads)))})
        return super().exchange(stage, name, payload, state, server_round)

    @override
    def evaluate(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        mode = str(payload["config"]["mask_absent"])
        stored = state.get_values("eval_present")
        mask = torch.tensor(stored["mask"], dtype=torch.float32) if stored else \
            present_classes(self.data.y_train, self.data.info.num_classes)
        model = GeneratedModel(self.target(), self.theta(payload), mask, mode)
        with torch.no_grad():
            return eval_reply(self.eval_metrics(model))

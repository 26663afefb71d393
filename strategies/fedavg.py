"""FedAvg (McMahan et al., AISTATS 2017), with an optional server learning rate.

w_{t+1} = w_t + server_lr * sum_k (n_k / n) (w_k - w_t), n_k = client k's training samples.
server_lr = 1 is plain FedAvg (the weighted average of the client models).
`strategy.weighted=false` averages the clients with equal weights (as FedHyper's and many
papers' released code do), so FedAvg can be compared with methods that use the plain mean.
"""

from __future__ import annotations

from typing import ClassVar

from flwr.app import ConfigRecord, RecordDict
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_float
from fedplat.core import ops, records
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.core.stage import Stage
from fedplat.core.strategy import ClientInfo, Strategy
from fedplat.errors import UserError


def fedavg_update(global_state: ops.State, client_states: dict[int, ops.State],
                  num_examples: dict[int, float], server_lr: float = 1.0) -> ops.State:
    """The FedAvg step as a pure function (weights = training-sample counts)."""
    avg = ops.weighted_average(client_states, num_examples)
    return ops.add_scaled(global_state, ops.subtract(avg, global_state), server_lr)


class FedAvg(Strategy):
    """Keeps one global model; clients start from it and return their trained weights."""

    threat_model: ClassVar[str | None] = "attacks.fedavg.FedAvgThreat"
    has_global_model: ClassVar[bool] = True

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        check_float(cfg, "strategy.server_lr", 0.0, lo_open=True)
        if not isinstance(cfg.strategy.get("weighted", True), bool):
            raise UserError(f"strategy.weighted={cfg.strategy.weighted!r} must be true or false")

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        self.global_state = ops.clone(self.initial_model().state_dict())

    @override
    def global_model(self) -> ops.State | None:
        return self.global_state if self.has_global_model else None

    def _payload(self) -> RecordDict:
        return RecordDict({"arrays": to_record(self.global_state)})

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        content = self._payload()  # one record shared by all messages of the round
        content["config"] = ConfigRecord({"lr": float(self.cfg.client.lr)})
        return {cid: content for cid in cids}

    @override
    def aggregate_train(self, server_round: int, replies: dict[int, RecordDict],
                        failures: dict[int, str]) -> dict[str, float]:
        states = {cid: from_record(rd["arrays"]) for cid, rd in replies.items()}
        if bool(self.params.get("weighted", True)):
            weights = {cid: metrics_of(rd)["num-examples"] for cid, rd in replies.items()}
        else:
            weights = {cid: 1.0 for cid in replies}
        new = fedavg_update(self.global_state, states, weights, float(self.params.server_lr))
        step = ops.norm(ops.subtract(new, self.global_state))
        self.global_state = new
        return {"update_norm": step}

    @override
    def check_reply(self, stage: Stage, cid: int, content: RecordDict) -> str | None:
        problem = super().check_reply(stage, cid, content)
        if problem is None and stage == Stage.TRAIN:
            problem = records.mismatch(content.get("arrays"), self.global_state, "arrays")
        return problem

    @override
    def configure_evaluate(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        content = self._payload()
        return {cid: content for cid in cids}

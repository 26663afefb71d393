"""FedAvg client: load the global model, train locally, send the weights back.

Stateless unless `client.persist_optimizer_state` (the optimizer state then stays on the
client between rounds) or `client.eval_after_fit` (the locally trained model is evaluated and
the metrics travel with the weights).
"""

from __future__ import annotations

from flwr.app import RecordDict
from typing_extensions import override

from fedplat.client import Client, ClientState, eval_reply
from fedplat.records import from_record


class FedAvgClient(Client):
    """Everything it needs comes with the message (plus optional optimizer state)."""

    @override
    def fit(self, payload: RecordDict, state: ClientState, rnd: int) -> RecordDict:
        model = self.load(self.new_model(), from_record(payload["arrays"]))
        lr = float(payload["config"]["lr"]) if "config" in payload else None
        result = self.train_model(model, rnd, lr=lr, state=state)
        return self.fit_reply(result, model, model.state_dict())

    @override
    def evaluate(self, payload: RecordDict, state: ClientState,
                 rnd: int) -> RecordDict:
        model = self.load(self.new_model(), from_record(payload["arrays"]))
        return eval_reply(self.eval_metrics(model))

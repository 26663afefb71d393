"""FedAvg client: load the global model, train locally, send the weights back."""

from __future__ import annotations

from flwr.app import RecordDict
from typing_extensions import override

from fedplat.client import Client, ClientState, eval_reply, train_reply
from fedplat.records import from_record


class FedAvgClient(Client):
    """Stateless: everything it needs comes with the message."""

    @override
    def fit(self, payload: RecordDict, state: ClientState, rnd: int) -> RecordDict:
        model = self.load(self.new_model(), from_record(payload["arrays"]))
        lr = float(payload["config"]["lr"]) if "config" in payload else None
        result = self.train_model(model, rnd, lr=lr)
        return train_reply(result, model.state_dict())

    @override
    def evaluate(self, payload: RecordDict, state: ClientState,
                 rnd: int) -> RecordDict:
        model = self.load(self.new_model(), from_record(payload["arrays"]))
        return eval_reply(self.eval_metrics(model))

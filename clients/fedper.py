"""FedPer client: the received base layers plus its own head (kept in its private state)."""

from __future__ import annotations

from flwr.app import RecordDict
from torch import nn
from typing_extensions import override

from fedplat.core.client import Client, ClientState, eval_reply
from fedplat.core.records import from_record


class FedPerClient(Client):
    """Head in `state['head']`; starts from the global initial head like every client."""

    def _model(self, payload: RecordDict, state: ClientState) -> tuple[nn.Module, str]:
        prefix = str(payload["head"]["prefix"])
        model = self.new_model()
        weights = model.state_dict()
        weights.update(from_record(payload["arrays"]))
        head = state.get_tensors("head")
        if head is not None:
            weights.update(head)
        return self.load(model, weights), prefix

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        model, prefix = self._model(payload, state)
        lr = float(payload["config"]["lr"]) if "config" in payload else None
        result = self.train_model(model, server_round, lr=lr, state=state)
        trained = model.state_dict()
        state.set_tensors("head", {k: v for k, v in trained.items() if k.startswith(prefix)})
        base = {k: v for k, v in trained.items() if not k.startswith(prefix)}
        return self.reply_after_training(result, model, base)

    @override
    def evaluate(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        model, _ = self._model(payload, state)
        return eval_reply(self.eval_metrics(model))

"""Local client: keeps its model in its private state and trains it alone."""

from __future__ import annotations

from flwr.app import RecordDict
from torch import nn
from typing_extensions import override

from fedplat.core.client import Client, ClientState, eval_reply


class LocalClient(Client):
    """Model in `state['model']`; starts from the same initial weights as FedAvg's model."""

    def _model(self, state: ClientState) -> nn.Module:
        model = self.new_model()
        saved = state.get_tensors("model")
        return self.load(model, saved) if saved is not None else model

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        model = self._model(state)
        result = self.train_model(model, server_round, state=state)
        state.set_tensors("model", model.state_dict())
        return self.reply_after_training(result, model)

    @override
    def evaluate(self, payload: RecordDict, state: ClientState,
                 server_round: int) -> RecordDict:
        return eval_reply(self.eval_metrics(self._model(state)))

"""FedAvg client: load the global model, train locally, send the weights back.

Stateless unless `client.persist_optimizer_state` (the optimizer state then stays on the
client between rounds) or `client.evaluate_after_train` (the locally trained model is evaluated and
the metrics travel with the weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from flwr.app import RecordDict
from typing_extensions import override

from fedplat.core.client import Client, ClientState, eval_reply, stacked_train_reply
from fedplat.core.records import from_record


class FedAvgClient(Client):
    """Everything it needs comes with the message (plus optional optimizer state)."""

    @override
    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        model = self.load(self.new_model(), from_record(payload["arrays"]))
        lr = float(payload["config"]["lr"]) if "config" in payload else None
        result = self.train_model(model, server_round, lr=lr, state=state)
        return self.reply_after_training(result, model, model.state_dict())

    @classmethod
    @override
    def train_batched(cls, clients: Sequence[Client], payloads: Sequence[RecordDict],
                      states: Sequence[ClientState],
                      server_round: int) -> list[RecordDict | BaseException] | None:
        """All clients start from the same global model: train them as one vmapped batch.

        Only for this class's own `train`: a subclass that changes `train` (clipping and noise,
        extra losses, other replies) trains one client at a time unless it batches itself.
        """
        if cls.train is not FedAvgClient.train:
            return None
        lrs = {float(p["config"]["lr"]) if "config" in p else None for p in payloads}
        if len(lrs) != 1:
            return None
        decoded: dict[int, dict[str, torch.Tensor]] = {}  # a shared record is decoded once
        starts = []
        for payload in payloads:
            record = payload["arrays"]
            if id(record) not in decoded:
                decoded[id(record)] = from_record(record)
            starts.append(decoded[id(record)])
        lr = lrs.pop()
        if bool(clients[0].cfg.client.get("evaluate_after_train", False)):
            # the reply carries an evaluation of each trained model: build them
            models = [c.load(c.new_model(), s) for c, s in zip(clients, starts)]
            results = Client.train_many(clients, models, server_round, lr=lr)
            if results is None:
                return None
            return [r if isinstance(r, BaseException) else
                    c.reply_after_training(r, m, m.state_dict())
                    for c, m, r in zip(clients, models, results)]
        skeleton = clients[0].new_model()  # structure only: no model per client
        trained = Client.train_many_from(clients, skeleton, starts, server_round, lr=lr)
        if trained is None:
            return None
        return [item if isinstance(item, BaseException) else
                stacked_train_reply(item[1], item[0]) for item in trained]

    @override
    def evaluate(self, payload: RecordDict, state: ClientState,
                 server_round: int) -> RecordDict:
        model = self.model_with(from_record(payload["arrays"]))
        return eval_reply(self.eval_metrics(model))

    @classmethod
    @override
    def evaluate_batched(cls, clients: Sequence[Client], payloads: Sequence[RecordDict],
                         states: Sequence[ClientState],
                         server_round: int) -> list[RecordDict | BaseException] | None:
        """Clients sent the same model are evaluated from one forward pass over their data.

        Only for this class's own `evaluate` (a subclass that evaluates otherwise is called
        per client). A model that does not load (another architecture) fails the clients it
        was sent to, as it would fail each alone.
        """
        if cls.evaluate is not FedAvgClient.evaluate or not clients:
            return None
        groups: dict[int, list[int]] = {}  # clients sent one record share a model
        for i, payload in enumerate(payloads):
            groups.setdefault(id(payload["arrays"]), []).append(i)
        out: list[RecordDict | BaseException] = [RecordDict() for _ in clients]
        for members in groups.values():
            first = clients[members[0]]
            try:
                model = first.model_with(from_record(payloads[members[0]]["arrays"]))
            except Exception as exc:  # these clients' failure only
                for i in members:
                    out[i] = exc
                continue
            metrics = Client.eval_metrics_many([clients[i] for i in members], model)
            if metrics is None:
                return None
            for i, m in zip(members, metrics):
                out[i] = eval_reply(m)
        return out

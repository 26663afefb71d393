"""The client side of an algorithm: a function of (message payload, private state, local data).

A `Client` subclass lives in `clients/<name>.py` and is named by `strategy.client_target`. The
generic ClientApp (fedplat.app) builds one per message, hands it the payload the strategy sent
to this client, a `ClientState` (its private state, kept in Flower's `Context.state` between
rounds) and its `ClientData`, and replies with the RecordDict that `fit`/`evaluate` return.
Nothing else leaves the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from omegaconf import DictConfig
from torch import nn

from fedplat import seeding
from fedplat.data import ClientData
from fedplat.models import build_model
from fedplat.records import from_record, to_record
from fedplat.training import TrainResult, evaluate, make_optimizer, train


class ClientState:
    """One client's private state inside a node's `Context.state`.

    Entries are namespaced by client id (`c<id>.<name>`), so a node that serves several clients
    keeps each client's state apart. Writes only persist if the handler returns normally: Flower
    drops the context of a ClientApp that raised, so a failed round leaves the old state.
    """

    def __init__(self, store: RecordDict, cid: int) -> None:
        self._store = store
        self._prefix = f"c{cid}."

    def _key(self, name: str) -> str:
        return self._prefix + name

    def __contains__(self, name: str) -> bool:
        return self._key(name) in self._store

    def get_tensors(self, name: str) -> dict[str, torch.Tensor] | None:
        """Tensors saved under `name`, or None."""
        rec = self._store.get(self._key(name))
        return from_record(rec) if isinstance(rec, ArrayRecord) else None

    def set_tensors(self, name: str, tensors: Mapping[str, torch.Tensor]) -> None:
        """Save tensors under `name` (CPU copies)."""
        self._store[self._key(name)] = to_record(tensors)

    def get_values(self, name: str) -> dict[str, Any] | None:
        """Scalars/strings saved under `name`, or None."""
        rec = self._store.get(self._key(name))
        return dict(rec) if isinstance(rec, ConfigRecord) else None

    def set_values(self, name: str, values: Mapping[str, Any]) -> None:
        """Save scalars/strings/lists under `name`."""
        self._store[self._key(name)] = ConfigRecord(dict(values))

    def names(self) -> list[str]:
        """Names of everything this client keeps."""
        return [k[len(self._prefix):] for k in self._store if k.startswith(self._prefix)]


class Client:
    """Base class for the client half of an algorithm.

    Subclasses implement `fit` (and usually `evaluate`). Helpers build the configured model,
    train it with the configured optimizer and a seeded batch order, and evaluate it on the
    client's val and test splits.
    """

    def __init__(self, cid: int, data: ClientData, cfg: DictConfig,
                 device: torch.device) -> None:
        self.cid = cid
        self.data = data
        self.cfg = cfg
        self.device = device

    # -- what an algorithm implements ---------------------------------------------------------

    def fit(self, payload: RecordDict, state: ClientState, rnd: int) -> RecordDict:
        """Local training for round `rnd`; return what this client shares."""
        raise NotImplementedError

    def evaluate(self, payload: RecordDict, state: ClientState, rnd: int) -> RecordDict:
        """Evaluate for round `rnd`; return metrics (see `eval_metrics`)."""
        raise NotImplementedError

    def phase(self, stage: str, name: str, payload: RecordDict, state: ClientState,
              rnd: int) -> RecordDict:
        """An extra exchange of a multi-message protocol (`Strategy.phases`).

        `stage` is "train" or "evaluate", `name` the phase the strategy named.
        """
        raise NotImplementedError(f"{type(self).__name__} has no {stage} phase '{name}'")

    # -- helpers ------------------------------------------------------------------------------

    def new_model(self, init_stream: tuple[int, ...] = (seeding.INIT,)) -> nn.Module:
        """The configured model on this client's device, initialised from `(seed, *stream)`.

        The default stream is the one the server uses for the initial global model, so a
        client that starts alone (Local) starts from the same weights as FedAvg.
        """
        seeding.seed_torch(int(self.cfg.seed), *init_stream)
        return build_model(self.cfg.model, self.data.info).to(self.device)

    def load(self, model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """Load weights (any device) into `model`."""
        model.load_state_dict({k: v.to(self.device) for k, v in state.items()})
        return model

    def generator(self, rnd: int, *extra: int) -> torch.Generator:
        """Seeded generator for this client's round `rnd` (batch order)."""
        return seeding.torch_generator(int(self.cfg.seed), seeding.CLIENT, rnd, self.cid, *extra)

    def train_model(self, model: nn.Module, rnd: int, *, lr: float | None = None,
                    epochs: int | None = None, **kwargs: Any) -> TrainResult:
        """Train on the local training split with the `client` config's optimizer."""
        c = self.cfg.client
        opt = make_optimizer(model.parameters(), c, lr=lr)
        return train(model, self.data.x_train, self.data.y_train, opt,
                     epochs=int(c.local_epochs if epochs is None else epochs),
                     batch_size=int(c.batch_size), generator=self.generator(rnd), **kwargs)

    def eval_metrics(self, model: nn.Module) -> dict[str, float]:
        """test/val loss, accuracy and weighted F1 (of the whole split, not per batch).

        `num-examples` is the test count (Flower's weighting).
        """
        bs = int(self.cfg.client.eval_batch_size)
        test = evaluate(model, self.data.x_test, self.data.y_test, bs)
        out = {"num-examples": test.num_examples, "test_loss": test.loss,
               "test_accuracy": test.accuracy, "test_f1": test.f1}
        if len(self.data.y_val):
            val = evaluate(model, self.data.x_val, self.data.y_val, bs)
            out.update({"num-val-examples": val.num_examples, "val_loss": val.loss,
                        "val_accuracy": val.accuracy, "val_f1": val.f1})
        return out


def train_reply(result: TrainResult, arrays: Mapping[str, torch.Tensor] | None = None,
                **extra: float) -> RecordDict:
    """Reply of a training round: optional weights plus `num-examples` and `train_loss`."""
    content = RecordDict()
    if arrays is not None:
        content["arrays"] = to_record(arrays)
    content["metrics"] = MetricRecord({"num-examples": result.num_examples,
                                       "train_loss": result.loss, **extra})
    return content


def eval_reply(metrics: Mapping[str, float]) -> RecordDict:
    """Reply of an evaluation round."""
    return RecordDict({"metrics": MetricRecord(dict(metrics))})

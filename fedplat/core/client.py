"""The client side of an algorithm: a function of (message payload, private state, local data).

A `Client` subclass lives in `clients/<name>.py` and is named by `strategy.client_target`. The
node runtime (fedplat.transport.node) builds one per client and message, hands it the payload
the strategy sent to this client, a `ClientState` (its private state, kept in Flower's
`Context.state` between rounds) and its `ClientData`, and replies with the RecordDict that
`train`/`evaluate` return. Nothing else leaves the client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from omegaconf import DictConfig
from torch import nn

from fedplat.core import seeding
from fedplat.core.records import from_record, to_record, to_rows
from fedplat.core.stage import Stage
from fedplat.data import ClientData, GraphClientData
from fedplat.models import build_model
from fedplat.training.loops import (
    EvalResult,
    TrainResult,
    evaluate,
    evaluate_graph,
    make_optimizer,
    train,
    train_graph,
)

#: One client's trained parameters and its training result (batched training).
Trained = tuple[dict[str, torch.Tensor], TrainResult]


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

    def set_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Save an optimizer's per-parameter state (e.g. Adam's moments and step counts).

        Hyperparameters (param_groups) are not saved: they come from the config each round.
        """
        tensors = {f"{idx}.{key}": value
                   for idx, entry in optimizer.state_dict()["state"].items()
                   for key, value in entry.items() if isinstance(value, torch.Tensor)}
        self.set_tensors(name, tensors)

    def load_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> bool:
        """Restore state saved by `set_optimizer` into `optimizer`; False if none (or stale)."""
        saved = self.get_tensors(name)
        if not saved:
            return False
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in saved.items():
            position, _, field_name = key.partition(".")
            state.setdefault(int(position), {})[field_name] = value
        current = optimizer.state_dict()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for idx, entry in state.items():
            if idx >= len(params) or any(v.dim() > 0 and v.shape != params[idx].shape
                                         for v in entry.values()):
                return False  # saved for another model: start afresh
        optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
        return True


class Client:
    """Base class for the client half of an algorithm.

    Subclasses implement `train` (and usually `evaluate`). Helpers build the configured model,
    train it with the configured optimizer and a seeded batch order, and evaluate it on the
    client's val and test splits.
    """

    def __init__(self, cid: int, data: ClientData | GraphClientData, cfg: DictConfig,
                 device: torch.device) -> None:
        self.cid = cid
        self.data = data
        self.cfg = cfg
        self.device = device
        #: Models the node's worker keeps between messages (`model_with`); None: no cache.
        self.models: dict[Any, nn.Module] | None = None

    # -- what an algorithm implements ---------------------------------------------------------

    def train(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        """Local training for round `server_round`; return what this client shares."""
        raise NotImplementedError

    def evaluate(self, payload: RecordDict, state: ClientState, server_round: int) -> RecordDict:
        """Evaluate for round `server_round`; return metrics (see `eval_metrics`)."""
        raise NotImplementedError

    def exchange(self, stage: Stage, name: str, payload: RecordDict, state: ClientState,
                 server_round: int) -> RecordDict:
        """An extra exchange of a multi-message protocol (`Strategy.exchanges`).

        `name` is the exchange the strategy named within `stage`.
        """
        raise NotImplementedError(f"{type(self).__name__} has no {stage} exchange '{name}'")

    @classmethod
    def train_batched(cls, clients: Sequence[Client], payloads: Sequence[RecordDict],
                    states: Sequence[ClientState],
                    server_round: int) -> list[RecordDict | BaseException] | None:
        """Train several clients of one node at once (`simulation.batched=true`), or None.

        An algorithm whose clients share an architecture can override this to train them
        together (see `fedplat.training.batched`); the result must equal calling `train` on each
        in turn up to floating-point reassociation. Return one reply or exception per client (an
        exception fails that client alone), or None to let the node call `train` per client
        (the default, and the right answer when this round's settings do not allow batching).
        """
        return None

    @classmethod
    def evaluate_batched(cls, clients: Sequence[Client], payloads: Sequence[RecordDict],
                         states: Sequence[ClientState],
                         server_round: int) -> list[RecordDict | BaseException] | None:
        """Evaluate several clients of one node at once (`simulation.batched=true`), or None.

        As `train_batched`, for evaluation: an algorithm whose evaluation is a function of the
        payload's model and the client's data can override this (see `eval_metrics_many`).
        None (the default) lets the node call `evaluate` per client.
        """
        return None

    # -- helpers ------------------------------------------------------------------------------

    def new_model(self, init_stream: tuple[int, ...] = (seeding.INIT,)) -> nn.Module:
        """The configured model on this client's device, initialised from `(seed, *stream)`.

        The default stream is the one the server uses for the initial global model, so a
        client that starts alone (Local) starts from the same weights as FedAvg. The global
        RNG that dropout draws from is left as it was.
        """
        # Fork the global RNG: the app seeded it for this client and round (dropout), and
        # re-seeding it here would give every round and client the same dropout masks.
        with torch.random.fork_rng(devices=[]):
            seeding.seed_torch(int(self.cfg.seed), *init_stream)
            model = build_model(self.cfg.model, self.data.info)
        return model.to(self.device)

    def load(self, model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """Load weights (any device) into `model`."""
        model.load_state_dict({k: v.to(self.device) for k, v in state.items()})
        return model

    def model_with(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """The configured model holding `state`, for evaluation, built once per worker.

        As `load(new_model(), state)`, without building and randomly initialising a model per
        client and message. `state` must hold every parameter and buffer (`load_state_dict` is
        strict), so nothing of the module's previous contents survives, and the global RNG is
        not touched (`new_model` forks it): the numbers equal those of a fresh model. The
        module is kept in the worker's cache (`models`, by device and data set) and shared by
        the node's clients: use it within the call, do not keep it or return its tensors.
        Without a cache (a client built outside a node) it is a fresh model.
        """
        models = getattr(self, "models", None)  # a subclass may skip Client.__init__
        if models is None:
            return self.load(self.new_model(), state)
        key = ("skeleton", str(self.device), self.data.info)
        model = models.get(key)
        if model is None:
            model = models[key] = self.new_model()
        return self.load(model, state)

    def generator(self, server_round: int, *extra: int) -> torch.Generator:
        """Seeded generator for this client's round `server_round` (batch order)."""
        return seeding.torch_generator(int(self.cfg.seed), seeding.CLIENT, server_round, self.cid,
                                       *extra)

    def train_model(self, model: nn.Module, server_round: int, *, lr: float | None = None,
                    epochs: int | None = None, state: ClientState | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    **kwargs: Any) -> TrainResult:
        """Train on the local training split with the `client` config's optimizer.

        Graph data trains full-batch (one step per epoch on the whole subgraph). With
        `client.persist_optimizer_state=true` and a `state`, the optimizer's state (Adam
        moments, momentum buffers) is restored before and saved after training, so it carries
        over between rounds as in a long-lived client process. `client.amp` picks the
        precision of the forward passes (`fedplat.training.loops`).
        """
        c = self.cfg.client
        opt = optimizer if optimizer is not None else make_optimizer(model.parameters(), c,
                                                                     lr=lr)
        persist = state is not None and bool(c.get("persist_optimizer_state", False))
        if persist:
            assert state is not None
            state.load_optimizer("optimizer", opt)
        n_epochs = int(c.local_epochs if epochs is None else epochs)
        data = self.data
        amp = str(c.get("amp") or "none")
        if isinstance(data, GraphClientData):
            result = train_graph(model, data.x, data.edge_index, data.y, data.train_idx, opt,
                                 epochs=n_epochs, amp=amp, **kwargs)
        else:
            result = train(model, data.x_train, data.y_train, opt, epochs=n_epochs,
                           batch_size=int(c.batch_size), generator=self.generator(server_round),
                           amp=amp, **kwargs)
        if persist:
            assert state is not None
            state.set_optimizer("optimizer", opt)
        return result

    @staticmethod
    def train_many_from(clients: Sequence[Client], skeleton: nn.Module,
                        starts: Sequence[Mapping[str, torch.Tensor]], server_round: int, *,
                        lr: float | None = None) -> list[Trained | BaseException] | None:
        """`train_model` for several clients of one architecture in one vmapped pass.

        `skeleton` is any instance of the architecture (only its structure is used); client i
        starts from the parameters `starts[i]`. Returns, per client, its trained parameters and
        TrainResult, or the `FloatingPointError` the sequential loop raises for a loss that
        turns non-finite. Returns None when this configuration cannot be batched (graph data,
        Adam, optimizer state kept across rounds, a model with buffers or dropout, fp16 mixed
        precision, whose loss scaling the sequential loop does); the caller then trains one
        client at a time. The clients train on their device (the skeleton's); `client.amp=bf16`
        runs the vmapped forward passes under autocast.
        """
        from fedplat.training.batched import ClientBatchData, supports_batching, train_sgd

        if not clients:
            return []
        c = clients[0].cfg.client
        amp = str(c.get("amp") or "none")
        if (c.optimizer != "sgd" or amp == "fp16"
                or bool(c.get("persist_optimizer_state", False))
                or any(isinstance(cl.data, GraphClientData) for cl in clients)
                or not supports_batching(skeleton)):
            return None
        names = [n for n, _ in skeleton.named_parameters()]
        data = [ClientBatchData(cl.data.x_train, cl.data.y_train, cl.generator(server_round))
                for cl in clients if isinstance(cl.data, ClientData)]
        params, results, finite = train_sgd(
            skeleton, [{n: s[n] for n in names} for s in starts], data,
            epochs=int(c.local_epochs), batch_size=int(c.batch_size),
            lr=float(c.lr if lr is None else lr), momentum=float(c.momentum),
            weight_decay=float(c.weight_decay), amp=amp)
        return [(trained, result) if ok else
                FloatingPointError("non-finite training loss in batched training; lower "
                                   "client.lr")
                for trained, result, ok in zip(params, results, finite)]

    @staticmethod
    def train_many(clients: Sequence[Client], models: Sequence[nn.Module], server_round: int, *,
                   lr: float | None = None) -> list[TrainResult | BaseException] | None:
        """`train_many_from` for per-client model instances, trained in place.

        None also when the models differ in architecture. A client whose loss turns
        non-finite gets the exception and its model is left untouched.
        """
        if not models:
            return []
        shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in models]
        if any(s != shapes[0] for s in shapes):
            return None
        starts = [{n: p.detach() for n, p in m.named_parameters()} for m in models]
        trained = Client.train_many_from(clients, models[0], starts, server_round, lr=lr)
        if trained is None:
            return None
        out: list[TrainResult | BaseException] = []
        for model, item in zip(models, trained):
            if isinstance(item, BaseException):
                out.append(item)
                continue
            params, result = item
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(params[name])
            out.append(result)
        return out

    def eval_metrics(self, model: nn.Module) -> dict[str, float]:
        """test/val loss, accuracy and weighted F1 (of the whole split, not per batch).

        `num-examples` is the test count (Flower's weighting).
        """
        data = self.data
        if isinstance(data, GraphClientData):
            val, test = evaluate_graph(model, data.x, data.edge_index, data.y, data.val_idx,
                                       data.test_idx)
            out = {"num-examples": test.num_examples, "test_loss": test.loss,
                   "test_accuracy": test.accuracy}
            if val.num_examples:
                out.update({"num-val-examples": val.num_examples, "val_loss": val.loss,
                            "val_accuracy": val.accuracy})
            return out
        bs = int(self.cfg.client.eval_batch_size)
        on_test = evaluate(model, data.x_test, data.y_test, bs)
        on_val = evaluate(model, data.x_val, data.y_val, bs) if len(data.y_val) else None
        return eval_metrics_from(on_test, on_val)

    @staticmethod
    def eval_metrics_many(clients: Sequence[Client], model: nn.Module
                          ) -> list[dict[str, float]] | None:
        """`eval_metrics(model)` of each of `clients`, from one forward pass over their data.

        The clients' test (and validation) splits go through `model` together
        (`fedplat.training.batched.evaluate_splits`): the same metrics up to floating-point
        reassociation. None for graph data (the caller then evaluates one client at a time).
        """
        from fedplat.training.batched import evaluate_splits

        data = [c.data for c in clients if isinstance(c.data, ClientData)]
        if len(data) != len(clients):
            return None
        if not data:
            return []
        bs = int(clients[0].cfg.client.eval_batch_size)
        tests = evaluate_splits(model, [(d.x_test, d.y_test) for d in data], bs)
        with_val = [k for k, d in enumerate(data) if len(d.y_val)]
        vals = evaluate_splits(model, [(data[k].x_val, data[k].y_val) for k in with_val], bs)
        val_of = dict(zip(with_val, vals))
        return [eval_metrics_from(test, val_of.get(k)) for k, test in enumerate(tests)]

    def post_train_metrics(self, model: nn.Module) -> dict[str, float]:
        """Evaluation right after local training, for the train reply (or {} if not asked).

        With `client.evaluate_after_train=true` a client reports val/test metrics of the model it
        just trained (personalised-FL protocols such as FED-PUB's "local accuracy after local
        training"); the test count is sent as `num-test-examples` so that `num-examples`
        stays the training count that aggregation weights by.
        """
        if not bool(self.cfg.client.get("evaluate_after_train", False)):
            return {}
        out = self.eval_metrics(model)
        out["num-test-examples"] = out.pop("num-examples")
        return out

    def reply_after_training(self, result: TrainResult, model: nn.Module,
                             arrays: Mapping[str, torch.Tensor] | None = None,
                             **extra: float) -> RecordDict:
        """`train_reply` plus the post-training evaluation when `client.evaluate_after_train`."""
        return train_reply(result, arrays, **self.post_train_metrics(model), **extra)


def eval_metrics_from(test: EvalResult, val: EvalResult | None) -> dict[str, float]:
    """A client's evaluation metrics from its test (and validation) results (`eval_metrics`)."""
    out = {"num-examples": test.num_examples, "test_loss": test.loss,
           "test_accuracy": test.accuracy, "test_f1": test.f1}
    if val is not None:
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


def stacked_train_reply(result: TrainResult, arrays: Mapping[str, torch.Tensor]) -> RecordDict:
    """`train_reply` of a client trained together with others on its node.

    The weights stay a RowRecord, which the packed wire format sends stacked with the node's
    other clients' weights (`fedplat.transport.wire`); the server reads the same values.
    """
    content = RecordDict({"arrays": to_rows(arrays)})
    content["metrics"] = train_reply(result)["metrics"]
    return content


def eval_reply(metrics: Mapping[str, float]) -> RecordDict:
    """Reply of an evaluation round."""
    return RecordDict({"metrics": MetricRecord(dict(metrics))})

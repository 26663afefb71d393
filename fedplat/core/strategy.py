"""The server side of an algorithm, reasoning about clients (stable ids), not Flower nodes.

A `Strategy` subclass lives in `strategies/<name>.py` and is named by `strategy._target_`. The
generic ServerApp (fedplat.server) learns every client's id once, then each round asks the
strategy which clients to train, what to send each of them (`configure_*` returns one
RecordDict per client id), and hands back their replies keyed by client id, with failures
listed separately. Turning those into Flower Messages for whichever nodes serve the clients is
the server's job; strategies never see node ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from flwr.app import RecordDict
from omegaconf import DictConfig
from torch import nn

from fedplat.core import records, seeding
from fedplat.core.stage import MAIN, Stage
from fedplat.data.datasets import DatasetInfo, dataset_info
from fedplat.models import build_model


@dataclass(frozen=True)
class ClientInfo:
    """What the server learns about a client in the set-up exchange."""

    cid: int
    num_train: int
    num_val: int
    num_test: int
    label_counts: list[int] = field(default_factory=list)


class Strategy:
    """Base class for the server half of an algorithm.

    Subclasses implement `configure_train` and `aggregate_train`, and usually
    `configure_evaluate`. Every method is called from one thread, in round order.
    """

    #: True for semi-supervised algorithms that learn from clients' unlabeled samples
    #: (`ClientData.x_unlabeled`); others need labels, so `split.label_ratio=0` is refused.
    learns_from_unlabeled: bool = False

    #: Import path (`package.module.Class`) of the `fedplat.privacy.threat.ThreatModel` that
    #: models what this strategy's clients upload, the default of `fedplat-attack` for its
    #: runs (`--threat-model` overrides it); None: no threat model is written for it.
    #:
    #: A class attribute rather than a `threat_model:` key in conf/strategy/<name>.yaml: what a
    #: threat model replays is the strategy's protocol, fixed by its code, not a setting to
    #: tune per run. Declared on the class it is inherited by variants that upload the same
    #: thing (a subclass whose upload differs sets it back to None), holds for every config
    #: that names the class, and is found for runs saved before it was written (their
    #: config.yaml names the class in `strategy._target_`). It is a string so that importing a
    #: strategy never imports its attack.
    threat_model: ClassVar[str | None] = None

    #: Keys of `strategy` that change only how clients are evaluated, never training nor the
    #: state a checkpoint holds: `fedplat evaluate RUN_DIR strategy.<key>=...` may change them
    #: on a saved run (`fedplat.evaluate`) and refuses every other key. Empty: none.
    evaluation_keys: ClassVar[tuple[str, ...]] = ()

    #: True when the strategy keeps one global model (its `global_state`) that every client
    #: starts from: the FedAvg family. Only such a model can be scored on a central test set
    #: (`split.central_test`, `global_model`); personalised strategies leave it False.
    has_global_model: ClassVar[bool] = False

    @classmethod
    def evaluation_problem(cls, saved: DictConfig, new: DictConfig) -> str | None:
        """Why a saved run cannot be evaluated under `new` (None: it can).

        Called by `fedplat evaluate` after the keys passed the `evaluation_keys` check, for an
        option whose value needs something the run only kept under another value.
        """
        return None

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.params = cfg.strategy
        self.seed = int(cfg.seed)
        self.clients: dict[int, ClientInfo] = {}

    @classmethod
    def validate_config(cls, cfg: DictConfig) -> None:
        """Check strategy-specific settings; raise `UserError` on bad values."""

    # -- life cycle ---------------------------------------------------------------------------

    def setup(self, clients: dict[int, ClientInfo]) -> None:
        """Called once, after the server learned which clients exist."""
        self.clients = clients

    @property
    def dataset(self) -> DatasetInfo:
        """Shapes and class count of the configured dataset."""
        return dataset_info(self.cfg.dataset)

    def global_model(self) -> dict[str, torch.Tensor] | None:
        """The current global model's state dict (None when the strategy keeps none).

        Strategies with `has_global_model` return theirs; scored by `split.central_test`.
        """
        return None

    def initial_model(self) -> nn.Module:
        """The configured model, initialised from the run's seed (same on every process)."""
        seeding.seed_torch(self.seed, seeding.INIT)
        return build_model(self.cfg.model, self.dataset)

    # -- sampling -----------------------------------------------------------------------------

    def sample(self, server_round: int, fraction: float, stage: int, minimum: int = 1) -> list[int]:
        """ceil(fraction * N) client ids (at least `minimum`), drawn from `(seed, round, stage)`."""
        ids = sorted(self.clients)
        k = min(len(ids), max(minimum, math.ceil(fraction * len(ids))))
        if k == len(ids):
            return ids
        chosen = seeding.rng(self.seed, seeding.SAMPLING, server_round, stage).choice(ids, k,
                                                                             replace=False)
        return sorted(int(c) for c in chosen)

    def sample_train(self, server_round: int) -> list[int]:
        """Clients that train in round `server_round` (`strategy.fraction_train`)."""
        return self.sample(server_round, float(self.params.fraction_train), Stage.TRAIN.stream,
                           int(self.params.get("min_train_clients", 1)))

    def sample_evaluate(self, server_round: int) -> list[int]:
        """Clients that evaluate in round `server_round` (`strategy.fraction_evaluate`).

        `fraction_evaluate=0` means no evaluation stage at all: clients then report their
        metrics with the train reply (`client.evaluate_after_train`).
        """
        fraction = float(self.params.fraction_evaluate)
        if fraction == 0:
            return []
        return self.sample(server_round, fraction, Stage.EVALUATE.stream)

    # -- rounds -------------------------------------------------------------------------------

    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        """What to send each training client."""
        raise NotImplementedError

    def aggregate_train(self, server_round: int, replies: dict[int, RecordDict],
                        failures: dict[int, str]) -> dict[str, Any]:
        """Update server state from the replies; return strategy metrics for the round log.

        Values are numbers, or JSON-serialisable structures (e.g. a similarity matrix as a
        list of lists) that go into metrics.jsonl as they are.
        `replies` holds at least one reply (the server stops the run when every client failed).
        """
        raise NotImplementedError

    # -- stages made of several exchanges ------------------------------------------------------

    def exchanges(self, stage: Stage, server_round: int) -> tuple[str, ...]:
        """The exchanges (round trips) making up one stage of round `server_round`, in order.

        `MAIN` ("") is the main exchange (`configure_train`/`aggregate_train`, or
        `configure_evaluate`/`aggregate_evaluate`); any other name is an extra round trip of a
        multi-message protocol, handled by `configure_exchange`/`aggregate_exchange` (e.g. a
        client descriptor sent before the weights, or a gradient sent back after them). The
        main exchange's clients are the sampled ones; a strategy may send fewer in an extra
        exchange (those that completed an earlier one). Clients receive the exchange name and
        answer it in `Client.exchange`. Default: the main exchange only.
        """
        return (MAIN,)

    def configure_exchange(self, stage: Stage, exchange: str, server_round: int,
                           cids: list[int]) -> dict[int, RecordDict]:
        """What to send each client in an extra exchange (see `exchanges`)."""
        raise NotImplementedError(f"{type(self).__name__} lists exchange '{exchange}' of "
                                  f"{stage} but does not configure it")

    def aggregate_exchange(self, stage: Stage, exchange: str, server_round: int,
                           replies: dict[int, RecordDict],
                           failures: dict[int, str]) -> dict[str, Any]:
        """Use an extra exchange's replies; return strategy metrics for the round log."""
        return {}

    def configure(self, stage: Stage, exchange: str, server_round: int,
                  cids: list[int]) -> dict[int, RecordDict]:
        """What to send each client in one exchange of a stage (dispatches on the names)."""
        if exchange != MAIN:
            return self.configure_exchange(stage, exchange, server_round, cids)
        if stage == Stage.TRAIN:
            return self.configure_train(server_round, cids)
        return self.configure_evaluate(server_round, cids)

    def aggregate(self, stage: Stage, exchange: str, server_round: int,
                  replies: dict[int, RecordDict],
                  failures: dict[int, str]) -> dict[str, Any]:
        """Use the replies of one exchange of a stage (dispatches on the names)."""
        if exchange != MAIN:
            return self.aggregate_exchange(stage, exchange, server_round, replies, failures)
        if stage == Stage.TRAIN:
            return self.aggregate_train(server_round, replies, failures)
        return self.aggregate_evaluate(server_round, replies, failures)

    def configure_evaluate(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        """What to send each evaluating client (default: nothing; clients use their state)."""
        return {cid: RecordDict() for cid in cids}

    def aggregate_evaluate(self, server_round: int, replies: dict[int, RecordDict],
                           failures: dict[int, str]) -> dict[str, float]:
        """Strategy-specific evaluation metrics (accuracy/loss are aggregated by the server)."""
        return {}

    def check_reply(self, stage: Stage, cid: int, content: RecordDict) -> str | None:
        """Why a client's reply must not be used (None = accept it).

        The default rejects non-finite values in any array; strategies add shape checks
        against what they expect (see `records.mismatch`). A rejected reply counts as a failure
        of that client in that round; the round goes on with the others.
        """
        return records.non_finite(content)

    #: Attributes that are configuration, not state (rebuilt from the config on resume).
    _NOT_STATE = frozenset({"cfg", "params", "seed", "clients"})

    def state_dict(self) -> dict[str, Any]:
        """Everything the strategy keeps between rounds, for checkpoints.

        The default takes every attribute except the configuration: models, optimizers (saved
        together with the parameters they reference), per-client tables. Override when an
        attribute cannot be pickled.
        """
        return {k: v for k, v in vars(self).items() if k not in self._NOT_STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (after `setup`)."""
        vars(self).update(state)

    def summary(self) -> dict[str, Any]:
        """Extra entries for summary.json."""
        return {}

    def write_artifacts(self, run_dir: Path, rows: list[dict[str, Any]]) -> None:
        """Write strategy-specific files (plots, matrices) into the run directory at the end.

        Called once after the last round (also when the run stopped early); `rows` are the
        metrics.jsonl rows so far.
        """

"""The FL round loop: a client-centric Strategy on one side, the transport on the other.

1. Set-up: the transport sends the resolved config to every node and learns the clients (ids,
   data sizes); the strategy is built and told which clients exist (or restored from the
   latest checkpoint with `resume=`).
2. Each round: the strategy samples the clients that train; offline clients
   (`faults.dropout_prob`) are left out; the train stage runs, then (every `eval_every` rounds
   and at the last) the evaluate stage. A stage is one or more exchanges
   (`Strategy.exchanges`); for each, the strategy builds one payload per client, the transport
   returns one checked reply per client, and the strategy aggregates. The clients' metrics of
   the main exchange are pooled into the round's row, which the recorder writes.
3. A round in which every client failed (or was offline) stops the run with `RunAborted`;
   what was recorded so far stays on disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import RecordDict
from flwr.serverapp import Grid
from omegaconf import DictConfig

from fedplat.config.compose import import_object, to_json
from fedplat.core import records
from fedplat.core.records import metrics_of
from fedplat.core.stage import MAIN, Stage
from fedplat.core.strategy import Strategy
from fedplat.data.federated import central_test_of
from fedplat.errors import RunAborted
from fedplat.privacy.capture import MessageCapture
from fedplat.progress import RoundProgress, check_mode, step
from fedplat.recording import checkpoint, rundir
from fedplat.recording.recorder import RunRecorder
from fedplat.training.central import CentralTest
from fedplat.transport import faults, placement
from fedplat.transport.exchange import ExchangeResult, Transport
from fedplat.transport.observers import CaptureObserver, Ledger

log = logging.getLogger("fedplat")

#: Keys of a round's row written by the server; strategy metrics may not reuse them.
COUNT_KEYS = ("num-examples", "num-val-examples", "num-test-examples")


#: Name prefix of the evaluate stage's client metrics in a run that also evaluates right after
#: local training (`client.evaluate_after_train=true`, e.g. FED-PUB's protocol): `test_accuracy`
#: stays the after-training accuracy, `before_train_test_accuracy` is the received model's (the
#: global model for FedAvg, the personalised one for FED-PUB), scored before any local step.
BEFORE_TRAIN = "before_train_"


def aggregate_metrics(per_client: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """Pooled (sample-weighted) and `_mean` (unweighted over clients) of every metric.

    `val_*` metrics are weighted by `num-val-examples`; `test_*` metrics by `num-test-examples`
    when a client reports it (test results sent with a train reply, whose `num-examples` is the
    training count), else by `num-examples`; all others by `num-examples`.
    """
    out: dict[str, float] = {}
    keys = sorted({k for m in per_client.values() for k in m if k not in COUNT_KEYS})
    for key in keys:
        def weight_of(m: Mapping[str, float], key: str = key) -> float:
            if key.startswith("val_"):
                return float(m.get("num-val-examples", 1.0))
            if key.startswith("test_") and "num-test-examples" in m:
                return float(m["num-test-examples"])
            return float(m.get("num-examples", 1.0))

        vals = [(m[key], weight_of(m)) for _, m in sorted(per_client.items())
                if key in m and m[key] == m[key]]  # skip NaN
        if not vals:
            continue
        total = sum(w for _, w in vals)
        out[key] = sum(v * w for v, w in vals) / total if total > 0 else float("nan")
        out[f"{key}_mean"] = sum(v for v, _ in vals) / len(vals)
    return out


def coverage(per_client: Mapping[int, Mapping[str, float]], num_clients: int
             ) -> dict[str, float]:
    """Whom the pooled test metrics of an exchange cover ({} when no reply has any).

    `evaluated_clients`: the clients whose reply carries test metrics; `covered_fraction`:
    their share of the population. Under dropout, failures or late replies a round's pooled
    accuracy is over fewer clients; these say how many (`per_client` says which).
    """
    tested = [c for c, m in per_client.items() if any(k.startswith("test_") for k in m)]
    if not tested:
        return {}
    return {"evaluated_clients": len(tested), "covered_fraction": len(tested) / num_clients}


class Server:
    """Drives one run: set-up, rounds, recording."""

    def __init__(self, grid: Grid, cfg: DictConfig, recorder: RunRecorder) -> None:
        self.cfg = cfg
        self.recorder = recorder
        self.strategy: Strategy | None = None
        #: The held-out central test set's scorer (`split.central_test`), built by `run`.
        self.central: CentralTest | None = None
        self.capture = MessageCapture(cfg, recorder.run_dir)
        self.ledger = Ledger()
        timeout = cfg.simulation.get("round_timeout")
        poll = cfg.simulation.get("poll_interval_s")
        self.transport = Transport(
            grid, timeout=float(timeout) if timeout is not None else None,
            poll_interval_s=float(poll) if poll is not None else None,
            observers=[self.ledger, CaptureObserver(self.capture)])

    # -- one stage ------------------------------------------------------------------------------

    def run_stage(self, strategy: Strategy, stage: Stage, server_round: int, sampled: list[int],
                  offline: list[int], row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """Every exchange of one stage for the sampled clients; the strategy's metrics.

        Offline clients (`faults.dropout_prob`) are left out of every exchange of the stage.
        `prefix` goes before the names of the clients' metrics in `row` (`BEFORE_TRAIN`).
        """
        cids = [c for c in sampled if c not in offline]
        row[f"num_{stage}_clients"] = len(sampled)
        row[f"dropped_{stage}"] = len(sampled) - len(cids)
        clients = row.setdefault("per_client", {})
        for cid in sampled:
            if cid in offline:
                clients.setdefault(str(cid), {})[f"dropped_{stage}"] = True
        if not cids:
            self._record(row)
            raise RunAborted(f"round {server_round}: all {len(sampled)} sampled clients were "
                             "offline "
                             f"for {stage} (faults.dropout_prob)")
        extra: dict[str, Any] = {}
        for exchange in strategy.exchanges(stage, server_round):
            payloads = strategy.configure(stage, exchange, server_round, cids)
            result = self.run_exchange(strategy, stage, exchange, server_round, payloads, row,
                                       prefix)
            extra.update(strategy.aggregate(stage, exchange, server_round, result.replies,
                                            result.failures))
        return extra

    def run_exchange(self, strategy: Strategy, stage: Stage, exchange: str, server_round: int,
                     payloads: Mapping[int, RecordDict], row: dict[str, Any],
                     prefix: str = "") -> ExchangeResult:
        """One exchange; the main exchange's client metrics go into `row` (names `prefix`ed).

        Replies of the main exchange pass `strategy.check_reply`; those of an extra exchange
        (whose content is the strategy's own protocol) get the generic non-finite check.
        """
        if exchange == MAIN:
            def check(cid: int, content: RecordDict) -> str | None:
                return strategy.check_reply(stage, cid, content)
        else:
            def check(cid: int, content: RecordDict) -> str | None:
                return records.non_finite(content)
        result = self.transport.exchange(stage, exchange, server_round, payloads, check)
        if exchange == MAIN:
            per_client = {cid: metrics_of(rd) for cid, rd in result.replies.items()}
            pooled = {**aggregate_metrics(per_client),
                      **coverage(per_client, int(self.cfg.num_clients))}
            row.update({prefix + key: value for key, value in pooled.items()})
            clients = row.setdefault("per_client", {})
            for cid, metrics in per_client.items():
                entry = clients.setdefault(str(cid), {})
                for key, value in metrics.items():
                    # counts differ per stage (train vs test samples): keep both
                    entry[f"{key}_{stage}" if key in COUNT_KEYS else prefix + key] = value
        if not result.replies:
            first = next(iter(sorted(result.failures.items())), None)
            why = f"; first failure: client {first[0]}: {first[1]}" if first else \
                " (no reply before simulation.round_timeout)"
            what = f"{stage} ({exchange})" if exchange else str(stage)
            self._record(row)
            raise RunAborted(f"round {server_round}: all {len(payloads)} clients failed in "
                             f"{what}{why}")
        return result

    # -- the run --------------------------------------------------------------------------------

    def _record(self, row: dict[str, Any]) -> None:
        row["wall_time_s"] = self.recorder.wall_time_s
        self.recorder.log_round(row)

    def save_checkpoint(self, server_round: int, strategy: Strategy) -> bool:
        """Ask every node to save its clients' state, then save the server's (see checkpoint)."""
        problem = self.transport.save_client_states(
            checkpoint.round_dir(self.recorder.run_dir, server_round))
        if problem is not None:
            log.warning("round %d: checkpoint skipped (%s)", server_round, problem)
            return False
        checkpoint.save_server(self.recorder.run_dir, server_round, strategy.state_dict())
        return True

    def start(self, resumed: tuple[int, Path] | None) -> Strategy:
        """Connect the nodes, build the strategy; restore both from a checkpoint if given.

        The nodes restore their clients' private state from the checkpoint directory in the
        set-up exchange; the strategy loads the server's state.
        """
        cfg = self.cfg
        nodes = placement.num_nodes(cfg)
        with step(f"waiting for {nodes} node{'s' if nodes != 1 else ''} to connect and set up "
                  "(config, data)", f"{nodes} node{'s' if nodes != 1 else ''} ready"):
            clients = self.transport.connect(
                to_json(cfg), int(cfg.num_clients), nodes,
                float(cfg.simulation.get("node_wait_s", 120.0)), resumed[1] if resumed else None)
        self.recorder.log_clients(
            [clients[c].label_counts for c in sorted(clients)],
            {"num_train": [clients[c].num_train for c in sorted(clients)],
             "num_val": [clients[c].num_val for c in sorted(clients)],
             "num_test": [clients[c].num_test for c in sorted(clients)]})
        strategy_cls = import_object(cfg.strategy._target_, "strategy._target_")
        strategy: Strategy = strategy_cls(cfg)
        strategy.setup(clients)
        self.strategy = strategy
        if resumed is not None:
            package = (type(strategy).__module__.split(".")[0] + ".",)  # its own classes
            strategy.load_state_dict(checkpoint.load_server(resumed[1], package)["strategy"])
        return strategy

    def evaluate_saved(self, resumed: tuple[int, Path]) -> dict[str, Any]:
        """One evaluate stage on a checkpoint, as the run's round `resumed[0]` would run it.

        The strategy's own evaluation sample, the same offline clients and the same seeds as
        that round; nothing is trained and no checkpoint is written. Returns the row.
        """
        strategy = self.start(resumed)
        server_round = resumed[0]
        row: dict[str, Any] = {"round": server_round}
        self.recorder.round_started()
        t0 = time.perf_counter()
        self.ledger.begin(row)
        offline = faults.dropped(self.cfg, server_round, sorted(strategy.clients))
        if self.cfg.faults.get("evaluate_offline", False):
            offline = []
        cids = strategy.sample_evaluate(server_round)
        if not cids:
            raise RunAborted(f"the strategy evaluates no client at round {server_round} "
                             "(strategy.fraction_evaluate=0?)")
        row.update(self.run_stage(strategy, Stage.EVALUATE, server_round, cids, offline, row))
        row["round_time_s"] = time.perf_counter() - t0
        self._record(row)
        return row

    def run(self) -> Strategy:
        """Set up, then run `num_rounds` rounds; return the strategy (for its summary).

        With `checkpoint_every=N`, a checkpoint follows every N-th round and the last one, so
        the final state can be evaluated again (`fedplat evaluate`) or a finished run resumed.
        """
        cfg = self.cfg
        resumed = checkpoint.latest(self.recorder.run_dir) if cfg.get("resume") else None
        strategy = self.start(resumed)
        first = 1
        if resumed is not None:
            first = resumed[0] + 1
            log.info("resuming after round %d from %s", resumed[0], resumed[1])
        num_rounds = int(cfg.num_rounds)
        everyone = sorted(strategy.clients)
        self.central = CentralTest(cfg) if central_test_of(cfg) else None
        with RoundProgress(num_rounds, first, check_mode(cfg)) as progress:
            for server_round in range(first, num_rounds + 1):
                self.run_round(strategy, server_round, everyone, progress)
        return strategy

    def run_round(self, strategy: Strategy, server_round: int, everyone: list[int],
                  progress: RoundProgress) -> None:
        """One round: train, evaluate when due, record, report, checkpoint when due."""
        cfg = self.cfg
        num_rounds, every = int(cfg.num_rounds), int(cfg.eval_every)
        save_every = int(cfg.get("checkpoint_every", 0))
        self.recorder.round_started()
        t0 = time.perf_counter()
        row: dict[str, Any] = {"round": server_round}
        self.ledger.begin(row)
        sampled = strategy.sample_train(server_round)
        offline = faults.dropped(cfg, server_round, everyone)
        extra = self.run_stage(strategy, Stage.TRAIN, server_round, sampled, offline, row)
        self.capture.check(server_round)
        eval_cids = strategy.sample_evaluate(server_round)  # empty: fraction_evaluate=0
        if eval_cids and (server_round % every == 0 or server_round == num_rounds):
            reached = [] if cfg.faults.get("evaluate_offline", False) else offline
            # with evaluate_after_train the train stage already reported test_*: keep both
            prefix = BEFORE_TRAIN if cfg.client.get("evaluate_after_train", False) else ""
            extra = {**extra, **self.run_stage(strategy, Stage.EVALUATE, server_round,
                                               eval_cids, reached, row, prefix)}
        if self.central is not None:  # split.central_test: the global model, every round
            state = strategy.global_model()
            if state is not None:
                extra = {**extra, **self.central.evaluate(state)}
        clash = set(extra) & set(row)
        if clash:
            raise RuntimeError(f"strategy metrics {sorted(clash)} clash with server keys")
        row.update(extra)
        row["round_time_s"] = time.perf_counter() - t0
        with rundir.sigterm_deferred():  # the row and its checkpoint land together
            self._record(row)
            progress.update(row, progress_line(row, num_rounds))
            if save_every and (server_round % save_every == 0 or server_round == num_rounds):
                self.save_checkpoint(server_round, strategy)


def progress_line(row: Mapping[str, Any], num_rounds: int) -> str:
    """`round  3/30  train_loss 0.5321  test_acc 0.8123  clients 10/10  1.23 s`."""
    parts = [f"round {row['round']:>{len(str(num_rounds))}}/{num_rounds}"]
    for key, label in (("train_loss", "train_loss"), ("test_loss", "test_loss"),
                       ("test_accuracy", "test_acc"), ("test_accuracy_mean", "client_mean"),
                       ("central_accuracy", "central_acc")):
        if isinstance(row.get(key), int | float):
            parts.append(f"{label} {row[key]:.4f}")
    n = row.get("num_train_clients", 0)
    ok = (n - row.get("failures_train", 0) - row.get("late_train", 0)
          - row.get("dropped_train", 0))
    parts.append(f"clients {ok}/{n}")
    parts.append(f"{row.get('round_time_s', 0.0):.2f} s")
    return "  ".join(parts)

"""Typed settings of the core config groups, checked once when they are built.

The composed config (`DictConfig`) stays the source of truth: it is what Hydra composes, what a
run saves as config.yaml and what the server sends to the clients, and it carries the groups the
core does not know (a strategy's own keys, dataset, partition, model, scenario). The keys every
run has, the ones the core itself reads, are read from here instead: `Settings.from_config(cfg)`
checks each of them (a bad value is a one-line `UserError` naming the key, the value and the
allowed range) and returns frozen dataclasses whose fields have their real types, so code reads
`settings.seed` (an int) or `settings.simulation.num_cpus` (a float) instead of casting
`int(cfg.seed)` out of the config wherever it is needed.

Build one `Settings` per run (and per process that receives the config) and pass it on: it is a
snapshot, so a change made to the `DictConfig` afterwards is not seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from omegaconf import DictConfig, OmegaConf

from fedplat.config.checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_int_list,
    require,
)
from fedplat.errors import UserError

#: Largest seed numpy's and torch's generators accept.
MAX_SEED = 2**32 - 1

Optimizer = Literal["sgd", "adam"]
#: `client.amp`: mixed precision of local training (`fedplat.training.loops`).
Amp = Literal["none", "bf16", "fp16"]
Backend = Literal["ray", "inline"]
#: `simulation.clients_per_node` before `fedplat.config.compose.prepare` resolves `auto`.
ClientsPerNode = int | Literal["auto"]

_ABSENT = "__absent__"


def _present(cfg: DictConfig, key: str) -> bool:
    """Whether dotted `key` exists (a key with a null value exists)."""
    value: object = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    return value != _ABSENT


@dataclass(frozen=True)
class SplitSettings:
    """`split.*`: how each client's share of the data is divided (`val`, `test`: fractions)."""

    val: float
    test: float
    #: Share of a client's training split that keeps its labels (1.0 when the key is absent).
    label_ratio: float
    #: Shares of the partition held by the server as labeled data (0 when the key is absent).
    server_shares: int

    @classmethod
    def from_config(cls, cfg: DictConfig) -> SplitSettings:
        """Check `split.*` of the whole config `cfg`."""
        val = check_float(cfg, "split.val", 0.0, 1.0, hi_open=True)
        test = check_float(cfg, "split.test", 0.0, 1.0, hi_open=True)
        if val + test >= 1.0:
            raise UserError(f"split.val + split.test = {val + test:g} leaves no training data; "
                            "keep their sum below 1")
        label_ratio = (check_float(cfg, "split.label_ratio", 0.0, 1.0)
                       if _present(cfg, "split.label_ratio") else 1.0)
        server_shares = (check_int(cfg, "split.server_shares", lo=0)
                          if _present(cfg, "split.server_shares") else 0)
        return cls(val, test, label_ratio, server_shares)


@dataclass(frozen=True)
class FaultSettings:
    """`faults.*`: injected failures and stragglers (all draws seeded)."""

    crash_clients: tuple[int, ...]
    crash_prob: float
    dropout_prob: float
    slow_clients: tuple[int, ...]
    slow_prob: float
    slow_delay_s: float
    #: Evaluate offline clients too: dropout then affects training only, so curves under
    #: dropout compare like with like (false when the key is absent).
    evaluate_offline: bool = False

    @classmethod
    def from_config(cls, cfg: DictConfig, num_clients: int) -> FaultSettings:
        """Check `faults.*`; client ids must be below `num_clients`."""
        last = num_clients - 1
        crash_clients = tuple(check_int_list(cfg, "faults.crash_clients", lo=0, hi=last))
        crash_prob = check_float(cfg, "faults.crash_prob", 0.0, 1.0)
        dropout_prob = check_float(cfg, "faults.dropout_prob", 0.0, 1.0)
        slow_clients = tuple(check_int_list(cfg, "faults.slow_clients", lo=0, hi=last))
        slow_prob = check_float(cfg, "faults.slow_prob", 0.0, 1.0)
        slow_delay_s = check_float(cfg, "faults.slow_delay_s", 0.0)
        evaluate_offline = (check_bool(cfg, "faults.evaluate_offline")
                            if _present(cfg, "faults.evaluate_offline") else False)
        return cls(crash_clients, crash_prob, dropout_prob, slow_clients, slow_prob,
                   slow_delay_s, evaluate_offline)


@dataclass(frozen=True)
class ClientSettings:
    """`client.*`: local training and evaluation on every client."""

    local_epochs: int
    batch_size: int
    eval_batch_size: int
    optimizer: Optimizer
    lr: float
    momentum: float
    weight_decay: float
    #: Keep the optimizer's state between rounds (false when the key is absent).
    persist_optimizer_state: bool
    #: Evaluate right after local training, in the train reply (false when absent).
    evaluate_after_train: bool
    #: Mixed precision of local training ('none' when the key is absent or null).
    amp: Amp = "none"

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ClientSettings:
        """Check `client.*` of the whole config `cfg`."""
        local_epochs = check_int(cfg, "client.local_epochs", lo=1)
        batch_size = check_int(cfg, "client.batch_size", lo=1)
        eval_batch_size = check_int(cfg, "client.eval_batch_size", lo=1)
        optimizer = cast(Optimizer, check_choice(cfg, "client.optimizer", ["sgd", "adam"]))
        lr = check_float(cfg, "client.lr", 0.0, lo_open=True)
        momentum = check_float(cfg, "client.momentum", 0.0, 1.0, hi_open=True)
        weight_decay = check_float(cfg, "client.weight_decay", 0.0)
        persist = (check_bool(cfg, "client.persist_optimizer_state")
                   if _present(cfg, "client.persist_optimizer_state") else False)
        evaluate_after_train = (check_bool(cfg, "client.evaluate_after_train")
                          if _present(cfg, "client.evaluate_after_train") else False)
        amp: Amp = "none"
        if _present(cfg, "client.amp") and require(cfg, "client.amp") is not None:
            amp = cast(Amp, check_choice(cfg, "client.amp", ["none", "bf16", "fp16"]))
        return cls(local_epochs, batch_size, eval_batch_size, optimizer, lr, momentum,
                   weight_decay, persist, evaluate_after_train, amp)


def parse_ray_address(value: object, key: str) -> str | None:
    """A Ray cluster address to connect to: None (null or ""), "auto" or "HOST:PORT".

    None means "start a local cluster, on loopback" (`fedplat.runtime.ray_cluster`); anything
    else connects to a running cluster, whose GCS listens at HOST:PORT (`ray start --head`
    prints it; "auto" finds a cluster started on this machine). IPv6 hosts go in brackets.
    """
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text == "auto":
        return text
    host, sep, port = text.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    ok = bool(sep) and bool(bare) and port.isdigit() and 1 <= int(port) <= 65535
    ok = ok and not any(c.isspace() or c in "/@" for c in bare)
    ok = ok and (":" not in bare or host.startswith("["))
    if not ok:
        raise UserError(f"{key}={value}: expected null (start a local Ray cluster), 'auto' or "
                        "HOST:PORT of a running cluster's head (as `ray start --head` prints "
                        "it, e.g. 10.0.0.5:6379)")
    return text


def parse_clients_per_node(cfg: DictConfig) -> ClientsPerNode:
    """`simulation.clients_per_node`: 'auto' (also for null or an absent key) or an int >= 1.

    Absent, it is 1 (one client per node, as in a deployment).
    """
    key = "simulation.clients_per_node"
    if not _present(cfg, key):
        return 1
    value = require(cfg, key)
    if value is None or str(value) == "auto":
        return "auto"
    try:
        k = int(value)
    except (TypeError, ValueError):
        k = 0
    if k < 1 or str(k) != str(value).strip():
        raise UserError(f"{key}={value}: expected 'auto' or an integer >= 1")
    return k


@dataclass(frozen=True)
class SimulationSettings:
    """`simulation.*`: the backend that runs the clients and the resources they get."""

    backend: Backend
    #: Ray resources per client.
    num_cpus: float
    num_gpus: float
    #: Seconds to wait for a round's replies (None: wait for all).
    round_timeout: float | None
    #: Totals Ray may use (None: all of this machine's).
    ray_num_cpus: float | None
    ray_num_gpus: float | None
    #: Seconds between the engine's polls (None: Flower's default).
    poll_interval_s: float | None
    #: Train a node's clients together when the algorithm supports it (null reads as false).
    batched: bool
    #: torch threads per client process (None: `num_cpus`).
    torch_threads: int | None
    #: Forward the Ray workers' output to this console (false when the key is absent).
    log_to_driver: bool
    #: Seconds the server waits for every client to connect (120 when the key is absent).
    node_wait_s: float
    #: Clients per simulated node; 'auto' until `fedplat.config.compose.prepare` resolves it.
    clients_per_node: ClientsPerNode
    #: Deterministic kernels on the clients (cuDNN, cuBLAS; false when the key is absent).
    deterministic: bool = False
    #: MiB of client data a GPU worker keeps on its device (None: the node's default).
    device_cache_mb: float | None = None
    #: Running Ray cluster to connect to ("auto" or HOST:PORT); None: start one on loopback.
    ray_address: str | None = None
    #: Local Ray workers open the driver's data memory-mapped (true when the key is absent).
    share_data: bool = True

    @classmethod
    def from_config(cls, cfg: DictConfig) -> SimulationSettings:
        """Check `simulation.*` of the whole config `cfg`."""
        backend = cast(Backend, check_choice(cfg, "simulation.backend", ["ray", "inline"]))
        num_cpus = check_float(cfg, "simulation.num_cpus", 0.0, lo_open=True)
        num_gpus = check_float(cfg, "simulation.num_gpus", 0.0)
        round_timeout = check_float(cfg, "simulation.round_timeout", 0.0, lo_open=True,
                                    allow_none=True)
        ray_num_cpus = check_float(cfg, "simulation.ray_num_cpus", 0.0, lo_open=True,
                                   allow_none=True)
        ray_num_gpus = check_float(cfg, "simulation.ray_num_gpus", 0.0, allow_none=True)
        poll = check_float(cfg, "simulation.poll_interval_s", 0.0, lo_open=True,
                           allow_none=True)
        batched = (False if require(cfg, "simulation.batched") is None
                   else check_bool(cfg, "simulation.batched"))
        threads = (None if require(cfg, "simulation.torch_threads") is None
                   else check_int(cfg, "simulation.torch_threads", lo=1))
        log_to_driver = (check_bool(cfg, "simulation.log_to_driver")
                         if _present(cfg, "simulation.log_to_driver") else False)
        node_wait_s = (check_float(cfg, "simulation.node_wait_s", 0.0)
                       if _present(cfg, "simulation.node_wait_s") else 120.0)
        deterministic = (_present(cfg, "simulation.deterministic")
                         and require(cfg, "simulation.deterministic") is not None
                         and check_bool(cfg, "simulation.deterministic"))
        cache_mb = (check_float(cfg, "simulation.device_cache_mb", 0.0, allow_none=True)
                    if _present(cfg, "simulation.device_cache_mb") else None)
        ray_address = (parse_ray_address(require(cfg, "simulation.ray_address"),
                                         "simulation.ray_address")
                       if _present(cfg, "simulation.ray_address") else None)
        share_data = (check_bool(cfg, "simulation.share_data")
                      if _present(cfg, "simulation.share_data") else True)
        if ray_address is not None and backend != "ray":
            raise UserError(f"simulation.ray_address={ray_address} needs simulation.backend=ray "
                            "(the inline backend runs in this process, without Ray)")
        return cls(backend, num_cpus, num_gpus, round_timeout, ray_num_cpus, ray_num_gpus, poll,
                   batched, threads, log_to_driver, node_wait_s, parse_clients_per_node(cfg),
                   deterministic, cache_mb, ray_address, share_data)

    def resolved_clients_per_node(self) -> int:
        """`clients_per_node` as a number (the config must have been through `prepare`)."""
        if self.clients_per_node == "auto":
            raise ValueError("simulation.clients_per_node is still 'auto': build the settings "
                             "from a config that fedplat.config.compose.prepare has resolved")
        return self.clients_per_node


@dataclass(frozen=True)
class StrategySettings:
    """The part of `strategy.*` every strategy has (its own keys stay in the config).

    Which classes implement it (`_target_`, `client_target`) is the centralized scenario's
    business (`simulations.centralized.validate_config`): a peer-to-peer scenario has none.
    """

    #: Share of the clients sampled to train in a round.
    fraction_train: float
    #: Share sampled to evaluate (0: no evaluation stage).
    fraction_evaluate: float
    min_train_clients: int

    @classmethod
    def from_config(cls, cfg: DictConfig, num_clients: int) -> StrategySettings:
        """Check the common `strategy.*` keys; at most `num_clients` clients can be required."""
        fraction_train = check_float(cfg, "strategy.fraction_train", 0.0, 1.0, lo_open=True)
        fraction_evaluate = check_float(cfg, "strategy.fraction_evaluate", 0.0, 1.0)
        min_train = check_int(cfg, "strategy.min_train_clients", lo=1, hi=num_clients)
        return cls(fraction_train, fraction_evaluate, min_train)


@dataclass(frozen=True)
class Settings:
    """The core settings of one run: top-level keys and the core groups, typed and checked."""

    seed: int
    num_clients: int
    num_rounds: int
    #: Evaluate every k rounds (the last round is always evaluated).
    eval_every: int
    #: Checkpoint every N rounds (0: never).
    checkpoint_every: int
    #: Run directory to continue (None: a fresh run).
    resume: Path | None
    split: SplitSettings
    faults: FaultSettings
    client: ClientSettings
    simulation: SimulationSettings
    strategy: StrategySettings

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Settings:
        """Check the core keys of the composed config `cfg` and return them typed.

        Raises `UserError` on the first bad value, in the order of the config file.
        """
        seed = check_int(cfg, "seed", lo=0, hi=MAX_SEED)
        n = check_int(cfg, "num_clients", lo=1)
        num_rounds = check_int(cfg, "num_rounds", lo=1)
        eval_every = check_int(cfg, "eval_every", lo=1)
        checkpoint_every = check_int(cfg, "checkpoint_every", lo=0)
        client = ClientSettings.from_config(cfg)
        simulation = SimulationSettings.from_config(cfg)
        if client.amp == "fp16" and simulation.num_gpus == 0:
            raise UserError("client.amp=fp16 needs CUDA clients (simulation.num_gpus > 0); "
                            "use client.amp=bf16 on CPU")
        return cls(
            seed=seed,
            num_clients=n,
            num_rounds=num_rounds,
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            resume=resume_dir(cfg),
            split=SplitSettings.from_config(cfg),
            faults=FaultSettings.from_config(cfg, n),
            client=client,
            simulation=simulation,
            strategy=StrategySettings.from_config(cfg, n),
        )


def resume_dir(cfg: DictConfig) -> Path | None:
    """`resume`: a run directory with a checkpoint, or None ('' or null: a fresh run).

    Also used on its own: the CLI reads it before the rest of the config, which a resumed run
    replaces with the one it saved.
    """
    resume = cfg.get("resume") or ""
    if not resume:
        return None
    run_dir = Path(str(resume)).expanduser()
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"resume={resume}: no run directory there (no config.yaml)")
    if not (run_dir / "checkpoint" / "latest.json").is_file():
        from fedplat.recording.rundir import no_checkpoint_line

        raise UserError(no_checkpoint_line(run_dir, str(resume)))
    return run_dir

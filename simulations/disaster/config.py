"""Checks of the disaster scenario's config: one clear line for every mistake.

`validate_config` is this scenario's hook: `fedplat.config.compose.validate` calls it (through
`simulations.disaster`, the module of `scenario.runner`) after the core's checks, so the CLI
rejects bad input before any data is loaded or Ray starts (exit code 2). It checks DecAvg's
settings (`strategy=decavg`), the topology, the data placement, the disruption schedule and
the P2P execution. The schedule is checked by building the timeline, which is cheap, so
impossible events (removing every node, dropping a node that is already gone) are caught here
too.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedplat.config.checks import check_choice, check_float, check_int
from fedplat.errors import UserError
from simulations.disaster.decavg import FALLBACKS, WEIGHT_RULES
from simulations.disaster.events import build_timeline
from simulations.disaster.topology import build_graph

#: The one algorithm this scenario runs (its settings: conf/strategy/decavg.yaml).
STRATEGY = "decavg"

ORDERS: tuple[str, ...] = ("jacobi", "gauss_seidel")
BACKENDS: tuple[str, ...] = ("ray", "local")
RELAY_SELECT: tuple[str, ...] = ("random", "top_degree", "peripheral")
RELAY_DATA: tuple[str, ...] = ("discard", "redistribute")
ON_FAILURE: tuple[str, ...] = ("keep", "drop")


def _container(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    if value is None:
        raise UserError(f"missing config key '{key}' (conf/scenario/disaster.yaml defines it)")
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _bool(cfg: DictConfig, key: str) -> bool:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        raise UserError(f"{key}={value!r} must be true or false")
    return value


def validate_config(cfg: DictConfig) -> None:
    """Check everything `scenario=disaster` reads (DecAvg's settings in `strategy`)."""
    if cfg.strategy.name != STRATEGY:
        raise UserError(f"scenario=disaster runs decentralized strategies; "
                        f"strategy={cfg.strategy.name} is centralized: use strategy={STRATEGY}")
    check_choice(cfg, "strategy.weights", WEIGHT_RULES)
    check_choice(cfg, "strategy.zero_data_fallback", FALLBACKS)
    _bool(cfg, "strategy.common_init")

    topo = _container(cfg, "topology")
    n = int(cfg.num_clients)
    if topo.get("n") != n:
        raise UserError(f"topology.n={topo.get('n')} differs from num_clients={n}; set the "
                        "number of nodes with num_clients=N (topology.n follows it)")

    check_int(cfg, "placement.per_node", lo=1) if cfg.placement.per_node is not None else None
    check_float(cfg, "placement.relay_fraction", 0.0, 1.0, hi_open=True)
    check_choice(cfg, "placement.relay_select", RELAY_SELECT)
    check_choice(cfg, "placement.relay_data", RELAY_DATA)
    check_float(cfg, "placement.test_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
    if cfg.placement.test_size is not None:
        check_int(cfg, "placement.test_size", lo=1)

    check_choice(cfg, "p2p.order", ORDERS)
    check_choice(cfg, "p2p.backend", BACKENDS)
    check_int(cfg, "p2p.num_workers", lo=1)
    check_float(cfg, "p2p.cpus_per_worker", 0.0, lo_open=True)
    check_int(cfg, "p2p.torch_threads", lo=1)
    check_choice(cfg, "p2p.on_failure", ON_FAILURE)
    check_int(cfg, "p2p.max_missed_rounds", lo=1)
    check_float(cfg, "p2p.round_timeout", 0.0, lo_open=True, allow_none=True)
    _bool(cfg, "p2p.plots")
    _bool(cfg, "p2p.batched")
    check_int(cfg, "p2p.batch_nodes", lo=1)
    exit_round = OmegaConf.select(cfg, "p2p.worker_exit.round")
    if exit_round is not None:
        check_int(cfg, "p2p.worker_exit.round", lo=1, hi=int(cfg.num_rounds))
        check_int(cfg, "p2p.worker_exit.worker", lo=0, hi=int(cfg.p2p.num_workers) - 1)

    events = _container(cfg, "disruption.events")
    allow_empty = _bool(cfg, "disruption.allow_empty")
    topology = build_graph(topo)
    timeline = build_timeline(topology, events, int(cfg.num_rounds), int(cfg.seed),
                              allow_empty=allow_empty)
    relays = len(timeline.relays) + round(float(cfg.placement.relay_fraction) * n)
    if relays >= n:
        raise UserError(f"every node would be a relay ({relays} of {n}): nobody holds data; "
                        "lower placement.relay_fraction or the relay-victims' count")

"""Fault injection for robustness studies: crashes, dropouts and stragglers.

Every decision is drawn from the run seed's FAULTS stream keyed by (round, client id, kind), so a
faulty run is as reproducible as a clean one. Crashes and delays happen on the node, before the
client trains (`inject`, called by `fedplat.transport.node` only: the server sees an error reply,
or no reply before `simulation.round_timeout`); dropouts are decided by the server (`dropped`),
which then does not contact the client in that round (a device that is offline).
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from fedplat.core import seeding

_CRASH, _DROP, _SLOW = 0, 1, 2


class InjectedFault(RuntimeError):
    """A crash requested by the `faults` config."""


def _draw(cfg: DictConfig, server_round: int, cid: int, kind: int) -> float:
    return float(seeding.rng(int(cfg.seed), seeding.FAULTS, server_round, cid, kind).random())


def dropped(cfg: DictConfig, server_round: int, cids: list[int]) -> list[int]:
    """Clients of `cids` that are offline in round `server_round` (`faults.dropout_prob`)."""
    p = float(cfg.faults.get("dropout_prob", 0.0))
    if p <= 0:
        return []
    return [c for c in cids if _draw(cfg, server_round, c, _DROP) < p]


def inject(cfg: DictConfig, cid: int, server_round: int) -> None:
    """Raise or sleep as the `faults` config asks for this client's training this round."""
    faults = cfg.faults
    if cid in list(faults.crash_clients):
        raise InjectedFault(f"injected crash of client {cid} (faults.crash_clients)")
    p = float(faults.crash_prob)
    if p > 0 and _draw(cfg, server_round, cid, _CRASH) < p:
        raise InjectedFault(f"injected crash of client {cid} in round {server_round} "
                            f"(faults.crash_prob={p})")
    slow = cid in list(faults.get("slow_clients", []))
    p_slow = float(faults.get("slow_prob", 0.0))
    if slow or (p_slow > 0 and _draw(cfg, server_round, cid, _SLOW) < p_slow):
        time.sleep(float(faults.get("slow_delay_s", 0.0)))

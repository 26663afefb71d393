"""Fault injection for robustness studies: crashes, dropouts and stragglers.

Every decision is drawn from the run seed's FAULTS stream keyed by (round, client id, kind), so a
faulty run is as reproducible as a clean one. Each is a property of one client, whichever node
serves it. Crashes and delays happen on the node, before the client trains (`inject`, called by
`fedplat.transport.node` only): a crash is that client's error, a delay counts towards that
client's own time, which the node compares with `simulation.round_timeout` (a client over it is
reported late; `hold` sleeps the delay, but never past the deadline). Dropouts are decided by
the server (`dropped`), which then does not contact the client in that round (a device that is
offline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from omegaconf import DictConfig

from fedplat.core import seeding

_CRASH, _DROP, _SLOW = 0, 1, 2


class InjectedFault(RuntimeError):
    """A crash requested by the `faults` config."""


def _draw(seed: int, server_round: int, cid: int, kind: int) -> float:
    return float(seeding.rng(seed, seeding.FAULTS, server_round, cid, kind).random())


def dropped(cfg: DictConfig, server_round: int, cids: list[int]) -> list[int]:
    """Clients of `cids` that are offline in round `server_round` (`faults.dropout_prob`)."""
    p = float(cfg.faults.get("dropout_prob", 0.0))
    if p <= 0:
        return []
    return [c for c in cids if _draw(int(cfg.seed), server_round, c, _DROP) < p]


@dataclass(frozen=True)
class Plan:
    """The `faults` settings of a training exchange, read from the config once.

    A node asks for every client of its group each round; reading the OmegaConf config per
    client (and copying its lists) was a visible share of a round at 1,000 clients
    (`benchmarks/profile_round.py`).
    """

    seed: int
    crash_clients: frozenset[int] = frozenset()
    crash_prob: float = 0.0
    slow_clients: frozenset[int] = frozenset()
    slow_prob: float = 0.0
    slow_delay_s: float = 0.0

    @classmethod
    def of(cls, cfg: DictConfig) -> Plan:
        """The plan of `cfg.faults` (with the run seed its draws come from)."""
        faults = cfg.faults
        return cls(int(cfg.seed), frozenset(int(c) for c in faults.crash_clients),
                   float(faults.crash_prob),
                   frozenset(int(c) for c in faults.get("slow_clients", [])),
                   float(faults.get("slow_prob", 0.0)), float(faults.get("slow_delay_s", 0.0)))

    def inject(self, cid: int, server_round: int) -> float:
        """Raise as the plan asks for this client's training, else return its delay.

        The delay is in seconds (0.0 for a client that is not a straggler this round). The
        caller sleeps it (`hold`) and counts it in the client's own time.
        """
        if cid in self.crash_clients:
            raise InjectedFault(f"injected crash of client {cid} (faults.crash_clients)")
        p = self.crash_prob
        if p > 0 and _draw(self.seed, server_round, cid, _CRASH) < p:
            raise InjectedFault(f"injected crash of client {cid} in round {server_round} "
                                f"(faults.crash_prob={p})")
        p_slow = self.slow_prob
        if cid in self.slow_clients or (
                p_slow > 0 and _draw(self.seed, server_round, cid, _SLOW) < p_slow):
            return self.slow_delay_s
        return 0.0


def inject(cfg: DictConfig, cid: int, server_round: int) -> float:
    """`Plan.of(cfg).inject(cid, server_round)`, for one client."""
    return Plan.of(cfg).inject(cid, server_round)


def hold(delay_s: float, deadline_s: float | None) -> None:
    """Sleep a straggler's injected delay, but no longer than the round's deadline.

    A straggler whose delay alone passes `simulation.round_timeout` is late whatever it does
    next; holding its node longer would only delay its node-mates' replies (and the run).
    """
    wait = delay_s if deadline_s is None else min(delay_s, deadline_s)
    if wait > 0:
        time.sleep(wait)

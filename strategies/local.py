"""Local: every client trains its own model on its own data; the server only schedules.

The lower bound of personalised-FL comparisons (no collaboration). Nothing but metrics crosses
the network; each model lives in its client's private state.
"""

from __future__ import annotations

from flwr.app import RecordDict
from typing_extensions import override

from fedplat.core.strategy import Strategy


class Local(Strategy):
    """Sends empty payloads; keeps no model."""

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        return {cid: RecordDict() for cid in cids}

    @override
    def aggregate_train(self, server_round: int, replies: dict[int, RecordDict],
                        failures: dict[int, str]) -> dict[str, float]:
        return {}

"""The one vocabulary for what a round does: a `train` stage, then (maybe) an `evaluate` stage.

A stage is made of one or more exchanges (a round trip to the selected clients): the main
exchange, named "", and any extra exchanges a multi-message protocol declares
(`Strategy.exchanges`). The values equal Flower's `MessageType.TRAIN` and
`MessageType.EVALUATE`, so a stage is also the message type that carries it.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """A stage of a round."""

    TRAIN = "train"
    EVALUATE = "evaluate"

    @property
    def stream(self) -> int:
        """The id of this stage in seeded random streams (client sampling, client RNG).

        Fixed forever: changing it would change every run's draws.
        """
        return 0 if self == Stage.TRAIN else 1


#: The name of a stage's main exchange (`Strategy.configure_train` / `configure_evaluate`).
MAIN = ""

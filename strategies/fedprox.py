"""FedProx (Li et al., MLSys 2020): FedAvg whose clients add a proximal term to their loss.

The server is FedAvg's; it only tells the clients the proximal weight mu each round. Client k
minimises F_k(w) + mu/2 * ||w - w_t||^2 from the global model w_t (clients/fedprox.py), which
keeps local models near the global one under heterogeneous data. mu = 0 is FedAvg exactly.
"""

from __future__ import annotations

from typing import ClassVar

from flwr.app import RecordDict
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_float
from strategies.fedavg import FedAvg


class FedProx(FedAvg):
    """FedAvg plus the proximal weight `strategy.mu` in every training message."""

    #: FedAvg's threat model replays plain local SGD; a FedProx client's steps also follow the
    #: proximal term, so that replay would be wrong. None until a threat model models it.
    threat_model: ClassVar[str | None] = None

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        check_float(cfg, "strategy.mu", 0.0)

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        payloads = super().configure_train(server_round, cids)
        for content in {id(c): c for c in payloads.values()}.values():  # one shared record
            content["config"]["mu"] = float(self.params.mu)
        return payloads

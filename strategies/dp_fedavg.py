"""DP-FedAvg with client-side clipping and Gaussian noise (a defence baseline for privacy audits).

Each client clips its model update to L2 norm `clip` and adds N(0, (noise_multiplier * clip)^2)
noise to every coordinate before sending w_0 + update (clients/dp_fedavg.py); the server
averages as FedAvg. This is local (client-level) Gaussian noise, Flower's `LocalDpMod` idea in
fedplat's client/strategy form; it is not HyperFL's baseline (per-sample DP-SGD with Opacus),
and no privacy budget epsilon is accounted here: `noise_multiplier` and `clip` are reported as
they are.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, RecordDict
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_float
from strategies.fedavg import FedAvg


class DPFedAvg(FedAvg):
    """FedAvg whose clients privatise their updates; the server side is unchanged."""

    #: FedAvg's, inherited: the attacker replays plain SGD and ignores clipping and noise.
    threat_model = FedAvg.threat_model

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        check_float(cfg, "strategy.clip", 0.0, lo_open=True)
        check_float(cfg, "strategy.noise_multiplier", 0.0)

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        content = self._payload()
        content["config"] = ConfigRecord({"lr": float(self.cfg.client.lr),
                                          "clip": float(self.params.clip),
                                          "noise_multiplier": float(self.params.noise_multiplier)})
        return {cid: content for cid in cids}

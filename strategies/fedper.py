"""FedPer (Arivazhagan et al., 2019): federated base layers, personal head layers.

The server averages only the base (everything but the head) as FedAvg does; each client keeps
its head in its private state. The head is the last layer with parameters by default
(`strategy.head_prefix: auto`, e.g. `clsif.` of the GCN or the last Linear of an MLP), or the
parameters whose names start with `strategy.head_prefix`.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ConfigRecord, RecordDict
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.core import ops
from fedplat.core.records import to_record
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from strategies.fedavg import FedAvg


def head_prefix(names: Iterable[str], configured: str) -> str:
    """The head's name prefix: `configured`, or (auto) the last parameter's module + '.'."""
    names = list(names)
    if configured != "auto":
        return configured
    last = names[-1]
    return last.rsplit(".", 1)[0] + "." if "." in last else last


def split_head(state: ops.State, prefix: str) -> tuple[ops.State, ops.State]:
    """(base, head) parts of a state dict."""
    base = {k: v for k, v in state.items() if not k.startswith(prefix)}
    head = {k: v for k, v in state.items() if k.startswith(prefix)}
    return base, head


class FedPer(FedAvg):
    """FedAvg over the base layers only; heads never leave the clients."""

    #: None: FedAvg's threat model replays the whole model, but only the base layers travel.
    threat_model = None
    #: The heads are personal: there is no one global model to score on a central test set.
    has_global_model = False

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        super().validate_config(cfg)
        prefix = cfg.strategy.get("head_prefix")
        if not isinstance(prefix, str) or not prefix:
            raise UserError(f"strategy.head_prefix={prefix!r} must be 'auto' or a parameter "
                            "name prefix such as 'clsif.'")

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        prefix = head_prefix(self.global_state, str(self.params.head_prefix))
        base, head = split_head(self.global_state, prefix)
        if not head or not base:
            raise UserError(f"strategy.head_prefix='{prefix}' must match some but not all "
                            f"parameters (have: {', '.join(self.global_state)})")
        self.prefix = prefix
        self.global_state = ops.clone(base)

    @override
    def _payload(self) -> RecordDict:
        return RecordDict({"arrays": to_record(self.global_state),
                           "head": ConfigRecord({"prefix": self.prefix})})

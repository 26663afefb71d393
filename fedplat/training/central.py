"""The global model scored on a central test set kept apart from the clients' data.

`split.central_test=true` holds a dataset's official test part out of the partition
(Fashion-MNIST's and CIFAR-10's 10,000 test images; for a per-user dataset such as Shakespeare,
LEAF's test set: every client's held-out samples pooled). After every round the server scores
the strategy's global model on it and records `central_accuracy` and `central_loss`, the metric
of papers that report the global model on the full test set (FedHyper, FedAvg). Only strategies
that keep one global model (`Strategy.has_global_model`: the FedAvg family) can be scored.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from fedplat.data.datasets import dataset_info
from fedplat.data.federated import (
    FederatedDataset,
    GeneratedFederatedDataset,
    build_federated,
    load_federated,
)
from fedplat.models import build_model
from fedplat.training.loops import evaluate

#: Metric keys of a round's row.
ACCURACY, LOSS = "central_accuracy", "central_loss"


def central_test_set(cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The central test set of the configured data (features, labels)."""
    fed = load_federated(cfg)
    if isinstance(fed, GeneratedFederatedDataset):
        return fed.central_test()
    if isinstance(fed, FederatedDataset):
        held = fed.central_test()
        if held is None:  # a worker's shared copy carries no central part: build it here
            built = build_federated(cfg)
            assert isinstance(built, FederatedDataset)
            held = built.central_test()
        if held is not None:
            return held
    raise RuntimeError("split.central_test=true but the data has no central test set")


class CentralTest:
    """The central test set and one model to load global states into."""

    def __init__(self, cfg: DictConfig) -> None:
        self.x, self.y = central_test_set(cfg)
        with torch.random.fork_rng(devices=[]):  # building draws weights: keep the run's RNG
            self.model = build_model(cfg.model, dataset_info(cfg.dataset))
        self.batch_size = int(cfg.client.get("eval_batch_size", 256))

    def __len__(self) -> int:
        return len(self.y)

    def evaluate(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        """Accuracy and mean cross-entropy of the model `state` on the central test set."""
        self.model.load_state_dict(state)
        result = evaluate(self.model, self.x, self.y, self.batch_size)
        return {ACCURACY: result.accuracy, LOSS: result.loss}

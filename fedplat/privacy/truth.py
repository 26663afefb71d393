"""What the *scorer* (not the attacker) uses: the true private batch and the input bounds.

The true batch of a capture is rebuilt from the seeded data pipeline (the client's training
split and `capture.attack_batch`), never from the capture. The input bounds are the
dataset's normalisation applied to the pixel range, i.e. public constants; they are read off
the pooled dataset (its smallest and largest standardised value per channel).
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from fedplat.config.diagnose import load_config_file
from fedplat.data import ClientData, FederatedDataset, load_federated
from fedplat.errors import UserError
from fedplat.privacy.capture import Capture, attack_batch
from fedplat.privacy.threat import Knowledge
from fedplat.recording.recorder import CONFIG_FILE


def run_config(run_dir: Path) -> DictConfig:
    """The resolved config a run saved (`config.yaml`)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a fedplat run directory (no {CONFIG_FILE})")
    return load_config_file(path, "fedplat run")


def knowledge(cfg: DictConfig) -> Knowledge:
    """The attacker's public knowledge for a run: its config and the input bounds."""
    fed = load_federated(cfg)
    if not isinstance(fed, FederatedDataset):
        raise UserError("gradient inversion reconstructs feature inputs of a pooled dataset; "
                        "graph datasets and datasets generated per user (dataset=synthetic) "
                        "are not supported by fedplat-attack")
    x = torch.from_numpy(fed.x)
    if x.dim() == 4:
        low, high = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
    else:
        low, high = x.min().reshape(1), x.max().reshape(1)
    return Knowledge(cfg, fed.info, low.float(), high.float())


def true_batch(cfg: DictConfig, capture: Capture) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels the captured client trained on in the capture round."""
    data = load_federated(cfg).client(capture.client)
    if not isinstance(data, ClientData):
        raise UserError("gradient inversion reconstructs feature inputs of a pooled dataset; "
                        "graph datasets and datasets generated per user (dataset=synthetic) "
                        "are not supported by fedplat-attack")
    if capture.num_samples <= 0:
        return data.x_train, data.y_train
    idx = attack_batch(int(cfg.seed), capture.round, capture.client, data.num_train,
                       capture.num_samples)
    return data.x_train[idx], data.y_train[idx]

"""Target networks. Small by design: FL studies pay per parameter sent, per client, per round."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then dense layers with ReLU (e.g. the 40-100-100-10 MNIST-1D baseline)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch."""
        return self.net(x)


class CNN(nn.Module):
    """Conv(5x5, same padding)-ReLU-MaxPool blocks, then dense layers (LeNet/FedAvg style)."""

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int],
                 hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        blocks: list[nn.Module] = []
        for out in channels:
            blocks += [nn.Conv2d(c, out, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*blocks)
        self.classifier = MLP(c * h * w, hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of (C, H, W) images."""
        return self.classifier(self.features(x))


class CNN1D(nn.Module):
    """1-D convolutions (stride 2) over a sequence, then a linear head (MNIST-1D's ConvNet)."""

    def __init__(self, length: int, channels: Sequence[int], hidden: Sequence[int],
                 num_classes: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c, n = 1, length
        for out in channels:
            blocks += [nn.Conv1d(c, out, 5, stride=2, padding=1), nn.ReLU()]
            c, n = out, (n + 2 - 5) // 2 + 1
        self.features = nn.Sequential(*blocks)
        self.classifier = MLP(c * n, hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of (L,) or (1, L) sequences."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x))

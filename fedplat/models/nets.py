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


def _conv_out(size: int, kernel: int, padding: int = 0) -> int:
    return size + 2 * padding - kernel + 1


class LeNet(nn.Module):
    """The target CNN of pFedHN and PeFLL (`CNNTarget`), LeNet-style.

    Two 5x5 convolutions without padding (k and 2k kernels, ReLU, 2x2 max-pool), then 120-84-C
    dense layers with ReLU.
    121,182 parameters for 3x32x32 inputs and 10 classes (k=16), as in the papers; the flatten
    size follows the input shape (512 for 1x28x28). The head is `fc3`.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, n_kernels: int = 16) -> None:
        super().__init__()
        c, h, w = input_shape
        h2, w2 = _conv_out(h, 5) // 2, _conv_out(w, 5) // 2
        h3, w3 = _conv_out(h2, 5) // 2, _conv_out(w2, 5) // 2
        if min(h3, w3) < 1:
            raise ValueError(f"LeNet needs inputs of at least 16x16 pixels, got {h}x{w}")
        self.conv1 = nn.Conv2d(c, n_kernels, 5)
        self.conv2 = nn.Conv2d(n_kernels, 2 * n_kernels, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(2 * n_kernels * h3 * w3, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of (C, H, W) images."""
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class HyperFLCNN(nn.Module):
    """HyperFL's target CNNs (LeakyReLU, 2x2 max-pool); the head is `fc2` (128 -> C).

    Colour 32x32 inputs get the CIFAR network (`CifarCNN`: conv 3->16 5x5, conv 16->32 5x5 pad 1,
    conv 32->64 3x3 pad 1, fc 576->128); any other image the Fashion-MNIST/EMNIST network
    (`CNN_FMNIST`: conv C->16 5x5, conv 16->32 5x5 pad 1, fc 800->128 for 28x28).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        cifar = c == 3 and h == 32 and w == 32
        self.conv1 = nn.Conv2d(c, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=1)
        h, w = _conv_out(h, 5) // 2, _conv_out(w, 5) // 2
        h, w = _conv_out(h, 5, 1) // 2, _conv_out(w, 5, 1) // 2
        channels = 32
        self.conv3: nn.Conv2d | None = None
        if cifar:
            self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
            h, w, channels = _conv_out(h, 3, 1) // 2, _conv_out(w, 3, 1) // 2, 64
        if min(h, w) < 1:
            raise ValueError(f"HyperFL's CNN needs inputs of at least 14x14 pixels, got "
                             f"{input_shape[1]}x{input_shape[2]}")
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(channels * h * w, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of (C, H, W) images."""
        act = nn.functional.leaky_relu
        x = self.pool(act(self.conv1(x)))
        x = self.pool(act(self.conv2(x)))
        if self.conv3 is not None:
            x = self.pool(act(self.conv3(x)))
        x = act(self.fc1(x.flatten(1)))
        return self.fc2(x)


class CharLSTM(nn.Module):
    """LEAF's next-character model: embedding, stacked LSTM, linear head on the last step.

    LEAF's Shakespeare reference model (and the model FedAvg/FedHyper-style papers use on it):
    an embedding of `embed` = 8 dimensions per character, 2 LSTM layers of 256 units, and a
    linear layer from the last time step's output to the vocabulary. Inputs are integer
    character indices (any integer dtype) of shape (batch, length); outputs are the logits of
    the next character. 819,920 parameters for LEAF's 80-character vocabulary.
    """

    def __init__(self, vocab: int, embed: int = 8, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, vocab) of the character after each sequence."""
        out, _ = self.lstm(self.embedding(x.long()))
        return self.head(out[:, -1])

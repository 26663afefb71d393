"""Graph convolutional networks for node classification, with optional weight masks.

`GCN(masked=False)` is Kipf & Welling's GCN; `GCN(masked=True)` is FED-PUB's masked GCN: every
weight matrix W has a trainable mask M of the same shape and the layer uses W ⊙ M. In eval mode
mask entries with |m| < `prune_threshold` count as zero (train mode uses the raw real-valued
mask). Both variants share layer names, initialisation and forward pass, so a baseline without
masks is exactly the masked model minus its masks.

Layer i computes Â · X · (W_i ⊙ M_i)ᵀ + b_i with Â = D̃^{-1/2}(A + I)D̃^{-1/2}: the weight is
applied before propagation (cheaper with wide bag-of-words inputs), the bias after it. The
normalised adjacency is built here as a sparse matrix (PyG's `gcn_norm` semantics, checked in
the tests) rather than through PyTorch Geometric, so the models import without it.

Parameter names: `conv{i}.lin.weight`, `conv{i}.mask`, `conv{i}.bias`, `clsif.weight`,
`clsif.mask`, `clsif.bias`; every mask name contains "mask".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def gcn_edges(edge_index: torch.Tensor, num_nodes: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source, target, weight) of D̃^{-1/2}(A + I)D̃^{-1/2}; self-loops replaced by weight 1.

    Degrees count incoming edges (targets), as PyG's `gcn_norm` for messages flowing from
    `edge_index[0]` to `edge_index[1]`.
    """
    src, dst = edge_index[0], edge_index[1]
    keep = src != dst
    loops = torch.arange(num_nodes, device=edge_index.device)
    src = torch.cat([src[keep], loops])
    dst = torch.cat([dst[keep], loops])
    ones = torch.ones(src.numel(), device=edge_index.device)
    deg = torch.zeros(num_nodes, device=edge_index.device).index_add_(0, dst, ones)
    inv = deg.pow(-0.5)
    inv[torch.isinf(inv)] = 0.0
    return src, dst, inv[src] * inv[dst]


def gcn_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Â as a sparse (num_nodes, num_nodes) matrix: row = target, column = source."""
    src, dst, w = gcn_edges(edge_index, num_nodes)
    return torch.sparse_coo_tensor(torch.stack([dst, src]), w, (num_nodes, num_nodes),
                                   check_invariants=False).coalesce()


def propagate(h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
    """Â · h: each node sums its neighbours' (and its own) rows, weighted by Â."""
    return torch.sparse.mm(adj, h)


def prune(mask: torch.Tensor, threshold: float, training: bool) -> torch.Tensor:
    """The mask as used in the forward pass: raw in training, |m| < threshold zeroed in eval."""
    if training or threshold <= 0:
        return mask
    return mask.masked_fill(mask.abs() < threshold, 0.0)


class GraphConv(nn.Module):
    """One (masked) GCN layer: Â X (W ⊙ M)ᵀ + b."""

    def __init__(self, in_features: int, out_features: int, masked: bool,
                 mask_init: str = "ones", prune_threshold: float = 0.0) -> None:
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=False)
        nn.init.xavier_uniform_(self.lin.weight)  # Glorot, as PyG's GCNConv
        self.mask = _new_mask(self.lin.weight.shape, mask_init) if masked else None
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.prune_threshold = prune_threshold

    def effective_weight(self) -> torch.Tensor:
        """W ⊙ M (pruned in eval mode), or W without a mask."""
        w = self.lin.weight
        if self.mask is None:
            return w
        return w * prune(self.mask, self.prune_threshold, self.training)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """Transform, propagate, add the bias."""
        return propagate(x @ self.effective_weight().t(), adj) + self.bias


class Classifier(nn.Module):
    """(W ⊙ M) h + b, with the bias stored as shape (1, out).

    `init="xavier"`: Xavier-uniform weight *and* bias, as FED-PUB's released MaskedLinear
    (an unusually large random bias). `init="linear"`: PyTorch's `nn.Linear` default
    (Kaiming-uniform weight, uniform(±1/sqrt(in)) bias), as the released code's plain GCN
    used by its FedAvg baseline. The choice changes that baseline by several points.
    """

    def __init__(self, in_features: int, out_features: int, masked: bool,
                 mask_init: str = "ones", prune_threshold: float = 0.0,
                 init: str = "xavier") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(1, out_features))
        if init == "xavier":
            nn.init.xavier_uniform_(self.weight)
            nn.init.xavier_uniform_(self.bias)
        elif init == "linear":
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            raise ValueError(f"unknown classifier init {init!r}")
        self.mask = _new_mask(self.weight.shape, mask_init) if masked else None
        self.prune_threshold = prune_threshold

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits."""
        w: torch.Tensor = self.weight
        if self.mask is not None:
            w = w * prune(self.mask, self.prune_threshold, self.training)
        return F.linear(h, w, self.bias)


def _new_mask(shape: torch.Size, init: str) -> nn.Parameter:
    mask = torch.ones(shape)
    if init == "xavier":
        nn.init.xavier_uniform_(mask)
    return nn.Parameter(mask)


class GCN(nn.Module):
    """conv1 - ReLU - dropout - ... - convK ─┬─ ReLU - dropout - classifier.

    `embed` returns the last convolution's output before its ReLU (FED-PUB's functional
    embedding is its mean over the nodes of a proxy graph).
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, *,
                 dropout: float = 0.5, masked: bool = False, mask_init: str = "ones",
                 prune_threshold: float = 0.0, classifier_init: str = "xavier") -> None:
        super().__init__()
        widths = [in_features, *hidden]
        for i in range(len(hidden)):
            self.add_module(f"conv{i + 1}", GraphConv(widths[i], widths[i + 1], masked,
                                                      mask_init, prune_threshold))
        self.num_layers = len(hidden)
        self.clsif = Classifier(widths[-1], num_classes, masked, mask_init, prune_threshold,
                                classifier_init)
        self.dropout = dropout
        self.masked = masked

    def convs(self) -> list[GraphConv]:
        """The convolution layers in order."""
        return [getattr(self, f"conv{i + 1}") for i in range(self.num_layers)]

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Output of the last convolution, before its activation: (num_nodes, hidden[-1])."""
        adj = gcn_adjacency(edge_index, x.shape[0])
        for i, conv in enumerate(self.convs()):
            if i > 0:
                x = F.dropout(F.relu(x), self.dropout, self.training)
            x = conv(x, adj)
        return x

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Logits of every node."""
        h = F.dropout(F.relu(self.embed(x, edge_index)), self.dropout, self.training)
        return self.clsif(h)


def mask_names(model: nn.Module) -> list[str]:
    """Names of the mask parameters (every name containing "mask")."""
    return [n for n, _ in model.named_parameters() if "mask" in n]

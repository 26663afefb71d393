"""Reconstruction quality: PSNR, SSIM and label recovery, on images scaled to [0, 1].

Higher PSNR/SSIM = a better reconstruction = more leakage (HyperFL's Table 3 convention).
LPIPS is not computed: it needs pretrained AlexNet/VGG weights, which cannot be fetched on an
offline machine (and torchvision does not install beside fedplat's torch wheel).

The order of a reconstructed batch is arbitrary, so reconstructions are paired with the
original images by the assignment of least total squared error (`match`, SciPy's
`linear_sum_assignment`) before scoring.

PSNR and SSIM are ours, not scikit-image's `peak_signal_noise_ratio`/`structural_similarity`,
although they give the same numbers (to float32 rounding; `tests/fedplat/privacy/test_metrics.py`
compares them on fixed images): ours score a whole batch in torch at once on the attack's
device, keep SSIM defined for images smaller than its 11x11 window (8x8 `digits`, where
scikit-image refuses), and spare the core install scikit-image and its image-I/O dependencies
(it is a test-only dependency, in the `dev` extra).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F


def to_unit(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Standardised inputs back to [0, 1] pixels (per-channel bounds), clamped."""
    view = (1, -1) + (1,) * (x.dim() - 2)
    lo, hi = low.reshape(view), high.reshape(view)
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, 10 log10(range^2 / MSE) (inf for identical images).

    scikit-image's `peak_signal_noise_ratio(a_i, b_i, data_range=...)`, image by image.
    """
    mse = (a - b).double().pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(data_range ** 2 / mse)).float()


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM (Wang et al., 2004), averaged over the map and the channels.

    Gaussian 11x11 window (sigma 1.5), K1 0.01, K2 0.03, valid windows only (no padding):
    the paper's formula, and what scikit-image's `structural_similarity(a_i, b_i,
    data_range=..., channel_axis=0, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)` computes (tested). Images smaller than the window use one
    window of their size (truncated Gaussian), which scikit-image does not offer.
    """
    a, b = a.double(), b.double()
    _n, c, h, w = a.shape
    size = min(window, h, w)
    kern = _gaussian_window(size, sigma).expand(c, 1, size, size).to(a)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kern, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / \
        ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return smap.flatten(1).mean(dim=1).float()


def match(recon: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Permutation p such that recon[p[i]] pairs with truth[i] (least total squared error)."""
    cost = torch.cdist(truth.flatten(1).double(), recon.flatten(1).double()).pow(2)
    rows, cols = linear_sum_assignment(cost.numpy())
    perm = torch.empty(len(rows), dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm


def label_recovery(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """Fraction of the true labels recovered, as multisets (order-free)."""
    got, want = Counter(predicted.tolist()), Counter(true.tolist())
    hits = sum(min(k, got[c]) for c, k in want.items())
    return hits / max(len(true), 1)


def finite_mean(values: torch.Tensor, cap: float = 100.0) -> float:
    """Mean with infinite PSNRs (exact copies) capped at `cap` dB."""
    v = values.clone()
    v[~torch.isfinite(v)] = cap
    return float(v.mean()) if len(v) else math.nan


def score(recon: torch.Tensor, recon_labels: torch.Tensor, truth: torch.Tensor,
          true_labels: torch.Tensor, low: torch.Tensor, high: torch.Tensor
          ) -> dict[str, Any]:
    """PSNR / SSIM (after pairing) and label recovery of a reconstructed batch."""
    a, b = to_unit(recon, low, high), to_unit(truth, low, high)
    perm = match(a, b)
    a = a[perm]
    p = psnr(a, b)
    s = ssim(a, b) if a.dim() == 4 else torch.full((len(a),), math.nan)
    return {"psnr": finite_mean(p), "ssim": float(s.mean()),
            "psnr_per_image": [float(v) for v in p], "ssim_per_image": [float(v) for v in s],
            "label_recovery": label_recovery(recon_labels, true_labels),
            "pairing": perm.tolist()}

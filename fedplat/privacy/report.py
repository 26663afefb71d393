"""Pictures of reconstructions: originals above, reconstructions below."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def _image(t: torch.Tensor) -> tuple[object, str | None]:
    """(H, W) or (H, W, 3) array for imshow, and the colour map."""
    if t.dim() == 1:  # a vector input: show it as a one-row strip
        return t[None].numpy(), "gray"
    if t.shape[0] == 1:
        return t[0].numpy(), "gray"
    return t.permute(1, 2, 0).numpy(), None


def save_grid(rows: Sequence[tuple[str, torch.Tensor]], path: Path, title: str = "",
              captions: Sequence[str] | None = None) -> None:
    """One row of images per (label, batch in [0, 1]); `captions` under the last row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = max(len(b) for _, b in rows)
    size = (max(1.3 * ncol + 0.8, 4.0), 1.4 * len(rows) + 0.4)
    fig, axes = plt.subplots(len(rows), ncol, figsize=size,
                             squeeze=False)
    for r, (label, batch) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(batch):
                img, cmap = _image(batch[c].detach().cpu().float())
                ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if captions is not None and r == len(rows) - 1 and c < len(captions):
                ax.set_xlabel(captions[c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""PNG plots of runs (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["round"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def _line_plot(rows: Sequence[Mapping[str, Any]], keys: Sequence[tuple[str, str]],
               ylabel: str, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for key, label in keys:
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=label)
            drawn = True
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_run(rows: Sequence[Mapping[str, Any]], run_dir: Path) -> None:
    """accuracy.png and loss.png for one run."""
    _line_plot(rows, [("test_accuracy", "test (pooled)"),
                      ("test_accuracy_mean", "test (mean over clients)"),
                      ("val_accuracy", "validation (pooled)")],
               "accuracy", run_dir / "accuracy.png", "Accuracy per round")
    _line_plot(rows, [("train_loss", "train"), ("test_loss", "test")],
               "loss", run_dir / "loss.png", "Loss per round")


#: Above this many clients the label distribution is a heat map, not one bar per client.
BARS_UP_TO = 200
#: Columns of that heat map at most (clients are binned into this many groups).
HEATMAP_COLUMNS = 500


def label_distribution_figure(counts: Sequence[Sequence[int]] | np.ndarray) -> Figure:
    """The figure of `plot_label_distribution` (the caller closes it)."""
    arr = np.asarray(counts)
    n, c = arr.shape
    if n > BARS_UP_TO:
        return _label_heatmap(arr)
    fig, ax = plt.subplots(figsize=(max(6.0, min(0.25 * n, 24.0)), 4))
    bottom = np.zeros(n)
    cmap = plt.get_cmap("tab10" if c <= 10 else "tab20")
    for k in range(c):
        ax.bar(np.arange(n), arr[:, k], bottom=bottom, color=cmap(k % cmap.N), label=str(k),
               width=0.85)
        bottom += arr[:, k]
    ax.set_xlabel("client")
    ax.set_ylabel("training samples")
    ax.set_title("Label distribution per client")
    if c <= 20:
        ax.legend(title="class", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=7)
    fig.tight_layout()
    return fig


def _label_heatmap(arr: np.ndarray) -> Figure:
    """Class shares of binned clients as one image: O(clients x classes) work, one artist.

    One bar patch per client and class costs minutes and a gigabyte at 10,000 clients. Here
    clients are sorted by their majority class (so label skew shows as blocks), cut into at
    most `HEATMAP_COLUMNS` consecutive groups of near-equal size, and each cell is the share of
    a class among the training samples of that group's clients.
    """
    n, c = arr.shape
    order = np.argsort(arr.argmax(axis=1), kind="stable")
    cols = min(n, HEATMAP_COLUMNS)
    starts = np.linspace(0, n, cols + 1).astype(np.int64)[:-1]
    binned = np.add.reduceat(arr[order].astype(np.float64), starts, axis=0)  # (cols, c)
    totals = binned.sum(axis=1, keepdims=True)
    shares = np.divide(binned, totals, out=np.zeros_like(binned), where=totals > 0)
    fig, ax = plt.subplots(figsize=(12.0, 4))
    image = ax.imshow(shares.T, aspect="auto", interpolation="nearest", origin="lower",
                      cmap="viridis", vmin=0.0, vmax=1.0, extent=(0, n, -0.5, c - 0.5))
    fig.colorbar(image, ax=ax, label="share of the group's training samples")
    ax.set_xlabel(f"clients, sorted by majority class ({n} in {cols} groups of "
                  f"~{n / cols:.0f})")
    ax.set_ylabel("class")
    ax.set_title(f"Label distribution of {n} clients")
    fig.tight_layout()
    return fig


def plot_label_distribution(counts: Sequence[Sequence[int]] | np.ndarray, path: Path) -> None:
    """The partition at a glance: samples of each class per client.

    Up to `BARS_UP_TO` clients: stacked bars, one per client. Above: a heat map of class
    shares over groups of clients, whose cost grows with clients x classes, not with patches.
    """
    fig = label_distribution_figure(counts)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_overlay(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: Path,
                 key: str = "test_accuracy") -> None:
    """One curve per run (label -> rows) of `key` over rounds."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rows in runs.items():
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, ys, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

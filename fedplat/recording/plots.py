"""PNG plots of runs (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


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


def plot_label_distribution(counts: Sequence[Sequence[int]], path: Path) -> None:
    """Stacked bars: samples of each class per client (the partition at a glance)."""
    arr = np.asarray(counts)
    n, c = arr.shape
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

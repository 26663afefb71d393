"""PNG plots of runs (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["round"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def _line_plot(rows: Sequence[Mapping[str, Any]], keys: Sequence[tuple[str, str]],
               ylabel: str, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    drawn = []
    for key, label in keys:
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=label)
            drawn.append(label)
    _round_axis(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if drawn:
        _legend_below(fig, drawn)
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


def _round_axis(ax: Axes) -> None:
    """The round axis: integer ticks only (round 2, not 1.75)."""
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_columns(labels: Sequence[str]) -> int:
    """As many legend columns (up to 3) as the longest label leaves room for side by side."""
    longest = max((len(label) for label in labels), default=0)
    return max(1, min(len(labels), 3 if longest <= 28 else 2 if longest <= 45 else 1))


def _legend_below(fig: Figure, labels: Sequence[str]) -> None:
    """The figure's legend under its axes, outside them, so that it never hides a curve."""
    fig.legend(loc="outside lower center", ncols=_legend_columns(labels), fontsize=8, frameon=False)


def _mean_band(runs: Sequence[Sequence[Mapping[str, Any]]], key: str
               ) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """Rounds, the mean of `key` over `runs` at each, and the sample std (None for one run).

    Only rounds that every run with data evaluated are kept, so a mean never mixes a different
    set of runs from one round to the next. The std is the sample standard deviation (ddof 1),
    the spread the report's seed table gives.
    """
    series = [s for s in (_series(rows, key) for rows in runs) if s[0]]
    if not series:
        return [], np.zeros(0), None
    if len(series) == 1:
        return series[0][0], np.asarray(series[0][1]), None
    common = sorted(set.intersection(*(set(xs) for xs, _ in series)))
    values = np.array([[dict(zip(xs, ys))[r] for r in common] for xs, ys in series])
    return common, values.mean(axis=0), values.std(axis=0, ddof=1)


def overlay_figure(curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
                   key: str = "test_accuracy") -> Figure:
    """The figure of `plot_overlay` (the caller closes it).

    One line per label: one run's curve, or for several runs (seeds) their mean with a shaded
    band of +- 1 sample std. Matplotlib's `fill_between` draws the band; seaborn's `lineplot`
    would compute it too, but brings pandas for this one plot. The legend sits below the axes
    (the figure grows a row per few labels), never over a curve; rounds are integer ticks.
    """
    labels = list(curves)
    rows = -(-len(labels) // _legend_columns(labels))
    fig, ax = plt.subplots(figsize=(7, 4.5 + 0.2 * max(rows - 1, 0)), layout="constrained")
    drawn = []
    for label, runs in curves.items():
        xs, mean, std = _mean_band(runs, key)
        if not xs:
            continue
        (line,) = ax.plot(xs, mean, label=label, marker="o" if len(xs) < 30 else None, ms=3)
        if std is not None:
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2,
                            linewidth=0)
        drawn.append(label)
    _round_axis(ax)
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3)
    if drawn:
        _legend_below(fig, drawn)
    return fig


def plot_overlay(curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], path: Path,
                 key: str = "test_accuracy") -> None:
    """`key` over rounds, one line per label (label -> metrics rows of each of its runs)."""
    fig = overlay_figure(curves, key)
    fig.savefig(path, dpi=120)
    plt.close(fig)

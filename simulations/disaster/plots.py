"""Plots of P2P runs.

Accuracy with the disruption marked, the network before and after, several arms side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np

from simulations.disaster.events import Timeline


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["round"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
    return (np.array([p[0] for p in pts], dtype=float),
            np.array([p[1] for p in pts], dtype=float))


def _mark_events(ax: Any, rounds: Iterable[int], label: bool = True) -> None:
    for i, t in enumerate(sorted(set(rounds))):
        ax.axvline(t, color="crimson", ls="--", lw=1, alpha=0.8,
                   label="disruption" if label and i == 0 else None)


def plot_disruption(rows: Sequence[Mapping[str, Any]], timeline: Timeline, path: Path) -> None:
    """Accuracy (mean ± std, min, giant vs outside) and connectivity over rounds."""
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [2, 1]})
    x, mean = _series(rows, "acc_mean")
    _, std = _series(rows, "acc_std")
    if len(x):
        ax.plot(x, mean, color="C0", label="mean over alive nodes")
        if len(std) == len(mean):
            ax.fill_between(x, mean - std, mean + std, color="C0", alpha=0.2, label="± std")
    for key, style, label in (("acc_min", ":", "min"), ("acc_giant", "-", "giant component"),
                              ("acc_outside_giant", "--", "outside the giant")):
        xs, ys = _series(rows, key)
        if len(xs):
            ax.plot(xs, ys, ls=style, lw=1, label=label)
    _mark_events(ax, timeline.event_rounds())
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Accuracy over rounds (dashed red: disruption)")
    xs, gf = _series(rows, "giant_frac")
    if len(xs):
        ax2.plot(xs, gf, color="C2", label="giant component / alive")
    xs, cd = _series(rows, "consensus_distance")
    ax2.set_ylabel("giant fraction")
    ax2.set_ylim(0, 1.05)
    if len(xs) and np.isfinite(cd).any():
        ax3 = ax2.twinx()
        ax3.plot(xs, cd, color="C4", lw=1, label="consensus distance")
        ax3.set_ylabel("consensus distance", color="C4")
    _mark_events(ax2, timeline.event_rounds(), label=False)
    ax2.set_xlabel("round")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _layout(timeline: Timeline, seed: int) -> dict[int, Any]:
    if timeline.topology.positions is not None:
        return {v: np.array(p) for v, p in timeline.topology.positions.items()}
    g = timeline.topology.graph
    if g.number_of_nodes() <= 300:
        return nx.kamada_kawai_layout(g) if nx.is_connected(g) else nx.spring_layout(g, seed=seed)
    return nx.spring_layout(g, seed=seed, iterations=30)


def plot_topology(timeline: Timeline, relays: Iterable[int], lost: Iterable[int], path: Path,
                  seed: int = 0) -> None:
    """The network at round 1 and at the last round, in the same layout.

    Colours: data holders blue, relays orange, dropped nodes red crosses where they were.
    """
    relay_set = set(relays)
    pos = _layout(timeline, seed)
    T = timeline.num_rounds
    before = timeline.graph_at(1)
    after = timeline.graph_at(T).subgraph([v for v in timeline.graph_at(T).nodes
                                           if v not in set(lost)])
    gone = sorted(set(timeline.topology.graph.nodes) - set(after.nodes))
    n = timeline.n
    size = max(8.0, 120.0 / max(1.0, np.sqrt(n / 10)))
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    for ax, g, title in ((axes[0], before, "round 1"), (axes[1], after, f"round {T}")):
        nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.35, width=0.7)
        holders = [v for v in g.nodes if v not in relay_set]
        rel = [v for v in g.nodes if v in relay_set]
        nx.draw_networkx_nodes(g, pos, nodelist=holders, node_color="tab:blue",
                               node_size=size, ax=ax, label="data holder")
        if rel:
            nx.draw_networkx_nodes(g, pos, nodelist=rel, node_color="tab:orange",
                                   node_size=size * 1.3, ax=ax, label="relay (no data)")
        if g is after and gone:
            for group, color, label in (([v for v in gone if v not in relay_set], "red",
                                         "dropped data holder"),
                                        ([v for v in gone if v in relay_set], "darkorange",
                                         "dropped relay")):
                if group:
                    xy = np.array([pos[v] for v in group])
                    ax.scatter(xy[:, 0], xy[:, 1], marker="x", color=color, s=size * 0.8,
                               label=label, zorder=3)
        comps = nx.number_connected_components(g) if g.number_of_nodes() else 0
        ax.set_title(f"{title}: {g.number_of_nodes()} nodes, {g.number_of_edges()} links, "
                     f"{comps} component(s)")
        ax.axis("off")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{timeline.topology.kind} network before and after the disruption")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_arms(arms: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], path: Path,
              event_round: int | None = None, key: str = "acc_mean",
              title: str = "Mean accuracy over alive nodes") -> None:
    """Side-by-side panels, one per arm (mean ± std over seeds), plus all arms overlaid."""
    names = list(arms)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.6 * (len(names) + 1), 3.8))
    for ax in axes[1:-1]:
        ax.sharey(axes[0])
    for k, name in enumerate(names):
        curves = [_series(rows, key) for rows in arms[name]]
        curves = [c for c in curves if len(c[0])]
        if not curves:
            continue
        n = min(len(c[0]) for c in curves)
        x = curves[0][0][:n]
        ys = np.stack([c[1][:n] for c in curves])
        m, s = ys.mean(axis=0), ys.std(axis=0)
        for ax in (axes[k], axes[-1]):
            ax.plot(x, m, color=f"C{k}", label=f"{name} (n={len(curves)})")
            ax.fill_between(x, m - s, m + s, color=f"C{k}", alpha=0.2)
        axes[k].set_title(name, fontsize=9)
    for ax in axes:
        if event_round is not None:
            ax.axvline(event_round, color="crimson", ls="--", lw=1)
        ax.grid(alpha=0.3)
        ax.set_xlabel("round")
    axes[0].set_ylabel(key.replace("_", " "))
    axes[-1].set_title("all arms" + (" (zoom after the disruption)" if event_round else ""),
                       fontsize=9)
    if event_round is not None:  # the effects are a few points: zoom on the rounds around it
        lo = [_series(r, key) for runs in arms.values() for r in runs]
        tail = [y[x >= event_round - 5] for x, y in lo if len(x)]
        if tail:
            ymin = min(float(t.min()) for t in tail if len(t))
            ymax = max(float(t.max()) for t in tail if len(t))
            pad = 0.1 * (ymax - ymin + 1e-9)
            axes[-1].set_xlim(event_round - 5, None)
            axes[-1].set_ylim(ymin - pad, ymax + pad)
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_arm_differences(arms: Mapping[str, Mapping[int, Sequence[Mapping[str, Any]]]],
                         reference: str, path: Path, event_round: int | None = None,
                         key: str = "acc_mean") -> None:
    """Paired differences arm - reference (same seed) over rounds, mean ± std over seeds.

    Seeds change the graph and the data, which moves every arm together; the paired
    difference removes that shared noise and shows what the disruption itself costs.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ref = arms[reference]
    for k, (name, runs) in enumerate(arms.items()):
        if name == reference:
            continue
        diffs = []
        for seed, rows in runs.items():
            if seed not in ref:
                continue
            xa, ya = _series(rows, key)
            xr, yr = _series(ref[seed], key)
            common = np.intersect1d(xa, xr)
            if len(common):
                diffs.append((common, ya[np.isin(xa, common)] - yr[np.isin(xr, common)]))
        if not diffs:
            continue
        n = min(len(d[0]) for d in diffs)
        x = diffs[0][0][:n]
        d = np.stack([dd[1][:n] for dd in diffs]) * 100
        m, s = d.mean(axis=0), d.std(axis=0)
        ax.plot(x, m, color=f"C{k}", label=f"{name} (n={len(diffs)})")
        ax.fill_between(x, m - s, m + s, color=f"C{k}", alpha=0.15)
    ax.axhline(0, color="black", lw=0.8)
    if event_round is not None:
        ax.axvline(event_round, color="crimson", ls="--", lw=1, label="disruption")
    ax.set_xlabel("round")
    ax.set_ylabel(f"{key.replace('_', ' ')} - {reference} (points)")
    ax.set_title(f"Accuracy difference to {reference}, same seed (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Plots of P2P runs: the files are written, and the curves drawn are the numbers given."""

import matplotlib.image as mpimg
import networkx as nx
import numpy as np
import pytest

from simulations.disaster import plots
from simulations.disaster.events import build_timeline
from simulations.disaster.topology import Topology


@pytest.fixture
def kept_figures(monkeypatch):
    """Keep the figures the plot functions close, to read back what they drew."""
    close = plots.plt.close
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    yield figures
    for fig in figures:
        close(fig)


def _timeline(events=(), num_rounds=4):
    g = nx.Graph()
    g.add_nodes_from(range(6))
    g.add_edges_from([(0, 1), (0, 2), (0, 3), (3, 4), (4, 5)])
    return build_timeline(Topology("test", g), list(events), num_rounds, 0)


def _rows():
    return [{"round": t, "acc_mean": 0.5 + 0.1 * t, "acc_std": 0.05, "acc_min": 0.4,
             "giant_frac": 1.0 if t < 3 else 0.5,
             "consensus_distance": None if t == 2 else 1.0 / t} for t in (1, 2, 3, 4)]


def test_series_keeps_only_numeric_points():
    x, y = plots._series([{"round": 1, "a": 0.5}, {"round": 2, "a": None}, {"round": 3},
                          {"round": 4, "a": 2}], "a")
    assert x.tolist() == [1.0, 4.0] and y.tolist() == [0.5, 2.0] and y.dtype == float


def test_disruption_plot_marks_the_event_and_draws_the_accuracy(tmp_path, kept_figures):
    timeline = _timeline([{"round": 3, "type": "node_drop", "nodes": [0]}])
    path = tmp_path / "disruption.png"
    plots.plot_disruption(_rows(), timeline, path)
    assert mpimg.imread(path).shape[:2] == (780, 840)  # 7 x 6.5 inches at 120 dpi
    ax = kept_figures[0].axes[0]
    mean = next(line for line in ax.lines if line.get_label() == "mean over alive nodes")
    assert mean.get_ydata().tolist() == pytest.approx([0.6, 0.7, 0.8, 0.9])
    marks = [line for line in ax.lines if line.get_label() == "disruption"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [3, 3]
    cons = kept_figures[0].axes[2].lines[0]  # twin axis: rounds with a consensus value only
    assert cons.get_xdata().tolist() == [1.0, 3.0, 4.0]


def test_topology_plot_shows_the_network_before_and_after(tmp_path, kept_figures):
    timeline = _timeline([{"round": 3, "type": "node_drop", "nodes": [0]}])
    path = tmp_path / "topology.png"
    plots.plot_topology(timeline, relays=[5], lost=[4], path=path)
    assert path.stat().st_size > 0 and mpimg.imread(path).shape[:2] == (660, 1320)
    before, after = kept_figures[0].axes
    assert before.get_title() == "round 1: 6 nodes, 5 links, 1 component(s)"
    # node 0 dropped by the schedule, node 4 lost at run time: 3 and 5 are alone, 1 and 2 too
    assert after.get_title() == "round 4: 4 nodes, 0 links, 4 component(s)"
    labels = [c.get_label() for c in after.collections]
    assert "dropped data holder" in labels and "relay (no data)" in labels


def test_arms_are_averaged_over_seeds(tmp_path, kept_figures):
    def runs(*finals):
        return [[{"round": 1, "acc_mean": 0.5}, {"round": 2, "acc_mean": f}] for f in finals]

    plots.plot_arms({"a0": runs(0.8, 0.9), "a1": runs(0.6, 0.7)}, tmp_path / "arms.png",
                    event_round=2)
    assert (tmp_path / "arms.png").is_file()
    overlay = kept_figures[0].axes[-1]
    means = {line.get_label(): line.get_ydata().tolist() for line in overlay.lines
             if line.get_label().startswith("a")}
    assert means == {"a0 (n=2)": pytest.approx([0.5, 0.85]),
                     "a1 (n=2)": pytest.approx([0.5, 0.65])}


def test_arm_differences_are_paired_by_seed_in_points(tmp_path, kept_figures):
    def rows(final):
        return [{"round": 1, "acc_mean": 0.5}, {"round": 2, "acc_mean": final}]

    arms = {"a0": {7: rows(0.8), 8: rows(0.9)},
            "a1": {7: rows(0.7), 8: rows(0.6), 9: rows(0.1)}}  # seed 9 has no reference
    plots.plot_arm_differences(arms, "a0", tmp_path / "diff.png", event_round=2)
    assert (tmp_path / "diff.png").is_file()
    line = next(x for x in kept_figures[0].axes[0].lines if x.get_label() == "a1 (n=2)")
    assert line.get_ydata() == pytest.approx(np.array([0.0, (-10.0 - 30.0) / 2]))

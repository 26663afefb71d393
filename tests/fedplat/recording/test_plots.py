"""Run plots: which points are drawn, and the PNG files written (size follows the data)."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from fedplat.recording import plots

PNG = b"\x89PNG\r\n\x1a\n"
ROWS = [{"round": 1, "test_accuracy": 0.5, "train_loss": 2.0, "test_loss": None},
        {"round": 2, "train_loss": 1.5},  # not evaluated this round
        {"round": 3, "test_accuracy": 0.7, "test_accuracy_mean": 0.6, "train_loss": 1}]


def _pixels(path):
    assert path.read_bytes()[:8] == PNG
    height, width = mpimg.imread(path).shape[:2]
    return width, height


def test_series_keeps_only_rounds_with_a_number():
    assert plots._series(ROWS, "test_accuracy") == ([1, 3], [0.5, 0.7])
    assert plots._series(ROWS, "train_loss") == ([1, 2, 3], [2.0, 1.5, 1.0])
    assert plots._series(ROWS, "test_loss") == ([], [])
    assert [type(v) for v in plots._series(ROWS, "train_loss")[1]] == [float] * 3  # 1 -> 1.0


def test_plot_run_writes_accuracy_and_loss(tmp_path):
    plots.plot_run(ROWS, tmp_path)
    assert _pixels(tmp_path / "accuracy.png") == (720, 480)  # 6 x 4 in at 120 dpi
    assert _pixels(tmp_path / "loss.png") == (720, 480)
    empty = tmp_path / "empty"
    empty.mkdir()
    plots.plot_run([], empty)  # nothing logged yet: still two (empty) plots
    assert _pixels(empty / "accuracy.png") == _pixels(empty / "loss.png") == (720, 480)


@pytest.mark.parametrize(("clients", "width"), [(4, 720), (40, 1200), (100, 2880)])
def test_label_distribution_widens_with_the_clients_up_to_a_cap(tmp_path, clients, width):
    counts = [[c % 3, 1, 2] for c in range(clients)]
    plots.plot_label_distribution(counts, tmp_path / "labels.png")
    assert _pixels(tmp_path / "labels.png") == (width, 480)


def test_overlay_draws_one_curve_per_label_and_grows_with_its_legend(tmp_path):
    path = tmp_path / "overlay.png"
    plots.plot_overlay({"a": [ROWS], "b": [ROWS[:1]]}, path)
    assert _pixels(path) == (840, 540)  # 7 x 4.5 in at 120 dpi: one legend row
    many = {f"a label of thirty characters {i}": [ROWS] for i in range(6)}  # 2 columns
    plots.plot_overlay(many, path)
    assert _pixels(path) == (840, 540 + 2 * 24)  # 3 legend rows: 0.2 in per extra row


def test_overlay_mean_keeps_the_rounds_every_run_evaluated():
    short = [{"round": 1, "test_accuracy": 0.1}, {"round": 3, "test_accuracy": 0.5}]
    xs, mean, std = plots._mean_band([ROWS, short, []], "test_accuracy")  # [] never evaluated
    assert xs == [1, 3]
    np.testing.assert_allclose(mean, [0.3, 0.6])
    np.testing.assert_allclose(std, np.std([[0.5, 0.7], [0.1, 0.5]], axis=0, ddof=1))
    assert plots._mean_band([ROWS], "test_accuracy")[2] is None  # one run: no band


def test_run_plots_have_integer_round_ticks_and_the_legend_below():
    rows = [{"round": r, "test_accuracy": 0.1 * r} for r in (1, 2, 3)]
    fig = plots.overlay_figure({"x": [rows]})
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        assert all(float(t).is_integer() for t in ax.get_xticks())
        lo, hi = ax.get_xlim()
        shown = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
        assert shown == ["1", "2", "3"]  # not 1.0, 1.5, 2.0, ...
        assert fig.legends[0].get_window_extent().y1 < ax.get_window_extent().y0
    finally:
        plots.plt.close(fig)


def test_label_distribution_keeps_one_bar_per_client_up_to_the_threshold():
    counts = [[1] for _ in range(plots.BARS_UP_TO)]
    fig = plots.label_distribution_figure(counts)
    try:
        assert len(fig.axes[0].patches) == plots.BARS_UP_TO and not fig.axes[0].images
    finally:
        plots.plt.close(fig)


def test_label_distribution_of_100k_clients_is_one_image(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, size=(100_000, 10))
    counts[:50_000, 3] += 500  # half the clients mostly hold class 3
    fig = plots.label_distribution_figure(counts)
    try:
        ax = fig.axes[0]
        assert len(ax.images) == 1 and len(ax.patches) == 0  # O(1) artists, not 10^6 bars
        shares = ax.images[0].get_array()
        assert shares.shape == (10, plots.HEATMAP_COLUMNS)
        assert np.allclose(shares.sum(axis=0), 1.0)
        assert shares[3].max() > 0.65 and shares[3].min() < 0.15  # the skew shows
    finally:
        plots.plt.close(fig)
    plots.plot_label_distribution(counts, tmp_path / "labels.png")
    assert _pixels(tmp_path / "labels.png") == (1440, 480)

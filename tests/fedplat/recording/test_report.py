"""fedplat-report: labels (only what differs, shortly), seed groups, the comparison figure."""

import numpy as np
import pytest

from fedplat.recording import plots
from fedplat.recording.recorder import RunRecorder
from fedplat.recording.report import MAX_VALUE_CHARS, build_report, find_runs, main
from tests.helpers import make_cfg


def _fake_run(path, *overrides, accs=(0.5, 0.6), record=None):
    """A finished run of `accs` per round; `record`: Hydra's overrides.yaml lines."""
    rec = RunRecorder(path, make_cfg(*overrides))
    for i, a in enumerate(accs, 1):
        rec.log_round({"round": i, "test_accuracy": a, "val_accuracy": a, "round_time_s": 0.1})
    rec.finish("completed")
    if record is not None:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in record))
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Three runs: alpha 0.1 with seeds 0 and 1, alpha 1.0 with seed 0 (built once)."""
    root = tmp_path_factory.mktemp("sweep")
    _fake_run(root / "0", "seed=0", "partition=dirichlet", "partition.alpha=0.1",
              accs=[0.2, 0.4])
    _fake_run(root / "1", "seed=1", "partition=dirichlet", "partition.alpha=0.1",
              accs=[0.3, 0.6])
    _fake_run(root / "2", "seed=0", "partition=dirichlet", "partition.alpha=1.0",
              accs=[0.5, 0.7])
    return root


def test_report_labels_runs_by_what_differs_and_groups_seeds(sweep, tmp_path, capsys):
    main([str(sweep), "--out", str(tmp_path / "rep")])
    text = (tmp_path / "rep" / "comparison.md").read_text()
    assert "| partition.alpha=0.1, seed=0 | fedavg | mnist1d | 2/50 | 40.00 |" in text
    assert "| partition.alpha=0.1 | 2 | 50.00 ± 14.14 |" in text
    assert (tmp_path / "rep" / "comparison_accuracy.png").stat().st_size > 1000
    assert "comparison.md" in capsys.readouterr().out


def test_seed_group_is_a_mean_line_with_a_std_band(sweep):
    _, curves = build_report(find_runs([sweep]))
    assert list(curves) == ["partition.alpha=0.1 (mean ± std, 2 seeds)",
                            "partition.alpha=1.0, seed=0"]
    fig = plots.overlay_figure(curves)
    try:
        ax = fig.axes[0]
        assert [line.get_label() for line in ax.lines] == list(curves)
        mean = ax.lines[0].get_ydata()
        np.testing.assert_allclose(mean, [0.25, 0.5])
        assert len(ax.collections) == 1  # one band: only the seed group has one
        band = ax.collections[0].get_paths()[0].vertices[:, 1]
        std = np.std([[0.2, 0.4], [0.3, 0.6]], axis=0, ddof=1)  # the seed table's std
        np.testing.assert_allclose([band.min(), band.max()],
                                   [0.25 - std[0], 0.5 + std[1]], atol=1e-12)
        fig.canvas.draw()
        ticks = ax.get_xticks()
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
        legend = fig.legends[0]
        assert [t.get_text() for t in legend.get_texts()] == list(curves)
        # below the axes, outside them: it cannot hide a curve
        assert legend.get_window_extent().y1 < ax.get_window_extent().y0
    finally:
        plots.plt.close(fig)


def test_labels_leave_out_what_fedplat_filled_in_and_what_a_choice_implies(tmp_path):
    # clients_per_node differs (2 vs auto -> 1 inline), model=auto picks cnn vs hyperfl_cnn
    _fake_run(tmp_path / "a", "dataset=digits", "simulation.backend=inline",
              "simulation.clients_per_node=2")
    _fake_run(tmp_path / "b", "dataset=digits", "strategy=hyperfl",
              "simulation.backend=inline")
    text, curves = build_report(find_runs([tmp_path]))
    assert list(curves) == ["strategy=fedavg", "strategy=hyperfl"]
    assert "| strategy=hyperfl | hyperfl | digits |" in text


def test_an_override_the_user_set_is_named_and_experiment_names_the_run(tmp_path):
    # clients_per_node set by the user: named; experiment only in Hydra's record: named, and
    # the keys it set (client.lr, num_rounds) are implied by it
    _fake_run(tmp_path / "a", "simulation.clients_per_node=2",
              record=["simulation.clients_per_node=2", "experiment=quick"])
    _fake_run(tmp_path / "b", "client.lr=0.01", "num_rounds=3", "simulation.backend=inline",
              record=["experiment=slow"])
    _, curves = build_report(find_runs([tmp_path]))
    assert list(curves) == ["experiment=quick, simulation.clients_per_node=2",
                            "experiment=slow, simulation.clients_per_node=1"]


def test_long_values_are_cut_and_identical_configs_are_told_apart(tmp_path):
    crash = "faults.crash_clients=[" + ",".join(map(str, range(20))) + "]"
    _fake_run(tmp_path / "long", "num_clients=30", crash)
    _fake_run(tmp_path / "short", "num_clients=30")
    _fake_run(tmp_path / "short2", "num_clients=30")
    text, curves = build_report(find_runs([tmp_path]))
    label = "faults.crash_clients=[0, 1, 2, 3, 4, 5, 6, 7…"
    assert len(label) == len("faults.crash_clients=") + MAX_VALUE_CHARS
    assert list(curves) == [label, "faults.crash_clients=[] (mean ± std, 2 runs)"]
    assert "| faults.crash_clients=[] (short) |" in text
    assert "| faults.crash_clients=[] (short2) |" in text


def test_an_unreadable_hydra_record_is_ignored(tmp_path):
    _fake_run(tmp_path / "a", "num_rounds=3", record=[])
    (tmp_path / "a" / ".hydra" / "overrides.yaml").write_text("[unclosed")
    _fake_run(tmp_path / "b", "num_rounds=4")
    _, curves = build_report(find_runs([tmp_path]))
    assert list(curves) == ["num_rounds=3", "num_rounds=4"]


def test_report_bad_paths_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "missing")])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "no run directories" in capsys.readouterr().err

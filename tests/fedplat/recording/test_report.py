import pytest

from fedplat.recording.recorder import RunRecorder
from fedplat.recording.report import main
from tests.helpers import make_cfg


def _fake_run(path, seed, alpha, accs):
    cfg = make_cfg(f"seed={seed}", "partition=dirichlet", f"partition.alpha={alpha}")
    rec = RunRecorder(path, cfg)
    for i, a in enumerate(accs, 1):
        rec.log_round({"round": i, "test_accuracy": a, "val_accuracy": a, "round_time_s": 0.1})
    rec.finish("completed")


def test_report_labels_runs_by_what_differs_and_groups_seeds(tmp_path, capsys):
    _fake_run(tmp_path / "sweep" / "0", 0, 0.1, [0.2, 0.4])
    _fake_run(tmp_path / "sweep" / "1", 1, 0.1, [0.3, 0.6])
    _fake_run(tmp_path / "sweep" / "2", 0, 1.0, [0.5, 0.7])
    main([str(tmp_path / "sweep"), "--out", str(tmp_path / "rep")])
    text = (tmp_path / "rep" / "comparison.md").read_text()
    assert "| partition.alpha=0.1, seed=0 | fedavg | mnist1d | 2/50 | 40.00 |" in text
    assert "| partition.alpha=0.1 | 2 | 50.00 ± 14.14 |" in text
    assert (tmp_path / "rep" / "comparison_accuracy.png").stat().st_size > 1000
    assert "comparison.md" in capsys.readouterr().out


def test_report_bad_paths_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "missing")])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "no run directories" in capsys.readouterr().err

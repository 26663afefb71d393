"""The FedHyper report script on hand-made run directories."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import fedhyper_report as rep


def _run(root, name, strategy, lr, g, accs, seed=0, every=1):
    d = root / name
    d.mkdir(parents=True)
    if strategy == "fedavg":
        s = f"name: fedavg\n  server_lr: {g}"
    else:
        s = (f"name: fedhyper\n  variant: G+CL\n  eta_g0: {g}\n  hyper_lr: 1.0\n"
             "  cl:\n    hyper_lr: 1.0")
    (d / "config.yaml").write_text(f"seed: {seed}\nclient:\n  lr: {lr}\nstrategy:\n  {s}\n")
    rows = [{"round": i * every, "test_accuracy": a} for i, a in enumerate(accs, start=1)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_grid_tables_and_heat_maps(tmp_path):
    runs = tmp_path / "runs"
    for lr in (0.01, 0.1):
        for g in (1.0, 2.0):
            base = 0.5 if lr == 0.1 else 0.3
            _run(runs, f"avg_{lr}_{g}", "fedavg", lr, g, [0.1, base])
            _run(runs, f"hyp_{lr}_{g}", "fedhyper", lr, g, [0.1, base + (0.1 if g == 2.0 else 0)])
    md = rep.report_grid(rep.find_runs([runs]), tmp_path / "out", 1, "toy")
    assert "| 0.01 | 30.0 (+0.0) | 40.0 (+10.0) |" in md
    assert "| FedAvg | 40.0 | 30.0 | 50.0 | 20.0 |" in md
    assert "| FedHyper-G+CL | 45.0 | 30.0 | 60.0 | 30.0 |" in md and "| 4/4 | 4/4 |" in md
    assert (tmp_path / "out" / "toy_heatmap_fedhyper_g_cl.png").stat().st_size > 0
    # last-k averages the last k evaluations
    md2 = rep.report_grid(rep.find_runs([runs]), tmp_path / "out", 2, "toy2")
    assert "| FedAvg | 25.0 | 20.0 | 30.0 |" in md2


def test_rounds_to_target_and_speed_up(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "avg", "fedavg", 0.01, 1.0, [0.2, 0.4, 0.5, 0.6], every=5)
    _run(runs, "hyp0", "fedhyper", 0.01, 1.0, [0.5, 0.6, 0.6, 0.6], every=5, seed=0)
    _run(runs, "hyp1", "fedhyper", 0.01, 1.0, [0.2, 0.6, 0.6, 0.6], every=5, seed=1)
    found = rep.find_runs([runs])
    assert [r.rounds_to(0.5) for r in found] == [15, 5, 10]
    assert found[0].rounds_to(0.9) is None
    md = rep.report_speed(found, tmp_path / "out", [0.5, 0.9], "toy")
    assert "| FedAvg | 1 | 60.0 | 60.0 | 15 | not reached |" in md
    assert "| FedHyper-G+CL | 2 | 60.0 | 60.0 | 7.5 (2.00x) | not reached |" in md


def test_no_runs_is_an_error(tmp_path):
    with pytest.raises(SystemExit):
        rep.main(["grid", str(tmp_path), "--out", str(tmp_path / "o")])


def test_central_accuracy_is_read_when_the_run_has_it(tmp_path):
    _run(tmp_path / "runs", "avg", "fedavg", 0.01, 1.0, [0.2, 0.4])
    d = tmp_path / "runs" / "avg"
    rows = [{"round": 1, "central_accuracy": 0.3}, {"round": 2, "central_accuracy": 0.7,
                                                    "test_accuracy": 0.4}]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = rep.find_runs([tmp_path / "runs"])[0]
    assert run.metric == "central_accuracy"
    assert run.accuracy() == 0.7 and run.rounds_to(0.5) == 2

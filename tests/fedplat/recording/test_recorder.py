import json
import math

import pytest

from fedplat.recording.recorder import RunRecorder, clean, read_rows, summarise
from tests.helpers import make_cfg


def test_summarise_final_best_by_validation_and_best_test():
    rows = [
        {"round": 1, "test_accuracy": 0.5, "val_accuracy": 0.6},
        {"round": 2, "train_loss": 1.0},  # not evaluated
        {"round": 3, "test_accuracy": 0.9, "val_accuracy": 0.55},
        {"round": 4, "test_accuracy": 0.7, "val_accuracy": 0.6},
    ]
    s = summarise(rows)
    assert s["final"]["round"] == 4 and s["final"]["accuracy"] == 0.7
    assert s["best"] == {**s["best"], "round": 1, "accuracy": 0.5, "criterion": "val_accuracy"}
    assert s["best_test"] == {"round": 3, "accuracy": 0.9}
    no_val = summarise([{"round": 1, "test_accuracy": 0.2}, {"round": 2, "test_accuracy": 0.4}])
    assert no_val["best"]["round"] == 2 and no_val["best"]["criterion"] == "test_accuracy"


def test_recorder_writes_files_and_survives_nan_and_torn_lines(tmp_path):
    cfg = make_cfg("num_rounds=2")
    rec = RunRecorder(tmp_path, cfg)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "running"
    rec.log_clients([[1, 2], [3, 4]], {"num_train": [3, 7]})
    rec.log_round({"round": 1, "test_accuracy": 0.5, "test_loss": math.nan, "round_time_s": 1.0})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rounds_completed"] == 1 and summary["final"]["accuracy"] == 0.5
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["test_loss"] is None
    out = rec.finish("completed")
    assert out["status"] == "completed"
    for name in ("config.yaml", "accuracy.png", "loss.png", "label_distribution.png",
                 "clients.json"):
        assert (tmp_path / name).is_file(), name
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"round": 2, "test_acc')  # a run killed mid-write
    assert [r["round"] for r in read_rows(tmp_path)] == [1]


def test_summarise_best_mean_picks_the_round_of_best_mean_validation():
    rows = [
        {"round": 1, "test_accuracy": 0.5, "test_accuracy_mean": 0.4, "val_accuracy": 0.9,
         "val_accuracy_mean": 0.5},
        {"round": 2, "test_accuracy": 0.6, "test_accuracy_mean": 0.8, "val_accuracy": 0.7,
         "val_accuracy_mean": 0.7},
        {"round": 3, "test_accuracy": 0.7, "test_accuracy_mean": 0.6, "val_accuracy": 0.8,
         "val_accuracy_mean": 0.7},  # tie: the earliest round wins
    ]
    s = summarise(rows)
    assert s["best"]["round"] == 1  # pooled validation
    assert s["best_mean"]["round"] == 2 and s["best_mean"]["accuracy_mean"] == 0.8
    assert s["best_mean"]["criterion"] == "val_accuracy_mean"
    assert "best_mean" not in summarise([{"round": 1, "test_accuracy": 0.2}])


def test_without_timing_drops_only_timing_keys():
    from fedplat.recording.recorder import without_timing

    rows = [{"round": 1, "test_accuracy": 0.5, "wall_time_s": 3.0, "round_time_s": 1.0,
             "exchange_s_train": 0.2, "pack_s_evaluate": 0.01, "node_compute_s_train": 0.1,
             "bytes_down_train": 10}]
    assert without_timing(rows) == [{"round": 1, "test_accuracy": 0.5, "bytes_down_train": 10}]


def test_summary_reports_final_best_and_per_client_best_f1():
    rows = [
        {"round": 1, "test_accuracy": 0.5, "test_f1": 0.4, "test_f1_mean": 0.45,
         "per_client": {"0": {"test_f1": 0.2}, "1": {"test_f1": 0.7}}},
        {"round": 2, "test_accuracy": 0.6, "test_f1": 0.6, "test_f1_mean": 0.5,
         "per_client": {"0": {"test_f1": 0.6}, "1": {"test_f1": 0.4}}},
    ]
    f1 = summarise(rows)["f1"]
    assert f1["final"] == {"round": 2, "f1_mean": 0.5, "f1_pooled": 0.6}
    assert f1["best"]["round"] == 2
    assert f1["best_per_client"] == {"f1_mean": pytest.approx(0.65), "clients": 2}


def test_the_devices_entry_counts_distinct_clients_and_survives_a_resume(tmp_path):
    cfg = make_cfg("num_rounds=3", "num_clients=4", "simulation.ray_num_cpus=2",
                   "simulation.num_gpus=0.25")
    rec = RunRecorder(tmp_path, cfg)
    assert rec.summary()["devices"]["clients"] == {}
    rec.log_round({"round": 1, "devices": {"cuda:0": 2}, "peak_mem_bytes": 3 * 2**30,
                   "gpu_name": "NVIDIA H200", "per_client": {
                       "0": {"device": "cuda:0"}, "1": {"device": "cuda:0"}, "2": {}}})
    rec.log_round({"round": 2, "devices": {"cuda:0": 2}, "peak_mem_bytes": 2**30,
                   "per_client": {"1": {"device": "cuda:0"}, "3": {"device": "cuda:0"}}})
    devices = json.loads((tmp_path / "summary.json").read_text())["devices"]
    assert devices["clients"] == {"cuda:0": 3}  # clients 0, 1, 3; client 2 never replied
    assert devices["peak_mem_bytes"] == 3 * 2**30 and devices["gpu_name"] == "NVIDIA H200"
    assert (devices["backend"], devices["num_gpus_each"], devices["num_cpus_each"]) == \
        ("ray", 0.25, 1.0)
    rec.finish("completed")
    again = RunRecorder(tmp_path, cfg, resume_round=2)  # a resumed run rebuilds the tally
    assert again.summary()["devices"] == devices


def test_the_devices_line_says_where_how_shared_and_how_much_memory():
    from fedplat.recording.recorder import devices_line

    cpu = {"clients": {"cpu": 10}, "backend": "ray", "num_cpus_each": 1.0,
           "num_gpus_each": 0.0, "at_once": 2, "peak_mem_bytes": None, "gpu_name": None}
    assert devices_line(cpu) == "on cpu (1 CPU each, 2 at once)"
    gpu = {**cpu, "clients": {"cuda:0": 10}, "num_gpus_each": 0.25, "at_once": 4,
           "peak_mem_bytes": int(1.2 * 2**30), "gpu_name": "NVIDIA H200"}
    assert devices_line(gpu) == "on cuda:0 [NVIDIA H200] (0.25 GPU each, 4 at once), peak 1.2 GiB"
    small = {**gpu, "peak_mem_bytes": 5 * 2**20, "gpu_name": None}
    assert devices_line(small) == "on cuda:0 (0.25 GPU each, 4 at once), peak 5.0 MiB"
    mixed = {**gpu, "clients": {"cpu": 1, "cuda:0": 6}, "gpu_name": None}
    assert devices_line(mixed).startswith("on cpu (1 client), cuda:0 (6 clients) (0.25 GPU")
    assert devices_line({**cpu, "clients": {}}) is None and devices_line(None) is None


def test_the_summary_counts_every_kind_of_fault_and_the_console_says_them():
    from fedplat.recording.recorder import fault_counts, faults_line

    rows = [{"failures_train": 2, "rejected_train": 1, "late_train": 1, "dropped_train": 2,
             "failures_evaluate": 1, "dropped_evaluate": 2},
            {"failures_train": 0, "late_train": 2, "late_evaluate": 1}]
    counts = fault_counts(rows, 10)
    assert counts == {"failures": 3, "rejected": 1, "late": 4, "dropped": 4}
    assert faults_line(counts) == "3 client failures (1 rejected), 4 late, 4 dropped"
    lost = fault_counts([{"failures_train": 0, "lost_workers": 0, "dropped_total": 3},
                         {"failures_train": 1, "lost_workers": 1, "dropped_total": 15}], 20)
    assert lost["workers_lost"] == 1 and (lost["nodes_lost"], lost["nodes"]) == (15, 20)
    assert faults_line(lost) == ("1 client failures (0 rejected), 0 late, 0 dropped; "
                                 "1 worker lost, 15 of 20 nodes lost")
    assert faults_line(None, 2) == "2 client failures"  # a summary written before `faults`


def test_a_resumed_run_continues_its_wall_time_and_an_interrupt_is_recorded(tmp_path):
    cfg = make_cfg("num_rounds=3")
    rec = RunRecorder(tmp_path, cfg)
    rec.log_round({"round": 1, "wall_time_s": 100.0})
    again = RunRecorder(tmp_path, cfg, resume_round=1)  # as after a kill at round 1
    assert 100.0 <= again.wall_time_s < 150.0 and again.summary()["wall_time_s"] >= 100.0
    again.log_round({"round": 2, "wall_time_s": again.wall_time_s})
    summary = again.interrupt("SIGINT")
    assert summary["status"] == "interrupted"
    assert summary["interrupted"] == {"signal": "SIGINT", "last_round": 2,
                                      "checkpoint_round": None}
    assert summary["reason"] == "stopped by SIGINT after round 2; no checkpoint to resume from"
    written = (tmp_path / "summary.json").read_bytes(), (tmp_path / "metrics.jsonl").read_bytes()
    again.log_round({"round": 3})  # a server thread still running changes nothing now
    assert again.finish("failed", "late")["status"] == "interrupted"
    assert ((tmp_path / "summary.json").read_bytes(),
            (tmp_path / "metrics.jsonl").read_bytes()) == written
    assert json.loads(written[0])["status"] == "interrupted"


def _random_rows(n, seed):
    import random

    rnd = random.Random(seed)
    choice = [0.25, 0.5, 0.5, 0.75, math.nan]  # ties and NaN, as max() meets them
    rows = []
    for r in range(1, n + 1):
        row = {"round": r, "train_loss": rnd.random()}
        if rnd.random() < 0.8:
            row |= {"test_accuracy": rnd.choice(choice), "test_loss": rnd.random()}
            if rnd.random() < 0.7:
                row["val_accuracy"] = rnd.choice(choice)
            if rnd.random() < 0.7:
                row |= {"val_accuracy_mean": rnd.choice(choice),
                        "test_accuracy_mean": rnd.random()}
            if rnd.random() < 0.8:
                row |= {"test_f1_mean": rnd.choice(choice), "test_f1": rnd.random()}
                row["per_client"] = {str(c): {"test_f1": rnd.choice(choice)}
                                     for c in rnd.sample(range(12), 5)}
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_the_running_summary_equals_a_full_rescan_after_every_round(seed):
    from fedplat.recording.recorder import RunningSummary

    rows = _random_rows(40, seed)
    running = RunningSummary()
    for i, row in enumerate(rows, 1):
        running.add(row)
        assert json.dumps(running.summary()) == json.dumps(summarise(rows[:i]))  # NaN too


def test_a_resumed_recorders_summary_equals_a_full_rescan(tmp_path):
    """What the old code computed: `summarise` over the kept rows (read back) and the new ones."""
    cfg = make_cfg("num_rounds=12", "num_clients=12")
    rows = _random_rows(12, 9)
    rec = RunRecorder(tmp_path, cfg)
    for row in rows[:8]:
        rec.log_round(dict(row))
    rec.finish("failed", "killed")
    again = RunRecorder(tmp_path, cfg, resume_round=5)  # the checkpoint of round 5
    for row in rows[5:]:
        again.log_round(dict(row))
    assert [r["round"] for r in again.rows] == list(range(1, 13))
    full = summarise(again.rows)
    assert full["f1"]["best_per_client"]["clients"] > 5
    summary = again.summary()
    saved = json.loads((tmp_path / "summary.json").read_text())
    for key in ("final", "best", "best_test", "best_mean", "f1"):
        assert json.dumps(summary.get(key)) == json.dumps(full.get(key))
        assert saved.get(key) == json.loads(json.dumps(clean(full.get(key))))

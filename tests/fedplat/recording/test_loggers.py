"""Experiment trackers: what a tiny run logged, read back with each library's own reader."""

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from fedplat.cli import main
from fedplat.errors import UserError
from fedplat.recording import loggers
from fedplat.recording.loggers import flat_config, per_client, scalars
from fedplat.recording.recorder import RunRecorder, read_rows
from tests.helpers import make_cfg, run_inline

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TINY = ("num_clients=3", "num_rounds=2", "client.local_epochs=1")


#: W&B is tested where it is installed (it is in the `track` extra, so in CI).
HAS_WANDB = importlib.util.find_spec("wandb") is not None
TRACKERS = "logger=[tensorboard,mlflow,wandb]" if HAS_WANDB else "logger=[tensorboard,mlflow]"


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One tiny inline run logged to every tracker at once."""
    run_dir = tmp_path_factory.mktemp("tracked")
    summary, rows = run_inline(run_dir, *TINY, TRACKERS)
    return run_dir, summary, rows


def test_a_tracked_run_has_the_numbers_of_an_untracked_one(tracked_run, tmp_path):
    from fedplat.recording.recorder import without_timing

    _, _, rows = tracked_run
    _, plain = run_inline(tmp_path, *TINY)
    assert without_timing(plain) == without_timing(rows)


def _events(path):
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0,
                                                      "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _mlflow(run_dir):
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("fedplat")
    runs = client.search_runs([experiment.experiment_id])
    return client, runs


def _png_size(path):
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


def test_the_rows_scalars_are_its_finite_numbers_and_the_per_client_metrics_a_distribution():
    row = {"round": 3, "test_accuracy": 0.5, "bytes": 7, "ok": True, "loss": float("nan"),
           "devices": {"cpu": 2}, "test_loss": None,
           "per_client": {"0": {"test_accuracy": 0.25, "device": "cpu", "num-examples": 4},
                          "1": {"test_accuracy": 0.75, "test_loss": float("inf")}}}
    assert scalars(row) == {"test_accuracy": 0.5, "bytes": 7.0}
    assert per_client(row) == {"test_accuracy": [0.25, 0.75]}
    flat = flat_config(make_cfg("num_rounds=2", "faults.crash_clients=[1,2]"))
    assert flat["num_rounds"] == 2 and flat["faults.crash_clients"] == "[1, 2]"
    assert flat["strategy.name"] == "fedavg" and not any(k.startswith("logger") for k in flat)


def test_tensorboard_holds_every_rounds_metrics_histograms_config_and_plots(tracked_run):
    run_dir, _, rows = tracked_run
    assert rows == read_rows(run_dir) and len(rows) == 2
    acc = _events(run_dir / "tensorboard")
    tags = acc.Tags()
    expected = set().union(*(scalars(r) for r in rows))
    assert set(tags["scalars"]) == expected and "test_accuracy" in expected
    for key in expected:
        logged = {e.step: e.value for e in acc.Scalars(key)}
        want = {r["round"]: scalars(r)[key] for r in rows if key in scalars(r)}
        assert logged.keys() == want.keys(), key
        for step, value in want.items():  # TensorBoard stores scalars as float32
            assert logged[step] == pytest.approx(value, rel=1e-6, abs=1e-30), (key, step)
    hist = acc.Histograms("per_client/test_accuracy")
    assert [h.step for h in hist] == [1, 2]
    for h, row in zip(hist, rows):
        values = [c["test_accuracy"] for c in row["per_client"].values()]
        assert h.histogram_value.num == 3
        assert h.histogram_value.min == pytest.approx(min(values))
        assert h.histogram_value.max == pytest.approx(max(values))
    assert "per_client/test_loss" in tags["histograms"]
    config = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "num_rounds: 2" in config and "num_clients: 3" in config
    images = {tag: acc.Images(tag)[-1] for tag in tags["images"]}
    assert {"plots/accuracy", "plots/loss", "plots/label_distribution"} <= images.keys()
    png = images["plots/accuracy"]
    assert png.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and png.step == 2
    assert (png.width, png.height) == _png_size(run_dir / "accuracy.png")
    hparams = acc.PluginTagToContent("hparams")
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["num_rounds"].number_value == 2
    assert start.hparams["strategy.name"].string_value == "fedavg"
    assert start.hparams["fedplat.status"].string_value == "completed"


def test_mlflow_file_store_holds_metric_history_params_and_artifacts(tracked_run):
    run_dir, summary, rows = tracked_run
    client, runs = _mlflow(run_dir)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.tags["fedplat.status"] == "completed"
    for key in set().union(*(scalars(r) for r in rows)):
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert history == {r["round"]: scalars(r)[key] for r in rows if key in scalars(r)}, key
    spread = client.get_metric_history(run.info.run_id, "per_client/test_accuracy/max")
    assert [m.value for m in spread] == [max(c["test_accuracy"] for c in r["per_client"].values())
                                         for r in rows]
    cfg = make_cfg("simulation.backend=inline", *TINY, TRACKERS)
    assert run.data.params["num_rounds"] == "2" and run.data.params["seed"] == "0"
    assert run.data.params["strategy.name"] == flat_config(cfg)["strategy.name"]
    assert len(run.data.params) == len(flat_config(cfg))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/accuracy.png", "plots/loss.png"} <= plots
    local = client.download_artifacts(run.info.run_id, "summary.json", str(run_dir / "dl"))
    assert json.loads(Path(local).read_text())["final"] == summary["final"]


def test_trackers_are_closed_as_interrupted_or_failed_and_a_resume_is_a_new_mlflow_run(tmp_path):
    cfg = make_cfg("num_rounds=4", "logger=[tensorboard,mlflow]")
    rec = RunRecorder(tmp_path, cfg)
    rec.log_round({"round": 1, "test_accuracy": 0.25})
    rec.log_round({"round": 2, "test_accuracy": 0.5})
    rec.interrupt("SIGINT", draw=False)
    again = RunRecorder(tmp_path, cfg, resume_round=1)  # continues from round 1's checkpoint
    again.log_round({"round": 2, "test_accuracy": 0.75})
    again.finish("failed", "RuntimeError: boom", draw=False)
    client, runs = _mlflow(tmp_path)
    by_status = {r.info.status: r for r in runs}
    assert by_status.keys() == {"KILLED", "FAILED"}
    history = client.get_metric_history(by_status["KILLED"].info.run_id, "test_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    resumed = by_status["FAILED"]
    assert resumed.data.tags["fedplat.resumed_after_round"] == "1"
    history = client.get_metric_history(resumed.info.run_id, "test_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.75)]
    # TensorBoard: the resumed writer purged round 2 of the first attempt
    scalars_ = [(e.step, e.value) for e in _events(tmp_path / "tensorboard").Scalars(
        "test_accuracy")]
    assert scalars_ == [(1, 0.25), (2, 0.75)]
    assert not again.trackers.open and not rec.trackers.open


def test_a_tracker_that_fails_mid_run_is_dropped_and_the_run_goes_on(tmp_path, caplog):
    rec = RunRecorder(tmp_path, make_cfg("num_rounds=2", "logger=mlflow"))
    rec.trackers.open["mlflow"].run_id = "no-such-run"  # the store lost the run
    rec.log_round({"round": 1, "test_accuracy": 0.5})
    assert "logger=mlflow failed to log round 1 and is switched off" in caplog.text
    assert not rec.trackers.open
    assert rec.finish("completed", draw=False)["final"]["accuracy"] == 0.5


def test_a_missing_tracker_package_is_one_line_exit_2_before_the_run(tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.setitem(loggers.BACKENDS, "mlflow", loggers.Backend(
        "fedplat_no_such_tracker", "mlflow-skinny", loggers.MlflowTracker))
    with pytest.raises(SystemExit) as info:
        main(["logger=[tensorboard,mlflow]", f"output_dir={tmp_path / 'run'}", *TINY])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("fedplat: error: logger=mlflow needs the mlflow-skinny package, which is not "
                   "installed: pip install mlflow-skinny (or pip install 'fedplat[track]')\n")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_tracker_that_cannot_start_is_a_user_error_and_the_run_is_closed(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = make_cfg("logger=tensorboard", f"logger.tensorboard.dir={blocker / 'tb'}")
    with pytest.raises(UserError, match="logger=tensorboard could not start"):
        RunRecorder(tmp_path / "run", cfg)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def _wandb_records(run_dir):
    """The offline run's records, read by W&B's own reader (`wandb leet inspect --json`)."""
    [run_file] = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", str(run_file),
                          "--json"], capture_output=True, text=True, timeout=120, check=True)
    return run_file, [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(not HAS_WANDB, reason="wandb is not installed (pip install wandb)")
def test_wandb_offline_files_hold_every_rounds_metrics_config_histograms_and_plots(tracked_run):
    run_dir, _, rows = tracked_run
    run_file, records = _wandb_records(run_dir)
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    assert [h["_step"] for h in history] == [r["round"] for r in rows]
    for item, row in zip(history, rows):
        assert {k: item[k] for k in scalars(row)} == scalars(row)
        counts = item["per_client/test_accuracy.values"]
        assert item["per_client/test_accuracy._type"] == "histogram" and sum(counts) == 3
    assert history[-1]["plots/accuracy._type"] == "image-file"
    assert (history[-1]["plots/accuracy.width"], history[-1]["plots/accuracy.height"]) == \
        _png_size(run_dir / "accuracy.png")
    [run] = [r["run"] for r in records if r["type"] == "run"]
    config = run["config"]["update"]
    assert run["project"] == "fedplat" and run["display_name"] == run_dir.name
    assert config["num_rounds"] == 2 and config["strategy.name"] == "fedavg"
    saved = {f["path"] for r in records if r["type"] == "files" for f in r["files"]["files"]}
    assert {"summary.json", "config.yaml"} <= saved
    assert (run_file.parent / "files" / "summary.json").read_bytes() == \
        (run_dir / "summary.json").read_bytes()
    [end] = [r["exit"] for r in records if r["type"] == "exit"]
    assert end["exit_code"] == 0

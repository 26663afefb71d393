"""The prepared GPU check runs end to end without CUDA (tiny, on the CPU), so it cannot rot."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="the full check runs on a CUDA machine")
def test_the_tiny_check_runs_every_step_and_writes_json_and_markdown(tmp_path: Path) -> None:
    gpu_check = _script()
    code = gpu_check.main(["--out", str(tmp_path), "--backend", "inline"])
    assert code == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["tiny"] is True and report["environment"]["gpu"] is None
    steps = report["steps"]
    (share,) = steps["shares"]["runs"]
    assert share["devices"] == {"cpu": 4} and share["peak_mem_gib_per_client"] is None
    assert share["client_rounds_per_s"] > 0
    assert share["clients_line"] == "on cpu (1 CPU each, 1 at once)"
    assert steps["parity"]["within_tolerance"] is True
    assert steps["parity"]["worst_loss_rel"] <= gpu_check.TOLERANCE["loss_rel"]
    for key, unit in (("batched", "median_round_s"), ("hyperfl", "round_s")):
        for device in ("gpu", "cpu"):
            assert steps[key][device]["devices"] == {"cpu": steps[key][device]["devices"]["cpu"]}
            assert steps[key][device][unit] > 0
        assert math.isfinite(steps[key]["cpu_over_gpu"])
    assert steps["batched"]["gpu"]["devices"] == {"cpu": 40}
    text = (tmp_path / "gpu_check.md").read_text()
    assert "GPU: none (no CUDA: every column ran on the CPU)" in text
    for title in ("## 1. GPU shares", "## 2. GPU against CPU", "## 3. Grouped + batched",
                  "## 4. One HyperFL round"):
        assert title in text


@pytest.mark.slow
@pytest.mark.ray
def test_the_tiny_share_step_runs_on_ray(tmp_path: Path) -> None:
    gpu_check = _script()
    assert gpu_check.main(["--out", str(tmp_path), "--steps", "shares", "parity"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    (share,) = report["steps"]["shares"]["runs"]
    assert share["backend"] == "ray" and share["devices"] == {"cpu": 4}
    assert report["steps"]["parity"]["within_tolerance"] is True

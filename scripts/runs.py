"""Shared by the reproduction scripts: run one fedplat experiment unless it already finished."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_once(run_dir: Path, overrides: list[str], log: Path) -> Path:
    """`fedplat <overrides>` into `run_dir`, output to `log`; skipped if already completed.

    Reruns of a script resume the grid where it stopped: a directory whose summary says
    `completed` is kept as it is; an unfinished one is run again from the start
    (`overwrite=true`: fedplat otherwise refuses a directory holding a run).
    """
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "completed":
        return run_dir
    cmd = [sys.executable, "-m", "fedplat.cli", *overrides, f"hydra.run.dir={run_dir}",
           "overwrite=true"]
    run_dir.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return run_dir

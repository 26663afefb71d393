"""Shared by the reproduction scripts: run one fedplat experiment unless it already finished."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_once(run_dir: Path, overrides: list[str], log: Path, checkpoint_every: int = 0) -> Path:
    """`fedplat <overrides>` into `run_dir`, output to `log`; skipped if already completed.

    Reruns of a script resume the grid where it stopped: a directory whose summary says
    `completed` is kept as it is. With `checkpoint_every > 0` the run saves a checkpoint every
    that many rounds, and an unfinished run that has one is continued from it
    (`fedplat resume=DIR`, its log appended to), so runs longer than a working session survive
    its end. An unfinished run without a checkpoint is run again from the start
    (`overwrite=true`: fedplat otherwise refuses a directory holding a run).
    """
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "completed":
        return run_dir
    mode = "w"
    if checkpoint_every > 0 and (run_dir / "checkpoint" / "latest.json").is_file():
        cmd = [sys.executable, "-m", "fedplat.cli", f"resume={run_dir}"]
        mode = "a"
    else:
        cmd = [sys.executable, "-m", "fedplat.cli", *overrides, f"hydra.run.dir={run_dir}",
               "overwrite=true"]
        if checkpoint_every > 0:
            cmd.append(f"checkpoint_every={checkpoint_every}")
    run_dir.mkdir(parents=True, exist_ok=True)
    with log.open(mode) as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return run_dir

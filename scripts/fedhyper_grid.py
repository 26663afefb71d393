"""FedHyper robustness grid that survives the end of a session: one resumable run per cell.

5 initial local rates x 5 initial global rates x methods x seeds, each cell its own run
directory `OUT/<method>/seed<S>/local<l>_global<g>`, run one after another with
`checkpoint_every`. Started again, the script skips finished cells, resumes interrupted ones
from their last checkpoint (`resume=DIR`) and starts the rest, so a grid of many hours can be
run across sessions with the same command. `--dry-run` prints what it would do.

Methods (the global rate is the heat map's column):
  fedavg    FedAvg, plain mean, strategy.server_lr = global rate
  g_cl      FedHyper-G+CL (ours: the paper's heat maps show G with CL; the code defines no
            G+CL variant), strategy.eta_g0 = global rate
  full      FedHyper-FULL (= GM + CL, the released code's combination), eta_g0 = global rate;
            GM's clip keeps eta_g >= 0.8, so for a global rate below it the lower bound
            strategy.a_clip_gm_lo is widened to (rate - 1) to admit the initial rate

  python scripts/fedhyper_grid.py fedhyper_fmnist_code multirun/fedhyper_code_fmnist
  python scripts/fedhyper_grid.py fedhyper_shakespeare_code multirun/fedhyper_code_shakespeare
      --methods fedavg,full --seeds 0 -- num_rounds=20     (one command line)
  python scripts/fedhyper_report.py grid multirun/fedhyper_code_fmnist --out docs/fedhyper
      --name fmnist_code                                   (one command line)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LOCAL = (0.001, 0.005, 0.01, 0.05, 0.1)
GLOBAL = (0.5, 0.75, 1.0, 1.5, 2.0)
METHODS = ("fedavg", "g_cl", "full")
#: GM's released lower clip of a (eta_g = 1 + a >= 0.8).
GM_LO = -0.2


def method_overrides(method: str, global_rate: float) -> list[str]:
    """The overrides that make `method` with initial global rate `global_rate`."""
    if method == "fedavg":
        return ["strategy=fedavg", "strategy.weighted=false", f"strategy.server_lr={global_rate}"]
    if method == "g_cl":
        return ["strategy=fedhyper", "strategy.variant=G+CL", f"strategy.eta_g0={global_rate}"]
    if method == "full":
        out = ["strategy=fedhyper", "strategy.variant=FULL", f"strategy.eta_g0={global_rate}"]
        if global_rate - 1.0 < GM_LO:
            out.append(f"strategy.a_clip_gm_lo={global_rate - 1.0:g}")
        return out
    raise SystemExit(f"unknown method '{method}' (choose from: {', '.join(METHODS)})")


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    method: str
    seed: int
    local: float
    global_rate: float

    def directory(self, out: Path) -> Path:
        """Where this cell's run lives."""
        return out / self.method / f"seed{self.seed}" / \
            f"local{self.local:g}_global{self.global_rate:g}"


def last_round(run_dir: Path) -> int:
    """The last round recorded in the run's metrics.jsonl (0 when none)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    last = 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("round"), int):
            last = max(last, row["round"])
    return last


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run saved a checkpoint to resume from."""
    from fedplat.recording import checkpoint  # the project's own rule for "latest"
    return checkpoint.latest(run_dir) is not None


def planned_rounds(run_dir: Path) -> int | None:
    """num_rounds of the run's saved config (None when it has none)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf
    cfg = OmegaConf.load(path)
    value = cfg.get("num_rounds")
    return int(value) if isinstance(value, int) else None


def action(run_dir: Path) -> str:
    """What to do with a cell: done, resume, restart (files but no checkpoint) or start."""
    rounds = planned_rounds(run_dir)
    last = last_round(run_dir)
    if rounds is not None and last >= rounds:
        return "done"
    if has_checkpoint(run_dir):
        return "resume"
    return "restart" if run_dir.exists() and any(run_dir.iterdir()) else "start"


def command(fedplat: Sequence[str], experiment: str, cell: Cell, run_dir: Path, what: str,
            checkpoint_every: int, extra: Sequence[str]) -> list[str]:
    """The fedplat command line of one cell."""
    if what == "resume":
        return [*fedplat, f"resume={run_dir}"]
    # one core per run on the inline backend unless the overrides say otherwise (a GPU machine)
    defaults = [d for d in ("simulation.backend=inline", "simulation.torch_threads=1")
                if not any(e.startswith(d.split("=")[0] + "=") for e in extra)]
    cmd = [*fedplat, f"experiment={experiment}", *method_overrides(cell.method, cell.global_rate),
           f"client.lr={cell.local}", f"seed={cell.seed}", f"output_dir={run_dir}",
           f"checkpoint_every={checkpoint_every}", *defaults, *extra]
    if what == "restart":
        cmd.append("overwrite=true")
    return cmd


def floats(text: str) -> list[float]:
    """Comma-separated numbers."""
    return [float(t) for t in text.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", help="conf/experiment/<name>.yaml, e.g. fedhyper_fmnist_code")
    ap.add_argument("out", type=Path, help="folder of the grid's run directories")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--local", default=",".join(f"{x:g}" for x in LOCAL))
    ap.add_argument("--global", dest="global_rates", default=",".join(f"{x:g}" for x in GLOBAL))
    ap.add_argument("--checkpoint-every", type=int, default=5)
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(args_in)
    fedplat = shlex.split(os.environ.get("FEDPLAT", f"{sys.executable} -m fedplat.cli"))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        method_overrides(m, 1.0)  # unknown methods stop here, before any run
    cells = [Cell(m, int(s), lr, g) for m in methods for s in floats(args.seeds)
             for lr in floats(args.local) for g in floats(args.global_rates)]
    failed = 0
    for i, cell in enumerate(cells, 1):
        run_dir = cell.directory(args.out)
        what = action(run_dir)
        print(f"[{i}/{len(cells)}] {what:7s} {run_dir}", flush=True)
        if what == "done":
            continue
        cmd = command(fedplat, args.experiment, cell, run_dir, what, args.checkpoint_every,
                      extra)
        if args.dry_run:
            print("  " + shlex.join(cmd))
            continue
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"  exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the disaster-scenario arms over several seeds; write a table and the side-by-side plot.

    python scripts/disaster_arms.py --seeds 7 8 9                  # run (resumes), then report
    python scripts/disaster_arms.py --report-only --out DIR        # redraw from finished runs
    python scripts/disaster_arms.py --seeds 7 topology.m=3         # extra Hydra overrides

Arms (conf/experiment/disaster_<arm>.yaml): a0 no disruption; a1 the top-degree k drop with
their data; a2 the same k drop but were relays all along (connectivity loss only); a2ctrl
those relays without a drop; a3 k peripheral data holders drop (data loss only); a4 20 % of
the links fail (optional). The default arms are a0-a3. Runs use the
in-process executor, one after another (the numbers equal the Ray backend's).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedplat.config.compose import compose, prepare
from fedplat.recording.recorder import read_rows
from simulations.disaster import plots
from simulations.disaster.runner import run

ARMS = {
    "a0": "A0 no disruption",
    "a1": "A1 hubs drop with data",
    "a2": "A2 hubs drop, were relays",
    "a2ctrl": "A2-ctrl hubs relays, no drop",
    "a3": "A3 peripheral holders drop",
    "a4": "A4 20 % of links fail",
}
DEFAULT_ARMS = ["a0", "a1", "a2", "a3"]


def run_all(arms: list[str], seeds: list[int], out: Path, overrides: list[str]) -> None:
    """Run every (arm, seed) whose summary is not complete yet."""
    for seed in seeds:  # seed-major: an interrupted sweep still has every arm
        for arm in arms:
            d = out / arm / f"seed{seed}"
            done = d / "summary.json"
            if done.is_file() and json.loads(done.read_text()).get("status") == "completed":
                print(f"[skip] {arm} seed {seed}: done", flush=True)
                continue
            cfg = prepare(compose([f"experiment=disaster_{arm}", f"seed={seed}",
                                   "p2p.backend=local", *overrides]))
            t0 = time.perf_counter()
            summary = run(cfg, d)
            print(f"[done] {arm} seed {seed}: final acc {summary['final']['accuracy']:.4f} "
                  f"in {time.perf_counter() - t0:.0f} s", flush=True)


def _at(rows: list[dict[str, Any]], server_round: int, key: str = "acc_mean") -> float:
    for r in rows:
        if r["round"] == server_round and isinstance(r.get(key), int | float):
            return float(r[key])
    return math.nan


def _ms(values: list[float], pct: bool = True) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "n/a"
    m, s = float(np.mean(vals)), float(np.std(vals))
    return f"{100 * m:.1f} ± {100 * s:.1f}" if pct else f"{m:.2f} ± {s:.2f}"


def report(arms: list[str], out: Path) -> str:
    """Markdown table and arms.png from the finished runs under `out`."""
    data: dict[str, dict[int, list[dict[str, Any]]]] = {}
    summaries: dict[str, dict[int, dict[str, Any]]] = {}
    for arm in arms:
        for d in sorted((out / arm).glob("seed*")):
            if not (d / "summary.json").is_file():
                continue
            seed = int(d.name[4:])
            data.setdefault(arm, {})[seed] = read_rows(d)
            summaries.setdefault(arm, {})[seed] = json.loads((d / "summary.json").read_text())
    if not data:
        return "no finished runs"
    any_s = next(iter(next(iter(summaries.values())).values()))
    td = next((s.get("first_disruption_round") for a in summaries.values() for s in a.values()
               if s.get("first_disruption_round")), None)
    T = any_s["num_rounds"]
    lines = [
        f"n = {any_s['num_clients']}, rounds = {T}, disruption at round {td}; accuracy in % "
        "(mean ± std over seeds) of the mean over alive nodes; rel. drop = (A0 - arm) / A0 at "
        "the final round, same seed.",
        "",
        "| arm | seeds | before (t_d-1) | t_d+1 | t_d+10 | final | rel. drop vs A0 | "
        "final giant frac | final components | acc giant / outside | wall s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    a0 = data.get("a0", {})
    for arm in arms:
        if arm not in data:
            continue
        runs, sums = data[arm], summaries[arm]
        seeds = sorted(runs)
        before = [_at(runs[s], td - 1) for s in seeds] if td else []
        plus1 = [_at(runs[s], td + 1) for s in seeds] if td else []
        plus10 = [_at(runs[s], td + 10) for s in seeds] if td else []
        final = [_at(runs[s], T) for s in seeds]
        rel = [(_at(a0[s], T) - _at(runs[s], T)) / _at(a0[s], T) for s in seeds if s in a0]
        gf = [_at(runs[s], T, "giant_frac") for s in seeds]
        nc = [_at(runs[s], T, "n_components") for s in seeds]
        ag = [_at(runs[s], T, "acc_giant") for s in seeds]
        ao = [_at(runs[s], T, "acc_outside_giant") for s in seeds]
        wall = [float(sums[s]["wall_time_s"]) for s in seeds]
        lines.append(
            f"| {ARMS.get(arm, arm)} | {len(seeds)} | {_ms(before) if td else ''} | "
            f"{_ms(plus1) if td else ''} | {_ms(plus10) if td else ''} | {_ms(final)} | "
            f"{_ms(rel) if arm != 'a0' else '-'} | {_ms(gf, pct=False)} | "
            f"{_ms(nc, pct=False)} | {_ms(ag)} / {_ms(ao)} | {np.mean(wall):.0f} |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    plots.plot_arms({ARMS.get(a, a): [data[a][s] for s in sorted(data[a])]
                     for a in arms if a in data}, out / "arms.png", event_round=td,
                    title=f"DecAvg on BA(n={any_s['num_clients']}, m=2), IID MNIST: mean "
                          "accuracy over alive nodes (± std over seeds)")
    if "a0" in data:
        plots.plot_arm_differences({ARMS.get(a, a): data[a] for a in arms if a in data},
                                   ARMS["a0"], out / "arms_diff.png", event_round=td)
    return table


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    ap.add_argument("--out", type=Path, default=Path("outputs/disaster_arms"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()
    logging.basicConfig(format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("fedplat").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run_all(args.arms, args.seeds, args.out, args.overrides)
    print(report(args.arms, args.out))


if __name__ == "__main__":
    main()

"""The prepared GPU check: one command that measures fedplat's clients on a CUDA machine.

    python benchmarks/gpu_check.py --out DIR

Four steps, each on the GPU and (where a ratio is asked) on this machine's CPU, written to
DIR/gpu_check.json and DIR/gpu_check.md (one table per step):

1. shares   FedAvg on MNIST-1D on Ray with fractional GPU shares 1, 0.5, 0.25, 0.125 per client
            (`simulation.num_gpus`): client-rounds per second (after a warm-up round), how many
            clients ran at once, and the peak GPU memory a client's handler allocated
            (`summary.json` `devices`);
2. parity   the share-1 GPU run's per-round metrics against a CPU run of the same seed (inline
            backend, one torch thread), within a stated tolerance (`TOLERANCE`): float32 kernels
            differ between devices, so the numbers agree closely but not bit for bit;
3. batched  grouped + batched FedAvg (`simulation.clients_per_node`, `simulation.batched=true`)
            at 1,000 clients, median seconds per round on the GPU and on the CPU (inline backend,
            so Ray's start-up and dispatch stay out of the device comparison);
4. hyperfl  one HyperFL round (a training round, without evaluation) on the GPU and on the CPU.

Without CUDA (or with `--tiny`) the same steps run on the CPU in a tiny setting (few clients,
rounds and samples; step 1 with one share), so the script is exercised in CI and cannot rot; the
report then says that nothing ran on a GPU. `--backend inline` runs step 1 without Ray (CI's
quick test); `--steps` picks steps.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch

from fedplat.config.compose import compose, prepare
from fedplat.recording.recorder import devices_line

#: Step 2: |gpu - cpu| <= rel * max(1, |cpu|) for losses, <= abs for accuracies, every round.
TOLERANCE = {"loss_rel": 1e-3, "accuracy_abs": 0.01}
SHARES = (1.0, 0.5, 0.25, 0.125)

#: Sizes of the full check (a CUDA machine) and of the tiny one (CPU, CI).
FULL = {"clients": 64, "rounds": 4, "samples": 8000, "batched_clients": 1000,
        "batched_rounds": 3, "hyperfl_clients": 20, "shares": SHARES}
TINY = {"clients": 4, "rounds": 2, "samples": 600, "batched_clients": 40,
        "batched_rounds": 3, "hyperfl_clients": 4, "shares": (1.0,)}

log = logging.getLogger("gpu_check")


def fedavg_overrides(clients: int, rounds: int, samples: int, seed: int) -> list[str]:
    """The FedAvg workload of steps 1-3 (MNIST-1D, MLP, 1 local epoch, batch 32, SGD)."""
    return ["dataset=mnist1d", f"dataset.num_samples={samples}", "model=mlp",
            "model.hidden=[100,100]", "partition=iid", f"num_clients={clients}",
            f"num_rounds={rounds}", f"eval_every={rounds}", "client.local_epochs=1",
            "client.batch_size=32", "client.lr=0.05", "client.momentum=0.0", f"seed={seed}"]


def run(overrides: Sequence[str], out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One fedplat run (what the `fedplat` command runs) into `out`: summary and rows."""
    from simulations.centralized import run as run_centralized

    cfg = prepare(compose(list(overrides)))
    out.mkdir(parents=True, exist_ok=True)
    summary = run_centralized(cfg, out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    if summary.get("status") != "completed":
        raise RuntimeError(f"run in {out} did not complete: {summary.get('reason')}")
    return summary, rows


def timed_rounds(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rounds a timing uses: all but the first (warm-up: CUDA context, kernels, caches)."""
    return list(rows[1:]) if len(rows) > 1 else list(rows)


def gib(n: Any) -> float | None:
    """Bytes as GiB (None stays None)."""
    return None if not isinstance(n, int | float) else n / 2**30


# -- the four steps ------------------------------------------------------------------------------


def step_shares(size: dict[str, Any], out: Path, cuda: bool, backend: str,
                seed: int) -> dict[str, Any]:
    """Step 1: FedAvg with each GPU share: client-rounds/s, clients at once, peak memory."""
    results = []
    for share in size["shares"]:
        overrides = [*fedavg_overrides(size["clients"], size["rounds"], size["samples"], seed),
                     f"simulation.backend={backend}", "simulation.num_cpus=1",
                     f"simulation.num_gpus={share if cuda else 0}", "simulation.torch_threads=1"]
        if cuda:
            overrides.append(f"simulation.ray_num_gpus={torch.cuda.device_count()}")
        t0 = time.perf_counter()
        summary, rows = run(overrides, out / f"share_{share:g}")
        wall = time.perf_counter() - t0
        timed = timed_rounds(rows)
        seconds = sum(r["round_time_s"] for r in timed)
        client_rounds = sum(r.get("num_train_clients", 0) for r in timed)
        devices = summary["devices"]
        results.append({
            "share": share if cuda else 0.0, "backend": backend,
            "client_rounds_per_s": client_rounds / seconds if seconds else None,
            "at_once": devices["at_once"], "devices": devices["clients"],
            "peak_mem_gib_per_client": gib(devices["peak_mem_bytes"]),
            "clients_line": devices_line(devices), "startup_s": summary["startup_s"],
            "wall_s": wall, "final_accuracy": summary["final"]["accuracy"],
            "rows": [{k: r.get(k) for k in ("round", "train_loss", "test_loss",
                                            "test_accuracy")} for r in rows]})
    return {"workload": f"FedAvg, MNIST-1D ({size['samples']} samples), MLP 40-100-100-10, "
                        f"{size['clients']} clients, {size['rounds']} rounds, 1 CPU each",
            "runs": results}


def step_parity(size: dict[str, Any], out: Path, shares: dict[str, Any],
                seed: int) -> dict[str, Any]:
    """Step 2: the share-1 run's metrics against a CPU run of the same seed."""
    first = shares["runs"][0]
    _, cpu_rows = run([*fedavg_overrides(size["clients"], size["rounds"], size["samples"], seed),
                       "simulation.backend=inline", "simulation.num_gpus=0",
                       "simulation.torch_threads=1"], out / "parity_cpu")
    worst = {"loss": 0.0, "accuracy": 0.0}
    ok = True
    for a, b in zip(first["rows"], cpu_rows):
        for key in ("train_loss", "test_loss"):
            if a.get(key) is None or b.get(key) is None:
                continue
            diff = abs(a[key] - b[key])
            worst["loss"] = max(worst["loss"], diff / max(1.0, abs(b[key])))
            ok &= diff <= TOLERANCE["loss_rel"] * max(1.0, abs(b[key]))
        if a.get("test_accuracy") is not None and b.get("test_accuracy") is not None:
            diff = abs(a["test_accuracy"] - b["test_accuracy"])
            worst["accuracy"] = max(worst["accuracy"], diff)
            ok &= diff <= TOLERANCE["accuracy_abs"]
    ok &= len(first["rows"]) == len(cpu_rows)
    return {"compared": f"share {first['share']:g} on {', '.join(first['devices'])} "
                        f"({first['backend']}) vs cpu (inline, 1 thread), seed {seed}",
            "tolerance": TOLERANCE, "worst_loss_rel": worst["loss"],
            "worst_accuracy_abs": worst["accuracy"], "within_tolerance": bool(ok)}


def _median_round(rows: Sequence[dict[str, Any]]) -> float:
    """Median seconds of the timed rounds that trained only (the last one also evaluates)."""
    timed = timed_rounds(rows)
    train_only = [r for r in timed if "num_evaluate_clients" not in r] or timed
    return statistics.median(r["round_time_s"] for r in train_only)


def step_batched(size: dict[str, Any], out: Path, cuda: bool, seed: int) -> dict[str, Any]:
    """Step 3: grouped + batched FedAvg at many clients, GPU against CPU (inline backend)."""
    n = size["batched_clients"]
    per_node = max(1, n // 4)
    base = [*fedavg_overrides(n, size["batched_rounds"], max(size["samples"], 5 * n), seed),
            "simulation.backend=inline", f"simulation.clients_per_node={per_node}",
            "simulation.batched=true", "eval_every=1000"]
    out_rows = {}
    for name, gpus in (("gpu", 1 if cuda else 0), ("cpu", 0)):
        summary, rows = run([*base, f"simulation.num_gpus={gpus}"], out / f"batched_{name}")
        out_rows[name] = {"median_round_s": _median_round(rows),
                          "devices": summary["devices"]["clients"],
                          "peak_mem_gib": gib(summary["devices"]["peak_mem_bytes"]),
                          "final_accuracy": summary["final"]["accuracy"]}
    gpu, cpu = out_rows["gpu"], out_rows["cpu"]
    return {"workload": f"FedAvg, {n} clients, {per_node} per node, batched, "
                        f"{size['batched_rounds']} rounds", **out_rows,
            "cpu_over_gpu": cpu["median_round_s"] / gpu["median_round_s"]}


def step_hyperfl(size: dict[str, Any], out: Path, cuda: bool, seed: int,
                 tiny: bool) -> dict[str, Any]:
    """Step 4: one HyperFL training round (round 2 of 3: round 1 warms up, round 3 evaluates)."""
    n = size["hyperfl_clients"]
    base = ["strategy=hyperfl", "dataset=mnist1d", f"dataset.num_samples={size['samples']}",
            "partition=iid", f"num_clients={n}", "num_rounds=3", "eval_every=1000",
            f"seed={seed}", "simulation.backend=inline"]
    if tiny:
        base += ["strategy.local_epochs=1", "strategy.hypernet.hidden=16"]
    out_rows = {}
    for name, gpus in (("gpu", 1 if cuda else 0), ("cpu", 0)):
        summary, rows = run([*base, f"simulation.num_gpus={gpus}"], out / f"hyperfl_{name}")
        timed = rows[1] if len(rows) > 1 else rows[-1]  # round 2: no evaluation
        out_rows[name] = {"round_s": timed["round_time_s"], "round": timed["round"],
                          "devices": summary["devices"]["clients"],
                          "peak_mem_gib": gib(summary["devices"]["peak_mem_bytes"])}
    return {"workload": f"HyperFL, MNIST-1D, {n} clients, model auto (MLP), one training round",
            **out_rows, "cpu_over_gpu": out_rows["cpu"]["round_s"] / out_rows["gpu"]["round_s"]}


# -- report --------------------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if math.isfinite(x) else "n/a"
    if isinstance(x, dict):
        return ", ".join(f"{k}: {v}" for k, v in x.items())
    return str(x)


def markdown(report: dict[str, Any]) -> str:
    """The report's tables."""
    env = report["environment"]
    lines = [f"# fedplat GPU check ({env['date']})", "",
             f"GPU: {env['gpu'] or 'none (no CUDA: every column ran on the CPU)'}; "
             f"torch {env['torch']} (CUDA {env['cuda']}); {env['cpus']} CPUs; "
             f"Python {env['python']}; mode {'tiny' if report['tiny'] else 'full'}.", ""]
    steps = report["steps"]
    if "shares" in steps:
        s = steps["shares"]
        lines += [f"## 1. GPU shares ({s['workload']})", "",
                  "| GPU share | clients at once | client-rounds/s | peak GiB per client | "
                  "start-up s | final accuracy | clients |", "|---|---|---|---|---|---|---|"]
        for r in s["runs"]:
            lines.append(f"| {r['share']:g} | {r['at_once']} | "
                         f"{_fmt(r['client_rounds_per_s'], 1)} | "
                         f"{_fmt(r['peak_mem_gib_per_client'])} | {_fmt(r['startup_s'], 1)} | "
                         f"{_fmt(r['final_accuracy'], 4)} | {r['clients_line']} |")
        lines.append("")
    if "parity" in steps:
        p = steps["parity"]
        lines += ["## 2. GPU against CPU, same seed", "",
                  "| compared | worst loss difference (relative) | worst accuracy difference | "
                  "tolerance | within |", "|---|---|---|---|---|",
                  f"| {p['compared']} | {p['worst_loss_rel']:.2e} | "
                  f"{p['worst_accuracy_abs']:.4f} | loss {p['tolerance']['loss_rel']:g} rel, "
                  f"accuracy {p['tolerance']['accuracy_abs']:g} | "
                  f"{'yes' if p['within_tolerance'] else 'NO'} |", ""]
    for key, title, unit in (("batched", "3. Grouped + batched FedAvg", "median_round_s"),
                             ("hyperfl", "4. One HyperFL round", "round_s")):
        if key not in steps:
            continue
        b = steps[key]
        lines += [f"## {title} ({b['workload']})", "",
                  "| device | s/round | peak GiB | clients |", "|---|---|---|---|"]
        for name in ("gpu", "cpu"):
            # without CUDA the "gpu" column ran on the CPU too: say so in the row itself
            label = name if name == "cpu" or env["gpu"] else "gpu (no CUDA: cpu)"
            lines.append(f"| {label} | {_fmt(b[name][unit])} | {_fmt(b[name]['peak_mem_gib'])} |"
                         f" {_fmt(b[name]['devices'])} |")
        lines += ["", f"CPU / GPU: {b['cpu_over_gpu']:.2f}x", ""]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Where the check ran."""
    cuda = torch.cuda.is_available()
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "gpus": torch.cuda.device_count() if cuda else 0,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the steps, write DIR/gpu_check.json and DIR/gpu_check.md; 1 if parity fails."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="directory for the report and runs")
    ap.add_argument("--tiny", action="store_true",
                    help="the tiny setting (automatic without CUDA)")
    ap.add_argument("--backend", choices=("ray", "inline"), default="ray",
                    help="backend of step 1 (default ray)")
    ap.add_argument("--steps", nargs="+", default=["shares", "parity", "batched", "hyperfl"],
                    choices=["shares", "parity", "batched", "hyperfl"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] %(message)s",
                        datefmt="%H:%M:%S")
    for name in ("fedplat", "gpu_check"):
        logging.getLogger(name).setLevel(logging.INFO)
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    size = TINY if tiny else FULL
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not cuda:
        log.info("no CUDA device: running the tiny check on the CPU")
    steps: dict[str, Any] = {}
    report = {"tiny": tiny, "environment": environment(), "steps": steps}

    def save() -> None:
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "gpu_check.md").write_text(markdown(report))

    t0 = time.perf_counter()
    wanted = set(args.steps)
    if wanted & {"shares", "parity"}:
        steps["shares"] = step_shares(size, out / "runs", cuda, args.backend, args.seed)
        save()
    if "parity" in wanted:
        steps["parity"] = step_parity(size, out / "runs", steps["shares"], args.seed)
        save()
    if "batched" in wanted:
        steps["batched"] = step_batched(size, out / "runs", cuda, args.seed)
        save()
    if "hyperfl" in wanted:
        steps["hyperfl"] = step_hyperfl(size, out / "runs", cuda, args.seed, tiny)
        save()
    report["total_s"] = time.perf_counter() - t0
    save()
    print(markdown(report))
    return 0 if steps.get("parity", {}).get("within_tolerance", True) else 1


if __name__ == "__main__":
    sys.exit(main())

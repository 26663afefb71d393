"""HyperFL Table 3 on Fashion-MNIST: Inverting Gradients against FedAvg and HyperFL uploads.

For each seed: one training run per method (`fedplat experiment=privacy_fmnist_<method>`:
four ordinary rounds, then clients 0-2's real round-5 messages captured, one image each), then
`fedplat-attack` with one attack budget on every captured client: FedAvg with its threat model,
HyperFL with v and phi unknown (the paper's threat model) and with v read off the upload
(`init=recovered`, a HyperFL-aware attack with the same knowledge). Prints and
saves a markdown table (mean and std of PSNR/SSIM over clients x seeds, label recovery, the
paper's numbers) and a picture: originals, then one row of reconstructions per attack.

    .venv/bin/python scripts/privacy_table.py --out outputs/privacy --seeds 0 1 \
        --recovered-seeds 0 1 --dp-noise 0.001 0.01 --dp-seeds 0 \
        --iterations 2000 --tv 1e-2 --picture docs/figures/privacy_fmnist.png

(the command behind docs/privacy.md; finished runs and attacks are reused, `--only-existing`
only tabulates). `--train-args num_rounds=1 capture.round=1` captures the first round instead;
`--methods fedavg` attacks FedAvg's uploads only. `--restarts 3 --split-restarts hyperfl
--jobs 2` runs HyperFL's three restarts as three processes, two at a time (the standard budget
against HyperFL costs hours in one process here). Also DP-FedAvg rows (HyperFL's DP baseline
numbers next to them) and, per image, every method's PSNR / SSIM on the same true image.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

#: (label, picture label, training run, threat options, paper EMNIST / CIFAR-10 PSNR / SSIM)
ATTACKS = [
    ("FedAvg", "FedAvg", "fedavg", [], "32.64 / 0.8925", "16.16 / 0.6415"),
    ("HyperFL, v and phi unknown (paper's threat model)", "HyperFL\n(v, phi unknown)",
     "hyperfl", [], "7.85 / 0.3010", "8.35 / 0.2732"),
    ("HyperFL, v read off the upload, phi unknown (init=recovered)",
     "HyperFL\n(v recovered)", "hyperfl", ["init=recovered"], "n/a", "n/a"),
]
#: training runs: name -> (experiment, extra overrides)
RUNS: dict[str, tuple[str, list[str]]] = {
    "fedavg": ("privacy_fmnist_fedavg", []),
    "hyperfl": ("privacy_fmnist_hyperfl", []),
}


def sh(cmd: list[str], log: Path) -> float:
    """Run a command into a log file; return its wall time."""
    t0 = time.perf_counter()
    with log.open("w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def train(name: str, seed: int, out: Path, extra: list[str]) -> Path:
    """One training run (skipped when already completed; an unfinished one starts again)."""
    run_dir = out / f"{name}_seed{seed}"
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "completed":
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    experiment, overrides = RUNS[name]
    sh([sys.executable, "-m", "fedplat.cli", f"experiment={experiment}", *overrides,
        f"seed={seed}", f"hydra.run.dir={run_dir}", "overwrite=true", *extra],
       out / f"train_{name}_{seed}.log")
    return run_dir


def attack_cmd(run_dir: Path, out: Path, options: list[str], args: argparse.Namespace,
               restarts: int, seed: int) -> list[str]:
    """The fedplat-attack command line of one attack."""
    cmd = [sys.executable, "-m", "fedplat.privacy.cli", str(run_dir), "--iterations",
           str(args.iterations), "--lr", str(args.lr), "--tv", str(args.tv), "--restarts",
           str(restarts), "--seed", str(seed), "--threads", "1", "--quiet", "--out", str(out)]
    for o in options:
        cmd += ["--option", o]
    return cmd


def attack(run_dir: Path, options: list[str], args: argparse.Namespace) -> Path:
    """fedplat-attack on every captured client of a run (skipped when already done).

    With the method in `--split-restarts`, the K restarts run as K processes (attacker seeds
    0..K-1, one restart each; `--jobs` at a time), and `merge_restarts` keeps per client the
    one with the lowest gradient mismatch, the attacker's own criterion, as `--restarts K`
    does within one process. Each restart's process draws its own starting image and unknowns
    from its seed, so the result is the best of K independent restarts, not bit-identical to
    `--restarts K` (whose restarts share one random stream).
    """
    threat = "hyperfl" if run_dir.name.startswith("hyperfl") else "fedavg"
    name = f"ig_{threat}" + "".join("_" + o.replace("=", "-") for o in options)
    out = run_dir / "attack" / name
    if (out / "summary.json").is_file() or args.only_existing:
        return out
    method = run_dir.name.rsplit("_seed", 1)[0]
    if method not in args.split_restarts:
        sh(attack_cmd(run_dir, out, options, args, args.restarts, 0), run_dir / f"{name}.log")
        return out
    parts = [run_dir / "attack" / f"{name}_attacker_seed{k}" for k in range(args.restarts)]
    todo = [(k, p) for k, p in enumerate(parts) if not (p / "summary.json").is_file()]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(sh, attack_cmd(run_dir, part, options, args, 1, k),
                               run_dir / f"{part.name}.log") for k, part in todo]
    failed = [e for e in (f.exception() for f in futures) if e is not None]
    if failed:
        raise SystemExit(f"an attack failed: {failed[0]}")
    merge_restarts(parts, out)
    return out


def merge_restarts(parts: list[Path], out: Path) -> None:
    """Per client, the restart (one attack directory each) with the lowest gradient mismatch.

    Writes its files into `out` with the mismatch of every restart, the chosen one and the
    seconds of all of them (the attack's whole cost), plus a summary.json like fedplat-attack's.
    """
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for stem_json in sorted(parts[0].glob("round_*_client_*.json")):
        candidates = [json.loads((p / stem_json.name).read_text()) for p in parts]
        best = min(range(len(parts)), key=lambda k: candidates[k]["mismatch"])
        result = dict(candidates[best])
        result["restart_mismatch"] = [c["mismatch"] for c in candidates]
        result["restart_psnr"] = [c["psnr"] for c in candidates]
        result["chosen_restart"] = best
        result["seconds"] = sum(c["seconds"] for c in candidates)
        result["attack"] = {**result["attack"], "restarts": len(parts),
                            "seed": list(range(len(parts))), "split_restarts": True}
        stem = stem_json.stem
        for suffix in (".png", ".pt"):
            shutil.copyfile(parts[best] / f"{stem}{suffix}", out / f"{stem}{suffix}")
        (out / stem_json.name).write_text(json.dumps(result, indent=2) + "\n")
        results.append(result)
    first = json.loads((parts[0] / "summary.json").read_text())
    summary = {**first, "attack": results[0]["attack"],
               "psnr": statistics.mean(r["psnr"] for r in results),
               "ssim": statistics.mean(r["ssim"] for r in results),
               "label_recovery": statistics.mean(r["label_recovery"] for r in results),
               "per_client": {str(r["client"]): {k: r[k] for k in
                                                 ("psnr", "ssim", "label_recovery", "mismatch",
                                                  "chosen_restart")} for r in results}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def accuracy_before(run_dir: Path) -> float:
    """Client-mean test accuracy (%) of the last round before the captured one."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return 100 * float(rows[-2]["test_accuracy_mean"]) if len(rows) > 1 else float("nan")


def accuracy_table(args: argparse.Namespace) -> str:
    """Train FedAvg and the DP variants without capture; their final client-mean accuracy."""
    lines = [f"Accuracy cost ({args.accuracy_rounds} rounds, seed 0, no capture; final-round "
             "client-mean test accuracy):", "", "| method | accuracy (%) | wall time (s) |",
             "|---|---|---|"]
    for name in [n for n in RUNS if n != "hyperfl"]:
        key = f"acc_{name}"
        RUNS[key] = RUNS[name]
        run_dir = train(key, 0, args.out, [f"num_rounds={args.accuracy_rounds}",
                                           "capture.round=0"])
        summary = json.loads((run_dir / "summary.json").read_text())
        acc = 100 * summary["final"]["accuracy_mean"]
        label = "FedAvg" if name == "fedavg" else f"DP-FedAvg (clip 0.5, z {name[2:]})"
        lines.append(f"| {label} | {acc:.2f} | {summary['wall_time_s']:.0f} |")
    return "\n".join(lines)


def constant_guesses(run_dirs: list[Path]) -> list[str]:
    """Table rows: PSNR/SSIM of a constant image (no attack) against the same true images.

    Calibrates the scale: sparse Fashion-MNIST items (a sandal on black) already score
    10+ dB against an all-black image.
    """
    from fedplat.privacy.capture import captured, load_capture
    from fedplat.privacy.metrics import psnr, ssim, to_unit
    from fedplat.privacy.truth import knowledge, run_config, true_batch

    scores: dict[float, tuple[list[float], list[float]]] = {0.0: ([], []), 0.5: ([], [])}
    for run_dir in run_dirs:
        cfg = run_config(run_dir)
        know = knowledge(cfg)
        server_round = next(iter(captured(run_dir)))
        for cid in captured(run_dir)[server_round]:
            x, _ = true_batch(cfg, load_capture(run_dir, server_round, cid))
            truth = to_unit(x, know.low, know.high)
            for value, (p, s) in scores.items():
                guess = torch.full_like(truth, value)
                p.append(float(psnr(truth, guess).mean()))
                s.append(float(ssim(truth, guess).mean()))
    names = {0.0: "all-black image", 0.5: "mid-gray image"}
    return [f"| no attack: {names[v]} | {stats(p)} | {stats(s)} | | | {len(p)} | | | | |"
            for v, (p, s) in scores.items()]


def stats(values: list[float]) -> str:
    """`mean ± std` (std over clients x seeds)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def picture(rows: list[tuple[str, list[Path]]], path: Path, clients: list[int]) -> None:
    """Originals, then the reconstructions of each attack (first seed, the given clients)."""
    from fedplat.privacy.capture import load_capture
    from fedplat.privacy.metrics import to_unit
    from fedplat.privacy.report import save_grid
    from fedplat.privacy.truth import knowledge, run_config, true_batch

    grid = []
    for label, dirs in rows:
        out_dir = dirs[0]
        run_dir = out_dir.parent.parent
        cfg = run_config(run_dir)
        server_round = int(cfg.capture.round)
        know = knowledge(cfg)
        if not grid:
            truth = [true_batch(cfg, load_capture(run_dir, server_round, c))[0] for c in clients]
            grid.append(("original", to_unit(torch.cat(truth), know.low, know.high)))
        images = []
        for c in clients:
            rec = torch.load(out_dir / f"round_{server_round}_client_{c}.pt")["x"]
            images.append(to_unit(rec, know.low, know.high))
        psnr = [json.loads((out_dir / f"round_{server_round}_client_{c}.json").read_text())["psnr"]
                for c in clients]
        grid.append((f"{label}\n{statistics.mean(psnr):.1f} dB", torch.cat(images)))
    save_grid(grid, path, "Inverting Gradients, Fashion-MNIST, one image per client\n"
              f"clients {', '.join(map(str, clients))}, round {server_round}, first seed")


def main() -> None:
    """Train, attack, tabulate."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("outputs/privacy"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--tv", type=float, default=1e-2)
    ap.add_argument("--train-args", nargs="*", default=[],
                    help="extra overrides for both training runs")
    ap.add_argument("--picture", type=Path, default=None)
    ap.add_argument("--dp-noise", type=float, nargs="*", default=[],
                    help="also DP-FedAvg (clip 0.5) with these noise multipliers")
    ap.add_argument("--dp-seeds", type=int, nargs="*", default=None,
                    help="seeds of the DP-FedAvg runs (default: --seeds)")
    ap.add_argument("--recovered-seeds", type=int, nargs="*", default=None,
                    help="seeds of the HyperFL init=recovered attack (default: --seeds)")
    ap.add_argument("--methods", nargs="+", default=["fedavg", "hyperfl"],
                    choices=["fedavg", "hyperfl"],
                    help="the trained methods whose uploads are attacked (DP-FedAvg: --dp-noise)")
    ap.add_argument("--split-restarts", nargs="*", default=[], choices=["fedavg", "hyperfl"],
                    help="methods whose --restarts run as separate processes (attacker seeds "
                         "0..K-1), the lowest gradient mismatch kept per client")
    ap.add_argument("--jobs", type=int, default=1,
                    help="attack processes at once for --split-restarts (one core each)")
    ap.add_argument("--only-existing", action="store_true",
                    help="run nothing: tabulate the per-client results already on disk")
    ap.add_argument("--accuracy-rounds", type=int, default=0,
                    help="also train FedAvg and the DP variants this many rounds (seed 0, no "
                         "capture) and report the accuracy cost")
    args = ap.parse_args()
    for z in args.dp_noise:
        RUNS[f"dp{z:g}"] = ("privacy_fmnist_dp_fedavg", [f"strategy.noise_multiplier={z}"])
        ATTACKS.append((f"DP-FedAvg, clip 0.5, noise multiplier {z:g}",
                        f"DP-FedAvg\nz={z:g}", f"dp{z:g}", [], "7.74 / 0.2978 (*)",
                        "7.90 / 0.2716 (*)"))
    for name in [m for m in ("fedavg", "hyperfl") if m not in args.methods]:
        del RUNS[name]
        ATTACKS[:] = [a for a in ATTACKS if a[2] != name]
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    done: dict[str, list[Path]] = {a[0]: [] for a in ATTACKS}
    dp_seeds = args.seeds if args.dp_seeds is None else args.dp_seeds
    rec_seeds = args.seeds if args.recovered_seeds is None else args.recovered_seeds

    def seeds_of(method: str, options: list[str]) -> list[int]:
        if method.startswith("dp"):
            return dp_seeds
        return rec_seeds if "init=recovered" in options else args.seeds

    seeds_done: dict[str, list[int]] = {a[0]: [] for a in ATTACKS}
    for seed in sorted(set(args.seeds) | set(dp_seeds) | set(rec_seeds)):
        wanted = [a for a in ATTACKS if seed in seeds_of(a[2], a[3])]
        if args.only_existing:
            runs = {m: args.out / f"{m}_seed{seed}" for m in RUNS}
        else:
            runs = {m: train(m, seed, args.out, args.train_args) for m in RUNS
                    if any(a[2] == m for a in wanted)}
        for label, _, method, options, *_ in wanted:
            out = attack(runs[method], options, args)
            if any(out.glob("round_*_client_*.json")):
                done[label].append(out)
                seeds_done[label].append(seed)
    lines = [f"Inverting Gradients, {args.iterations} iterations, lr {args.lr}, TV {args.tv}, "
             f"{args.restarts} restart(s); one image per client; mean ± std over clients x "
             "seeds.", "",
             "| upload attacked | PSNR (dB) | SSIM | label recovery | seeds | attacks | "
             "s/attack | model acc. before (%) | paper EMNIST PSNR / SSIM | "
             "paper CIFAR-10 PSNR / SSIM |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    results = {}
    per_image: dict[tuple[int, int], dict[str, dict]] = {}
    for label, _, _, _, emnist, cifar in ATTACKS:
        if not done[label]:
            lines.append(f"| {label} | not run | | | | | | | {emnist} | {cifar} |")
            continue
        before = [accuracy_before(d.parent.parent) for d in done[label]]
        per = []
        for seed, out in zip(seeds_done[label], done[label], strict=True):
            for p in sorted(out.glob("round_*_client_*.json")):
                per.append(json.loads(p.read_text()))
                per_image.setdefault((seed, per[-1]["client"]), {})[label] = per[-1]
        psnr, ssim = [r["psnr"] for r in per], [r["ssim"] for r in per]
        labels = [r["label_recovery"] for r in per]
        secs = [r["seconds"] for r in per]
        results[label] = {"psnr": psnr, "ssim": ssim, "label_recovery": labels, "seconds": secs,
                          "seeds": seeds_done[label]}
        seeds = ",".join(map(str, seeds_done[label]))
        lines.append(f"| {label} | {stats(psnr)} | {stats(ssim)} | "
                     f"{statistics.mean(labels):.2f} | {seeds} | {len(per)} | "
                     f"{statistics.mean(secs):.0f} | {stats(before)} | {emnist} | {cifar} |")
    lines += constant_guesses([d.parent.parent for d in done[ATTACKS[0][0]]])
    shown = [(a[0], a[1].replace("\n", " ")) for a in ATTACKS if done[a[0]]]
    lines += ["", "Per image (PSNR dB / SSIM; the same true image for every method of a seed):",
              "", "| seed | client | label | " + " | ".join(s for _, s in shown) + " |",
              "|---|---|---|" + "---|" * len(shown)]
    for (seed, cid), row in sorted(per_image.items()):
        label = next(iter(row.values()))["true_labels"]
        cells = [f"{row[k]['psnr']:.2f} / {row[k]['ssim']:.3f}" if k in row else ""
                 for k, _ in shown]
        lines.append(f"| {seed} | {cid} | {label} | " + " | ".join(cells) + " |")
    if args.dp_noise:
        lines += ["", "(*) the paper's DP-FedAvg is per-sample DP-SGD (Opacus, epsilon 4); ours "
                  "adds Gaussian noise to the clipped client update."]
    if args.accuracy_rounds:
        lines += ["", accuracy_table(args)]
    lines += ["", f"total wall time {time.perf_counter() - t0:.0f} s (attacks: per-attack "
              "seconds above; shared machine)"]
    table = "\n".join(lines)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.picture is not None:
        first = json.loads((done[ATTACKS[0][0]][0] / "summary.json").read_text())["clients"]
        picture([(short, done[label]) for label, short, *_ in ATTACKS
                 if done[label] and seeds_done[label][0] == seeds_done[ATTACKS[0][0]][0]
                 and (done[label][0] / "summary.json").is_file()], args.picture, first)


if __name__ == "__main__":
    main()

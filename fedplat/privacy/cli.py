"""`fedplat-attack`: gradient inversion against the captured messages of a run.

    fedplat-attack RUN_DIR [--attack ig|dlg] [--round R] [--client C ...] [--iterations N]
                   [--restarts K] [--lr LR] [--tv W] [--labels auto|infer|optimise]
                   [--threat-model pkg.mod.Class] [--option key=value ...] [--seed S]
                   [--out DIR]

The run must have been trained with `capture.round=R` (fedplat.privacy.capture). For each
captured client the threat model turns the captured messages into an attack problem: the one
the run's strategy declares (`Strategy.threat_model` of the class in the saved config's
`strategy._target_`), or `--threat-model`. The attack reconstructs the batch, and the
reconstruction is scored against the true batch rebuilt from the seeded data pipeline. Results
go to `RUN_DIR/attack/<attack>_<threat model>[_<options>]/` (or --out): per client
`round_<r>_client_<c>.json` and `.png` (originals above, reconstructions below) and
`summary.json` with the means.

Exit codes: 0 done, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import torch
from omegaconf import DictConfig

from fedplat.config.compose import import_object
from fedplat.core import seeding
from fedplat.errors import UserError
from fedplat.privacy.capture import captured, load_capture
from fedplat.privacy.inversion import ATTACKS, AttackConfig, invert
from fedplat.privacy.metrics import score, to_unit
from fedplat.privacy.report import save_grid
from fedplat.privacy.threat import ThreatModel
from fedplat.privacy.truth import knowledge, run_config, true_batch
from fedplat.recording.recorder import write_json

#: Seed stream of the attacker's random guesses (its own, not the run's).
ATTACKER = 9


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit code 2."""
    print(f"fedplat-attack: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = _Parser(prog="fedplat-attack", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a fedplat run directory with captured messages")
    p.add_argument("--attack", default="ig", help=f"one of: {', '.join(ATTACKS)} (default ig)")
    p.add_argument("--round", type=int, default=None, help="captured round (default: the first)")
    p.add_argument("--client", type=int, action="append", default=None,
                   help="captured client id (repeatable; default: every captured client)")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--tv", type=float, default=1e-4, help="total-variation weight (ig)")
    p.add_argument("--labels", default="auto", help="auto | infer | optimise")
    p.add_argument("--threat-model", default=None, metavar="pkg.mod.Class",
                   help="a ThreatModel subclass (default: the one the run's strategy declares)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="threat-model option (repeatable; the threat model's OPTIONS)")
    p.add_argument("--seed", type=int, default=0, help="the attacker's seed")
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def declared_threat_model(cfg: DictConfig) -> str | None:
    """The import path of the threat model the run's strategy class declares (or None).

    The class is the one the run's saved config names (`strategy._target_`), so the answer
    follows the code, not a table to keep in step with it.
    """
    target = cfg.strategy.get("_target_")
    if target is None:
        raise UserError("the run's config names no strategy class (strategy._target_); pass "
                        "--threat-model pkg.mod.Class")
    strategy = import_object(str(target), "strategy._target_")
    declared = getattr(strategy, "threat_model", None)
    return None if declared is None else str(declared)


def threat_model(cfg: DictConfig, path: str | None, options: dict[str, str]) -> ThreatModel:
    """The threat model given by `--threat-model`, else the one the run's strategy declares."""
    if path is None:
        path = declared_threat_model(cfg)
        if path is None:
            raise UserError(f"strategy '{cfg.strategy.get('name')}' "
                            f"({cfg.strategy._target_}) declares no threat model; pass "
                            "--threat-model pkg.mod.Class")
    cls = import_object(path, "--threat-model")
    if not (isinstance(cls, type) and issubclass(cls, ThreatModel)):
        raise UserError(f"--threat-model {path} is not a fedplat.privacy.threat.ThreatModel "
                        "subclass")
    return cls(options)


def parse_options(items: Sequence[str]) -> dict[str, str]:
    """`key=value` strings to a dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--option {item!r} must look like key=value")
        out[key] = value
    return out


def attack_run(args: argparse.Namespace) -> dict[str, Any]:
    """Attack every requested capture; write and return the summary."""
    config = AttackConfig(args.attack, args.iterations, args.restarts, args.lr, args.tv,
                          args.labels, args.seed)
    run_dir = args.run_dir
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    cfg = run_config(run_dir)
    available = captured(run_dir)
    if not available:
        raise UserError(f"no captured messages in {run_dir}: train with capture.round=R "
                        "capture.clients=[...] capture.num_samples=B (docs/privacy.md)")
    server_round = args.round if args.round is not None else next(iter(available))
    load_capture(run_dir, server_round)  # checks the round
    clients = args.client or available[server_round]
    options = parse_options(args.option)
    threat = threat_model(cfg, args.threat_model, options)
    for cid in clients:
        load_capture(run_dir, server_round, cid)
    if args.threads:
        torch.set_num_threads(args.threads)
    know = knowledge(cfg)
    suffix = "".join(f"_{k}-{v}" for k, v in sorted(options.items()))
    out = args.out or run_dir / "attack" / f"{config.attack}_{threat.name}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for cid in clients:
        cap = load_capture(run_dir, server_round, cid)
        gen = seeding.torch_generator(config.seed, ATTACKER, server_round, cid)
        problem = threat.build(cap, know, gen)

        def progress(restart: int, it: int, dist: float, cid: int = cid) -> None:
            if not args.quiet:
                print(f"  client {cid} restart {restart} iteration {it:>5}: mismatch "
                      f"{dist:.5f}", flush=True)

        rec = invert(problem, know, config, progress)
        x_true, y_true = true_batch(cfg, cap)
        metrics = score(rec.x, rec.labels, x_true, y_true, know.low, know.high)
        result = {"run_dir": str(run_dir), "round": server_round, "client": cid,
                  "strategy": str(cfg.strategy.name), "threat_model": threat.name,
                  "options": threat.options, "attack": asdict(config),
                  "num_images": problem.num_images, "assumptions": problem.assumptions,
                  "true_labels": y_true.tolist(), "labels": rec.labels.tolist(),
                  "labels_inferred": rec.labels_inferred, "mismatch": rec.distance,
                  "restart_mismatch": rec.restart_distances, "seconds": rec.seconds,
                  **metrics}
        stem = out / f"round_{server_round}_client_{cid}"
        write_json(stem.with_suffix(".json"), result)
        perm = torch.as_tensor(metrics["pairing"])
        recon = to_unit(rec.x, know.low, know.high)[perm]
        caps = [f"{p:.1f} dB" for p in metrics["psnr_per_image"]]
        save_grid([("original", to_unit(x_true, know.low, know.high)),
                   ("reconstructed", recon)], stem.with_suffix(".png"),
                  f"{config.attack} vs {cfg.strategy.name}, round {server_round}, "
                  f"client {cid}: PSNR "
                  f"{metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}", caps)
        torch.save({"x": rec.x, "labels": rec.labels}, stem.with_suffix(".pt"))
        results.append(result)
        print(f"client {cid}: PSNR {metrics['psnr']:6.2f} dB  SSIM {metrics['ssim']:.4f}  "
              f"labels {metrics['label_recovery']:.2f}  mismatch {rec.distance:.4f}  "
              f"{rec.seconds:.1f} s", flush=True)

    def mean(key: str) -> float:
        vals = [float(r[key]) for r in results if not math.isnan(float(r[key]))]
        return sum(vals) / len(vals) if vals else math.nan

    summary = {"run_dir": str(run_dir), "round": server_round, "clients": clients,
               "strategy": str(cfg.strategy.name), "threat_model": threat.name,
               "options": threat.options, "attack": asdict(config),
               "psnr": mean("psnr"), "ssim": mean("ssim"),
               "label_recovery": mean("label_recovery"),
               "per_client": {str(r["client"]): {k: r[k] for k in
                                                 ("psnr", "ssim", "label_recovery", "mismatch")}
                              for r in results}}
    write_json(out / "summary.json", summary)
    print(f"mean over {len(results)} client(s): PSNR {summary['psnr']:.2f} dB  SSIM "
          f"{summary['ssim']:.4f}  labels {summary['label_recovery']:.2f}  -> {out}", flush=True)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of `fedplat-attack`."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    args = parser().parse_args(argv)
    try:
        attack_run(args)
    except UserError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()

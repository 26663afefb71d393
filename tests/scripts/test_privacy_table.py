"""scripts/privacy_table.py: restarts split over processes, merged by the attacker's criterion."""

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import privacy_table as pt


def _part(root: Path, name: str, seed: int, per_client: dict[int, tuple[float, float]]) -> Path:
    """An attack directory as fedplat-attack writes it: client -> (mismatch, psnr)."""
    d = root / name
    d.mkdir(parents=True)
    for cid, (mismatch, psnr) in per_client.items():
        stem = d / f"round_5_client_{cid}"
        result = {"client": cid, "round": 5, "mismatch": mismatch, "psnr": psnr,
                  "ssim": psnr / 100, "label_recovery": 1.0, "seconds": 10.0 + seed,
                  "restart_mismatch": [mismatch], "true_labels": [cid],
                  "attack": {"attack": "ig", "restarts": 1, "seed": seed}}
        stem.with_suffix(".json").write_text(json.dumps(result))
        stem.with_suffix(".png").write_bytes(f"png {seed} {cid}".encode())
        torch.save({"x": torch.full((1, 1, 2, 2), float(seed))}, stem.with_suffix(".pt"))
    (d / "summary.json").write_text(json.dumps({"round": 5, "clients": list(per_client),
                                                "strategy": "hyperfl"}))
    return d


def test_merge_keeps_per_client_the_restart_of_lowest_mismatch_not_of_best_psnr(tmp_path):
    parts = [_part(tmp_path, "a0", 0, {0: (0.5, 12.0), 1: (0.2, 9.0)}),
             _part(tmp_path, "a1", 1, {0: (0.1, 8.0), 1: (0.3, 20.0)}),
             _part(tmp_path, "a2", 2, {0: (0.4, 30.0), 1: (0.25, 7.0)})]
    out = tmp_path / "merged"
    pt.merge_restarts(parts, out)
    c0 = json.loads((out / "round_5_client_0.json").read_text())
    c1 = json.loads((out / "round_5_client_1.json").read_text())
    # the mismatch decides (what an attacker sees), never the PSNR (needs the true image)
    assert (c0["chosen_restart"], c0["psnr"]) == (1, 8.0)
    assert (c1["chosen_restart"], c1["psnr"]) == (0, 9.0)
    assert c0["restart_mismatch"] == [0.5, 0.1, 0.4]
    assert c0["restart_psnr"] == [12.0, 8.0, 30.0]
    assert c0["seconds"] == 10.0 + 11.0 + 12.0          # the attack's whole cost
    assert c0["attack"]["restarts"] == 3 and c0["attack"]["seed"] == [0, 1, 2]
    assert (out / "round_5_client_0.png").read_bytes() == b"png 1 0"
    assert float(torch.load(out / "round_5_client_1.pt")["x"].flatten()[0]) == 0.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["psnr"] == pytest.approx((8.0 + 9.0) / 2)
    assert summary["per_client"]["0"]["chosen_restart"] == 1
    assert summary["attack"]["split_restarts"] is True


def test_split_restarts_run_one_process_per_seed_and_skip_finished_ones(tmp_path, monkeypatch):
    run_dir = tmp_path / "hyperfl_seed0"
    (run_dir / "attack").mkdir(parents=True)
    # restart 1 finished in an earlier call: it is not run again
    _part(run_dir / "attack", "ig_hyperfl_attacker_seed1", 1, {0: (0.05, 15.0)})
    writer = tmp_path / "fake_attack.py"
    writer.write_text(
        "import json, sys, torch\n"
        "from pathlib import Path\n"
        "out, seed = Path(sys.argv[1]), int(sys.argv[2])\n"
        "out.mkdir(parents=True)\n"
        "stem = out / 'round_5_client_0'\n"
        "stem.with_suffix('.json').write_text(json.dumps({'client': 0, 'mismatch': 0.1 + seed,"
        " 'psnr': 10.0 + seed, 'ssim': 0.1, 'label_recovery': 0.0, 'seconds': 1.0,"
        " 'attack': {'restarts': 1, 'seed': seed}}))\n"
        "stem.with_suffix('.png').write_bytes(b'x')\n"
        "torch.save({'x': torch.zeros(1)}, stem.with_suffix('.pt'))\n"
        "(out / 'summary.json').write_text(json.dumps({'clients': [0]}))\n")
    calls = []

    def fake_cmd(run_dir, out, options, args, restarts, seed):
        calls.append((out.name, restarts, seed))
        return [sys.executable, str(writer), str(out), str(seed)]

    monkeypatch.setattr(pt, "attack_cmd", fake_cmd)
    args = argparse.Namespace(only_existing=False, split_restarts=["hyperfl"], restarts=3,
                              jobs=2)
    out = pt.attack(run_dir, [], args)
    assert out == run_dir / "attack" / "ig_hyperfl"
    assert sorted(calls) == [("ig_hyperfl_attacker_seed0", 1, 0),
                             ("ig_hyperfl_attacker_seed2", 1, 2)]
    merged = json.loads((out / "round_5_client_0.json").read_text())
    assert merged["chosen_restart"] == 1 and merged["psnr"] == 15.0
    assert merged["restart_mismatch"] == [0.1, 0.05, 2.1]


def test_a_failed_restart_stops_the_table_with_its_command(tmp_path, monkeypatch):
    run_dir = tmp_path / "hyperfl_seed0"
    (run_dir / "attack").mkdir(parents=True)
    monkeypatch.setattr(pt, "attack_cmd", lambda *a: [sys.executable, "-c", "raise SystemExit(3)"])
    args = argparse.Namespace(only_existing=False, split_restarts=["hyperfl"], restarts=3,
                              jobs=2)
    with pytest.raises(SystemExit, match="an attack failed"):
        pt.attack(run_dir, [], args)
    assert not (run_dir / "attack" / "ig_hyperfl" / "summary.json").exists()

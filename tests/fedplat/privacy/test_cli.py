"""`fedplat-attack` end to end: the harness recovers an image from a real FedAvg upload, bad
input is one line with exit code 2, and the threat model is the one the run's strategy
declares unless --threat-model says otherwise."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from attacks.fedavg import FedAvgThreat
from attacks.hyperfl import HyperFLThreat
from attacks.pfedhn import PFedHNThreat
from fedplat.config.tree import CONF_DIR
from fedplat.errors import UserError
from fedplat.privacy.cli import declared_threat_model, main, threat_model
from fedplat.privacy.threat import ThreatModel
from tests.helpers import run_inline

DIGITS = ("dataset=digits", "num_clients=3", "num_rounds=1", "simulation.torch_threads=1",
          "client.local_epochs=1", "capture.round=1")


@pytest.fixture(scope="module")
def fedavg_run(tmp_path_factory):
    """FedAvg on 8x8 digits, a small MLP; client 0's round-1 upload captured on one image."""
    path = tmp_path_factory.mktemp("fedavg-run")
    run_inline(path, *DIGITS, "model=mlp", "model.hidden=[32]", "capture.clients=[0]",
               "capture.num_samples=1")
    return path


def test_inverting_gradients_recovers_one_image_from_a_fedavg_update(fedavg_run, tmp_path):
    out = tmp_path / "ig"
    main([str(fedavg_run), "--iterations", "300", "--lr", "0.05", "--quiet", "--threads", "1",
          "--out", str(out)])
    result = json.loads((out / "round_1_client_0.json").read_text())
    assert result["psnr"] > 30.0 and result["ssim"] > 0.99
    assert result["label_recovery"] == 1.0 and result["labels_inferred"]
    assert result["mismatch"] < 1e-3
    assert (out / "round_1_client_0.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clients"] == [0] and summary["psnr"] == pytest.approx(result["psnr"])
    saved = torch.load(out / "round_1_client_0.pt")
    assert saved["x"].shape == (1, 1, 8, 8)


def test_dlg_also_recovers_it(fedavg_run, tmp_path):
    main([str(fedavg_run), "--attack", "dlg", "--iterations", "100", "--lr", "1", "--quiet",
          "--threads", "1", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "summary.json").read_text())["psnr"] > 30.0


def test_default_output_directory_names_attack_and_threat_model(fedavg_run):
    main([str(fedavg_run), "--iterations", "5", "--quiet", "--threads", "1"])
    assert (fedavg_run / "attack" / "ig_fedavg" / "summary.json").is_file()


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_bad_input_is_one_line_and_exit_2(fedavg_run, tmp_path, capsys):
    run = str(fedavg_run)
    assert "unknown attack 'foo'" in _error(capsys, [run, "--attack", "foo"])
    assert "does not exist" in _error(capsys, [str(tmp_path / "nope")])
    assert "not a fedplat run directory" in _error(capsys, [str(tmp_path)])
    assert "no capture of round 2" in _error(capsys, [run, "--round", "2"])
    assert "client 1 was not captured" in _error(capsys, [run, "--client", "1"])
    assert "--threat-model='nope' is not an import path" in _error(
        capsys, [run, "--threat-model", "nope"])
    assert "cannot import attacks.nope" in _error(
        capsys, [run, "--threat-model", "attacks.nope.Threat"])
    assert "fedplat.errors.UserError is not a fedplat.privacy.threat.ThreatModel" in _error(
        capsys, [run, "--threat-model", "fedplat.errors.UserError"])
    assert "must look like key=value" in _error(capsys, [run, "--option", "init"])
    assert "has no option 'init'" in _error(capsys, [run, "--option", "init=public"])
    assert "invalid int value" in _error(capsys, [run, "--iterations", "many"])


def test_run_without_capture_and_strategy_without_threat_model(tmp_path, capsys):
    plain = tmp_path / "plain"
    run_inline(plain, *DIGITS[:-1], "model=mlp", "model.hidden=[4]")
    assert "no captured messages" in _error(capsys, [str(plain)])
    local = tmp_path / "local"
    run_inline(local, *DIGITS, "strategy=local", "model=mlp", "model.hidden=[4]")
    assert _error(capsys, [str(local)]) == (
        "fedplat-attack: error: strategy 'local' (strategies.local.Local) declares no threat "
        "model; pass --threat-model pkg.mod.Class")


def test_the_attack_itself_never_touches_client_data(fedavg_run, monkeypatch):
    """Threat model and attack run with every client's data access made to fail."""
    from attacks.fedavg import FedAvgThreat
    from fedplat.data import FederatedDataset
    from fedplat.privacy.capture import load_capture
    from fedplat.privacy.inversion import AttackConfig, invert
    from fedplat.privacy.truth import knowledge, run_config

    know = knowledge(run_config(fedavg_run))

    def forbidden(self, cid):
        raise AssertionError("the attack read client data")

    monkeypatch.setattr(FederatedDataset, "client", forbidden)
    problem = FedAvgThreat().build(load_capture(fedavg_run), know, torch.Generator())
    rec = invert(problem, know, AttackConfig(iterations=3))
    assert rec.x.shape == (1, 1, 8, 8)


#: The threat model each strategy declares (every strategy not listed declares none).
DECLARED = {
    "fedavg": "attacks.fedavg.FedAvgThreat",
    "dp_fedavg": "attacks.fedavg.FedAvgThreat",  # the attacker ignores clipping and noise
    "pfedhn": "attacks.pfedhn.PFedHNThreat",
    "pfedhn_pc": "attacks.pfedhn.PFedHNThreat",  # the private head is an unknown
    "hyperfl": "attacks.hyperfl.HyperFLThreat",
}
#: Strategies with a server class (the peer-to-peer scenario's decavg has none).
STRATEGIES = sorted(p.stem for p in (CONF_DIR / "strategy").glob("*.yaml")
                    if "_target_" in OmegaConf.load(p))


def _strategy_cfg(name):
    return OmegaConf.create({"strategy": OmegaConf.load(CONF_DIR / "strategy" / f"{name}.yaml")})


@pytest.mark.parametrize("name", STRATEGIES)
def test_each_strategy_declares_its_threat_model(name):
    declared = declared_threat_model(_strategy_cfg(name))
    assert declared == DECLARED.get(name)
    if declared is not None:
        cls = threat_model(_strategy_cfg(name), None, {})
        assert isinstance(cls, ThreatModel) and type(cls).__name__ == declared.rpartition(".")[2]


def test_a_strategy_without_a_server_class_is_one_line():
    with pytest.raises(UserError, match="names no strategy class"):
        declared_threat_model(_strategy_cfg("decavg"))


def test_every_declared_strategy_exists():
    assert set(DECLARED) <= set(STRATEGIES)


def test_threat_model_option_overrides_the_declared_one_and_options_reach_it():
    hyperfl = _strategy_cfg("hyperfl")
    assert type(threat_model(hyperfl, None, {})) is HyperFLThreat
    assert threat_model(hyperfl, None, {"init": "public"}).options == {"init": "public"}
    assert type(threat_model(hyperfl, "attacks.pfedhn.PFedHNThreat", {})) is PFedHNThreat
    # a strategy that declares none can still be attacked with an explicit one
    assert type(threat_model(_strategy_cfg("local"), "attacks.fedavg.FedAvgThreat", {})) \
        is FedAvgThreat
    with pytest.raises(UserError, match="has no option 'init'"):
        threat_model(_strategy_cfg("fedavg"), None, {"init": "public"})


def test_a_config_without_a_strategy_class_asks_for_the_option():
    cfg = OmegaConf.create({"strategy": {"name": "custom"}})
    with pytest.raises(UserError, match=r"names no strategy class .*--threat-model"):
        threat_model(cfg, None, {})

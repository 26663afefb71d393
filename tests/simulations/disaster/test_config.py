"""The disaster scenario's config hook: bad input is one line (exit 2 on the CLI), nothing run."""

import pytest
from omegaconf import OmegaConf

from fedplat.cli import main
from fedplat.config.compose import compose, prepare
from fedplat.errors import UserError
from simulations.disaster import validate_config

P2P = ["scenario=disaster", "p2p.backend=local", "num_clients=10", "num_rounds=5"]


def _edges(tmp_path):
    f = tmp_path / "edges.txt"
    f.write_text("0 1\n1 2\n2 12\n")
    return f


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["topology.m=10"], "topology.m=10 is out of range for barabasi_albert: must be in "
                            "[1, 9] (Barabasi-Albert needs 1 <= m < n"),
        (["disruption.events=[{round: 2, type: node_drop, select: random, fraction: 1.5}]"],
         "disruption.events[0].fraction=1.5 is out of range: must be in [0.0, 1.0]"),
        (["disruption.events=[{round: 2, type: link_drop, fraction: -0.2}]"],
         "disruption.events[0].fraction=-0.2 is out of range"),
        (["topology.type=edge_list", "topology.path=EDGES"],
         "edges.txt:3: edge names unknown node 12; the network has nodes 0..9"),
        (["disruption.events=[{round: 9, type: node_drop, select: top_degree, count: 1}]"],
         "disruption.events[0].round=9 is beyond the run (num_rounds=5)"),
        (["disruption.events=[{round: 2, type: node_drop, select: random, fraction: 1.0}]"],
         "leaving none; lower its fraction/count or set disruption.allow_empty=true"),
        (["topology.n=12"], "topology.n=12 differs from num_clients=10"),
        (["strategy.weights=median"], "strategy.weights='median' is not valid"),
        (["p2p.order=random"], "p2p.order='random' is not valid"),
    ],
)
def test_bad_p2p_input_one_line_exit_2(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [a.replace("EDGES", str(_edges(tmp_path))) for a in args]
    with pytest.raises(SystemExit) as info:
        main([*P2P, *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fedplat: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_decavg_needs_the_p2p_scenario(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["strategy=decavg"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "strategy=decavg runs with scenario=disaster, not scenario=centralized: add " \
           "scenario=disaster" in err
    assert err.count("\n") == 1


def test_p2p_scenario_rejects_a_centralized_strategy(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*P2P, "strategy=fedavg"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "strategy=fedavg is centralized: use strategy=decavg" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "outputs").exists()  # refused by validation: no run directory


def test_the_scenario_composes_and_validates_without_strategy_classes():
    cfg = prepare(compose(P2P))
    assert cfg.strategy.name == "decavg" and cfg.scenario.runner == "simulations.disaster.run"
    assert "_target_" not in cfg.strategy and "client_target" not in cfg.strategy
    assert (cfg.strategy.weights, cfg.strategy.zero_data_fallback) == ("uniform", "uniform")
    assert cfg.topology.n == cfg.num_clients == 10


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("strategy.zero_data_fallback", "average",
         "strategy.zero_data_fallback='average' is not valid (choose from: uniform, keep_own)"),
        ("strategy.common_init", "yes", "strategy.common_init='yes' must be true or false"),
        ("placement.relay_select", "central", "placement.relay_select='central' is not valid"),
        ("placement.test_fraction", 1.0, "placement.test_fraction=1.0 is out of range"),
        ("p2p.num_workers", 0, "p2p.num_workers=0 is out of range: must be in [1, inf]"),
        ("p2p.worker_exit.round", 6, "p2p.worker_exit.round=6 is out of range: must be in "
                                     "[1, 5]"),
        ("placement.relay_fraction", 0.95, "every node would be a relay (10 of 10)"),
    ],
)
def test_the_hook_refuses_a_bad_key_with_one_user_error(key, value, message):
    cfg = prepare(compose(P2P))
    OmegaConf.update(cfg, key, value)
    with pytest.raises(UserError) as info:
        validate_config(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_good_config_passes_the_hook_and_a_missing_group_is_named():
    cfg = prepare(compose(P2P))
    assert validate_config(cfg) is None
    OmegaConf.set_struct(cfg, False)
    del cfg["disruption"]
    with pytest.raises(UserError, match=r"missing config key 'disruption.events' "
                                        r"\(conf/scenario/disaster.yaml defines it\)"):
        validate_config(cfg)

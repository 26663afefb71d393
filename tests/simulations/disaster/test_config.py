"""Bad input to `fedplat scenario=disaster`: one line on stderr, exit code 2, nothing run."""

import pytest

from fedplat.cli import main

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
    assert "strategy=decavg is peer-to-peer learning: run it with scenario=disaster" in (
        capsys.readouterr().err)


def test_p2p_scenario_rejects_a_centralized_strategy(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*P2P, "strategy=fedavg", f"hydra.run.dir={tmp_path}/run"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "strategy=fedavg is centralized: use strategy=decavg" in err
    assert err.count("\n") == 1

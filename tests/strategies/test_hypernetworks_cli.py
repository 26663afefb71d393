"""The issue's bad inputs for the hypernetwork methods, through the real command line.

The per-strategy tests check the UserError messages of `validate_config`; this checks that the
`fedplat` entry point turns them into one line on stderr and exit code 2 before any run starts.
"""

import os

import pytest

from fedplat.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["strategy=pfedhn", "strategy.hypernet.embed_dim=0"],
         "strategy.hypernet.embed_dim=0 must be"),
        (["strategy=pfedhn_pc", "strategy.hypernet.hidden=-1"],
         "strategy.hypernet.hidden=-1 must be"),
        (["strategy=hyperfl", "strategy.hypernet.embed_dim=-3"],
         "strategy.hypernet.embed_dim=-3 must be"),
        (["strategy=hyperfl", "strategy.hypernet.hidden=0"], "strategy.hypernet.hidden=0 must be"),
        (["strategy=pefll", "strategy.hypernet.hidden=0"], "strategy.hypernet.hidden=0 must be"),
        # targets the hypernetwork cannot generate
        (["strategy=hyperfl", "model=mlp", "model.hidden=[]"], "single layer"),
        (["strategy=pfedhn", "strategy.hypernet.max_params=1000"],
         "above strategy.hypernet.max_params"),
        (["strategy=pefll", "dataset=digits", "model=lenet"],
         "model 'lenet' cannot take the 1x8x8 inputs"),
        # PeFLL's unseen share outside [0, 1)
        (["strategy=pefll", "strategy.unseen_fraction=1.0"],
         "strategy.unseen_fraction=1.0 is out of range"),
        (["strategy=pefll", "strategy.unseen_fraction=-0.2"],
         "strategy.unseen_fraction=-0.2 is out of range"),
    ],
)
def test_bad_input_one_line_exit_2(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(os.environ.get("TMPDIR", "/tmp"))
    with pytest.raises(SystemExit) as info:
        main([*args, "simulation.backend=inline", f"hydra.run.dir={tmp_path}/run"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fedplat: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # rejected before anything ran

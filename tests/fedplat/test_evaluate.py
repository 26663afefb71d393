"""`fedplat evaluate`: a saved checkpoint evaluated under another protocol, without training."""

import json
import os

import pytest

from fedplat.cli import main
from fedplat.errors import UserError
from fedplat.evaluate import EVALUATIONS_DIR, RESULT_FILE, evaluate
from fedplat.recording import checkpoint
from fedplat.recording.recorder import without_timing
from tests.helpers import run_inline

#: PeFLL on MNIST-1D, 4 clients with 2 classes each (one unseen), 3 rounds, a tiny MLP and
#: hypernetwork, the inline backend: a couple of seconds per run.
PEFLL = ("strategy=pefll", "num_clients=4", "dataset.num_samples=600",
         "partition=pathological", "partition.classes_per_client=2", "model=mlp",
         "model.hidden=[8]", "num_rounds=3", "eval_every=3", "strategy.inner_steps=3",
         "strategy.clients_per_round=2", "strategy.unseen_fraction=0.25",
         "strategy.hypernet.hidden=8", "strategy.hypernet.n_hidden=1",
         "simulation.torch_threads=1", "seed=0")


def _eval_numbers(row):
    """The evaluation's numbers of a row: no timing, no training keys."""
    out = {k: v for k, v in without_timing([row])[0].items()
           if "train" not in k and k != "per_client"}
    out["per_client"] = {c: {k: v for k, v in m.items() if "train" not in k}
                         for c, m in row["per_client"].items()}
    return out


def _as_in(got, full_row):
    """`full_row`'s numbers for the keys the evaluation reported (per client as well)."""
    want = _eval_numbers(full_row)
    out = {k: v for k, v in want.items() if k in got and k != "per_client"}
    out["per_client"] = {c: {k: v for k, v in want["per_client"][c].items()
                             if k in got["per_client"][c]} for c in got["per_client"]}
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A PeFLL run with the default mask (neg_inf), checkpointed; one made with mask none."""
    base = tmp_path_factory.mktemp("evaluate")
    masked, _ = run_inline(base / "masked", *PEFLL, "checkpoint_every=2")
    _, unmasked_rows = run_inline(base / "unmasked", *PEFLL, "strategy.mask_absent=none")
    return base, masked, unmasked_rows


def test_checkpoint_under_a_second_protocol_equals_a_full_run_under_it(trained):
    base, masked, unmasked_rows = trained
    run_dir = base / "masked"
    assert checkpoint.latest(run_dir)[0] == 3  # the final round is checkpointed too
    before = {p: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}

    result, out = evaluate(run_dir, ["strategy.mask_absent=none"])
    assert out.parent == run_dir / EVALUATIONS_DIR and out.name.endswith("_mask_absent=none")
    assert result["checkpoint_round"] == 3
    row = result["metrics"]
    expected = unmasked_rows[-1]
    assert row["round"] == expected["round"] == 3
    got = _eval_numbers(row)
    assert got == _as_in(got, expected)
    assert "test_accuracy" in got and len(got["per_client"]) == 4
    assert all("test_accuracy" in m for m in got["per_client"].values())
    # the option matters here: the run's own (masked) final evaluation differs
    assert masked["final"]["accuracy"] != row["test_accuracy"]
    # and re-evaluating under the run's own protocol gives the run's numbers
    same, _ = evaluate(run_dir, [])
    assert same["metrics"]["test_accuracy"] == masked["final"]["accuracy"]
    # nothing of the run's own files changed; the result is on disk
    assert {p: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    saved = json.loads((out / RESULT_FILE).read_text())
    assert saved["metrics"]["test_accuracy"] == row["test_accuracy"]
    assert json.loads((out / "summary.json").read_text())["data"]["dataset"] == "mnist1d"


@pytest.mark.parametrize(("args", "message"), [
    (["seed=1"], "fedplat evaluate: seed would change training or the saved state, not only "
                 "evaluation; train a new run for it (evaluation-only keys of strategy pefll: "
                 "strategy.mask_absent)"),
    (["dataset.root=/x"], "dataset.root would change training"),
    (["strategy.lr=0.1"], "strategy.lr would change training"),
    (["mask_absent"], "'mask_absent' is not KEY=VALUE"),
    (["strategy.mask_absent=sometimes"], "strategy.mask_absent='sometimes' is not valid"),
])
def test_bad_input_is_one_line_and_exit_2(trained, args, message, capsys, monkeypatch):
    base, _, _ = trained
    monkeypatch.chdir(os.environ.get("TMPDIR", "/tmp"))
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(base / "masked"), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fedplat: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_run_without_checkpoint_or_without_evaluation_keys_is_refused(tmp_path):
    run_inline(tmp_path / "plain", "num_rounds=1", "num_clients=2")
    with pytest.raises(UserError, match=r"has no checkpoint; start the run with "
                                        r"checkpoint_every=N"):
        evaluate(tmp_path / "plain", [])
    with pytest.raises(UserError, match=r"is not a run directory \(no config.yaml\)"):
        evaluate(tmp_path / "nothing", [])
    run_inline(tmp_path / "ckpt", "num_rounds=1", "num_clients=2", "checkpoint_every=1")
    with pytest.raises(UserError, match=r"strategy fedavg declares no evaluation-only key"):
        evaluate(tmp_path / "ckpt", ["strategy.server_lr=2"])


def test_console_entry_prints_the_block(trained, capsys, monkeypatch):
    base, _, unmasked_rows = trained
    monkeypatch.chdir(os.environ.get("TMPDIR", "/tmp"))
    main(["evaluate", str(base / "masked"), "strategy.mask_absent=none"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"fedplat evaluate: pefll on mnist1d (4 clients), checkpoint of round 3 "
                      f"of {base / 'masked'}")
    assert out[1] == "  overrides     strategy.mask_absent=none"
    acc = unmasked_rows[-1]["test_accuracy"]
    assert out[2].startswith(f"  accuracy      {100 * acc:.2f}% (mean over clients ")
    assert out[-2].startswith("  data          mnist1d generated by mnist1d (num_samples=600")
    assert out[-1].startswith(f"  results       {base / 'masked' / EVALUATIONS_DIR}/")


#: HyperFL on MNIST-1D, 3 clients, 2 rounds, tiny hypernetwork.
HYPERFL = ("strategy=hyperfl", "num_clients=3", "dataset.num_samples=450", "model=mlp",
           "model.hidden=[8]", "num_rounds=2", "eval_every=2", "strategy.local_epochs=1",
           "strategy.hypernet.hidden=8", "strategy.hypernet.embed_dim=4",
           "simulation.torch_threads=1", "seed=0")


def test_hyperfl_stale_run_evaluated_fresh_equals_a_fresh_run_and_not_back(tmp_path):
    run_inline(tmp_path / "stale", *HYPERFL, "strategy.stale_eval=true",
               "checkpoint_every=5")
    _, fresh_rows = run_inline(tmp_path / "fresh", *HYPERFL, "checkpoint_every=5")
    result, _ = evaluate(tmp_path / "stale", ["strategy.stale_eval=false"])
    got = _eval_numbers(result["metrics"])
    assert got == _as_in(got, fresh_rows[-1])
    assert "test_accuracy" in got
    # a run that never kept the stale extractor cannot be evaluated with it
    with pytest.raises(UserError, match=r"strategy.stale_eval=true evaluates the extractor of "
                                        r"the last training pass.*this run was not"):
        evaluate(tmp_path / "fresh", ["strategy.stale_eval=true"])

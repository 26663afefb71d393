"""Every user mistake, through every command line: exit code 2, one line, no traceback, a hint.

Each case feeds one mistake to a console entry point in-process (`main(argv)`), the way a user
would type it, and checks the answer: exit code 2, exactly one line on stderr that starts with
`<program>: error: `, no traceback, and the hint the case names (the key or value and what is
valid). Two cases also go through the installed console scripts in a subprocess, to show the
real programs answer the same.

docs/mistakes.md is the table of these cases and their answers. It is checked against what the
code says (`test_the_table_in_docs_is_what_the_code_says`); after changing a message, rewrite it
with

    FEDPLAT_WRITE_MISTAKES=1 python -m pytest tests/fedplat/test_mistakes.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "mistakes.md"
WRITE = os.environ.get("FEDPLAT_WRITE_MISTAKES") == "1"
#: What the answer to the run directories' broken config.yaml says.
BROKEN_YAML = "corrupt_config/config.yaml (line 2, column 1): expected"
#: A directory nobody may create anything in (EPERM for root, EACCES for others).
UNWRITABLE = "/sys/fedplat-out"


@dataclass(frozen=True)
class Case:
    """One mistake: the program, its arguments ({tmp}, {run}, ... are filled in) and the hint
    the one-line answer must contain."""

    program: str
    args: tuple[str, ...]
    hint: str

    @property
    def id(self) -> str:
        return f"{self.program} {' '.join(self.args)}".strip()


def c(program: str, args: str | tuple[str, ...], hint: str) -> Case:
    return Case(program, tuple(args.split()) if isinstance(args, str) else args, hint)


CASES: list[Case] = [
    # -- fedplat: unknown names ----------------------------------------------------------------
    c("fedplat", "strategy=fedavgg", "unknown strategy 'fedavgg' (choose from: decavg,"),
    c("fedplat", "dataset=imagenet", "unknown dataset 'imagenet' (choose from: "),
    c("fedplat", "logger=tensorbord", "unknown logger 'tensorbord' (choose from: mlflow, tensorb"),
    c("fedplat", "logger=[tensorboard,mlflo]", "unknown logger 'mlflo'"),
    c("fedplat", ("logger=mlflow", "logger.mlflow.run_name=[1]"),
      "logger.mlflow.run_name=[1] must be a "),
    c("fedplat", "model=resnet999",
      "unknown model 'resnet999' (choose from: auto, char_lstm, cnn,"),
    c("fedplat", "partition=random", "unknown partition 'random' (choose from: by_class,"),
    c("fedplat", "client=fast", "unknown client 'fast' (choose from: default, graph)"),
    c("fedplat", "simulation=gpu", "unknown simulation 'gpu' (choose from: default)"),
    c("fedplat", "scenario=p2p", "unknown scenario 'p2p' (choose from: centralized, disaster)"),
    c("fedplat", "experiment=nosuch", "unknown experiment 'nosuch' (choose from: cifar10_fedavg,"),
    c("fedplat", "-m strategy=fedavg,fedavgg", "unknown strategy 'fedavgg'"),
    # -- fedplat: mistyped keys ----------------------------------------------------------------
    c("fedplat", "num_clientz=3", "unknown config key num_clientz=3; did you mean num_clients=3"),
    c("fedplat", "client.lrr=0.1", "unknown config key client.lrr=0.1; did you mean client.lr="),
    c("fedplat", "lr=0.1", "did you mean client.lr=0.1?"),
    c("fedplat", "strategy.fraction_fit=0.5", "did you mean strategy.fraction_train=0.5?"),
    c("fedplat", "simulation.round_timout=5", "did you mean simulation.round_timeout=5?"),
    c("fedplat", "client.foo=1", "unknown config key client.foo=1 (valid keys under client: "),
    c("fedplat", "foo.bar=1", "(there is no 'foo' section); +foo.bar=... adds a key"),
    c("fedplat", "+num_clients=3", "num_clients exists; change it with num_clients=VALUE"),
    c("fedplat", "seed=[1,2", "cannot parse the overrides"),
    # -- fedplat: values out of range or of the wrong type -------------------------------------
    c("fedplat", "num_rounds=0", "num_rounds=0 is out of range: must be in [1, inf]"),
    c("fedplat", "num_rounds=abc", "num_rounds='abc' must be an integer"),
    c("fedplat", "num_rounds=2.5", "num_rounds=2.5 must be an integer"),
    c("fedplat", "num_rounds=", "num_rounds='' must be an integer"),
    c("fedplat", "num_clients=0", "num_clients=0 is out of range: must be in [1, inf]"),
    c("fedplat", "num_clients=5001", "num_clients=5001 exceeds the 5000 samples of dataset"),
    c("fedplat", "seed=-1", "seed=-1 is out of range: must be in [0, 4294967295]"),
    c("fedplat", "seed=4294967296", "seed=4294967296 is out of range"),
    c("fedplat", "eval_every=0", "eval_every=0 is out of range: must be in [1, inf]"),
    c("fedplat", "checkpoint_every=-1", "checkpoint_every=-1 is out of range"),
    c("fedplat", "strategy.fraction_train=1.5", "strategy.fraction_train=1.5 is out of range"),
    c("fedplat", "strategy.fraction_train=0", "strategy.fraction_train=0 is out of range"),
    c("fedplat", "strategy.fraction_evaluate=-0.1", "strategy.fraction_evaluate=-0.1 is out of"),
    c("fedplat", "strategy.min_train_clients=11", "strategy.min_train_clients=11 is out of range"),
    c("fedplat", "client.lr=-1", "client.lr=-1 is out of range: must be in (0.0, inf]"),
    c("fedplat", "client.lr=abc", "client.lr='abc' must be a finite number"),
    c("fedplat", "client.lr=nan", "client.lr=nan must be a finite number"),
    c("fedplat", "client.momentum=1", "client.momentum=1 is out of range"),
    c("fedplat", "client.optimizer=rmsprop", "client.optimizer='rmsprop' is not valid (choose"),
    c("fedplat", "client.batch_size=0", "client.batch_size=0 is out of range"),
    c("fedplat", "client.local_epochs=0", "client.local_epochs=0 is out of range"),
    c("fedplat", "client.amp=fp8", "client.amp='fp8' is not valid (choose from: none, bf16,"),
    c("fedplat", "client.amp=fp16", "client.amp=fp16 needs CUDA clients"),
    c("fedplat", "split.val=1.5", "split.val=1.5 is out of range"),
    c("fedplat", "split.val=0.5 split.test=0.5", "leaves no training data; keep their sum below 1"),
    c("fedplat", "simulation.backend=dask", "simulation.backend='dask' is not valid (choose"),
    c("fedplat", "simulation.round_timeout=-5", "simulation.round_timeout=-5 is out of range"),
    c("fedplat", "simulation.node_wait_s=-1", "simulation.node_wait_s=-1 is out of range"),
    c("fedplat", "simulation.num_cpus=0", "simulation.num_cpus=0 is out of range"),
    c("fedplat", "simulation.clients_per_node=0", "expected 'auto' or an integer >= 1"),
    c("fedplat", "simulation.clients_per_node=many", "expected 'auto' or an integer >= 1"),
    c("fedplat", "simulation.batched=maybe", "simulation.batched=maybe: expected true or false"),
    c("fedplat", "simulation.share_data=maybe", "simulation.share_data=maybe: expected true or"),
    c("fedplat", "faults.crash_prob=2", "faults.crash_prob=2 is out of range: must be in [0.0,"),
    c("fedplat", "faults.crash_clients=[99]", "faults.crash_clients holds 99, outside [0, 9]"),
    c("fedplat", "faults.slow_delay_s=-1", "faults.slow_delay_s=-1 is out of range"),
    c("fedplat", "partition=dirichlet partition.alpha=0", "partition.alpha=0 must be > 0"),
    c("fedplat", "-m seed=0,1 partition=dirichlet partition.alpha=1,0",
      "partition.alpha=0 must be > 0"),
    # -- fedplat: files and directories --------------------------------------------------------
    c("fedplat", "dataset=mnist dataset.root={tmp}/no-such-folder", "MNIST not found"),
    c("fedplat", "dataset=mnist dataset.root={corrupt_mnist}", "corrupt data file"),
    c("fedplat", "dataset=cifar10 dataset.root={tmp}/no-such-folder",
      "holds the six batches (data_batch_1,"),
    c("fedplat", "dataset=imagefolder", "dataset=imagefolder needs dataset.root=DIR"),
    c("fedplat", "dataset=imagefolder dataset.root={tmp}/no-such-folder",
      "is not a folder (searched: ["),
    c("fedplat", "dataset=npz dataset.path={tmp}/no-such.npz", "npz file not found"),
    c("fedplat", "dataset.max_samples=-5", "dataset.max_samples=-5 must be an integer >= 0"),
    c("fedplat", "resume={tmp}/no-such-run", "no run directory there (no config.yaml)"),
    c("fedplat", "resume={no_checkpoint}", "but no checkpoint was completed"),
    c("fedplat", "resume={a_file}", "no run directory there (no config.yaml)"),
    c("fedplat", "resume={corrupt_latest}", "latest.json is corrupt"),
    c("fedplat", f"hydra.run.dir={UNWRITABLE}/run", "cannot write in /sys (no permission)"),
    c("fedplat", "hydra.run.dir={a_file}", "is a file, not a directory; choose a directory path"),
    c("fedplat", "hydra.run.dir={a_file}/run", "is a file, so"),
    c("fedplat", f"-m seed=0,1 hydra.sweep.dir={UNWRITABLE}", "hydra.sweep.dir=/sys/fedplat-out:"),
    c("fedplat", f"output_dir={UNWRITABLE}", "output_dir=/sys/fedplat-out: cannot write in /sys"),
    # -- fedplat: experiment files, the user's own config directory ----------------------------
    c("fedplat", "experiment={bad_experiment}",
      "experiment/zz_typo.yaml: unknown config key 'num_clientz'; did you mean 'num_clients'?"),
    c("fedplat", "--config-dir {user_conf} experiment=typo",
      "experiment/typo.yaml: unknown config key 'num_clientz'; did you mean 'num_clients'?"),
    c("fedplat", "--config-dir {user_conf} experiment=nested_typo",
      "unknown config key 'client.lrr'; did you mean 'client.lr'?"),
    c("fedplat", "--config-dir {user_conf} experiment=broken",
      "experiment/broken.yaml (line 3, column 1): expected ',' or ']'"),
    c("fedplat", "--config-dir {user_conf} experiment=no_package",
      "put '# @package _global_' on its first line"),
    c("fedplat", "--config-dir {user_conf} experiment=bad_value",
      "num_rounds=0 is out of range"),
    c("fedplat", "--config-dir {user_conf} experiment=mine num_clientz=2",
      "did you mean num_clients=2?"),
    c("fedplat", "--config-dir {user_conf} experiment=minee", "unknown experiment 'minee' ("),
    c("fedplat", "--config-dir {tmp}/no-such-conf experiment=mine",
      "no-such-conf: no such directory"),
    c("fedplat", "--config-path {tmp}/no-such-conf", "no-such-conf: no such directory"),
    c("fedplat", "--config-path {broken_primary}", "primary/config.yaml (line 3, column 1): "),
    c("fedplat", "--config-name nosuch", "--config-name nosuch: no nosuch.yaml in"),
    c("fedplat", "--colour num_rounds=1", "unknown option --colour: fedplat takes KEY=VALUE"),
    # -- fedplat evaluate ----------------------------------------------------------------------
    c("fedplat", "evaluate", "fedplat evaluate needs a run directory (usage: "),
    c("fedplat", "evaluate --run {run}", "unknown option --run"),
    c("fedplat", "evaluate {tmp}/no-such-run", "is not a run directory (no config.yaml)"),
    c("fedplat", "evaluate {no_checkpoint}", "has no checkpoint; start the run with checkpoint"),
    c("fedplat", "evaluate {corrupt_config}", BROKEN_YAML),
    c("fedplat", "evaluate {run} seed=1", "seed would change training or the saved state"),
    c("fedplat", "evaluate {run} strategy.mask_absent", "is not KEY=VALUE"),
    # -- fedplat-report ------------------------------------------------------------------------
    c("fedplat-report", "", "the following arguments are required: paths"),
    c("fedplat-report", "{tmp}/no-such-run", "no such directory"),
    c("fedplat-report", "{empty}", "no run directories (with summary.json) found under"),
    c("fedplat-report", "{corrupt_summary}", "summary.json is not valid JSON"),
    c("fedplat-report", "{list_summary}", "summary.json does not hold a run summary"),
    c("fedplat-report", "{corrupt_config_summary}", BROKEN_YAML),
    c("fedplat-report", "{run} --out {a_file}", "--out={a_file}: {a_file} is a file"),
    c("fedplat-report", f"{{run}} --out {UNWRITABLE}", "cannot write in /sys (no permission)"),
    c("fedplat-report", "{run} --colour", "unrecognized arguments: --colour"),
    # -- fedplat-certs -------------------------------------------------------------------------
    c("fedplat-certs", "", "the following arguments are required: out_dir"),
    c("fedplat-certs", ("{tmp}/certs", "--host", "not a host!"), "'not a host!' is not a host"),
    c("fedplat-certs", ("{tmp}/certs", "--host", ""), "'' is not a host name or IP address"),
    c("fedplat-certs", "{tmp}/certs --host=-lab.example", "'-lab.example' is not a host name"),
    c("fedplat-certs", "{tmp}/certs --host a..b", "'a..b' is not a host name"),
    c("fedplat-certs", "{tmp}/certs --host 300.1.1.1.1", "'300.1.1.1.1' is not a host name"),
    c("fedplat-certs", "{a_file}", "is a file, not a directory"),
    c("fedplat-certs", "{a_file}/certs", "is a file, so"),
    c("fedplat-certs", f"{UNWRITABLE}/certs", "cannot write in /sys (no permission)"),
    c("fedplat-certs", "{tmp}/certs --nodes -1", "--nodes must be >= 0 and --days >= 1"),
    c("fedplat-certs", "{tmp}/certs --days 0", "--nodes must be >= 0 and --days >= 1"),
    c("fedplat-certs", "{tmp}/certs --nodes three", "argument --nodes: invalid int value"),
    c("fedplat-certs", "{tmp}/certs --hosts a", "unrecognized arguments: --hosts a"),
    # -- fedplat-attack ------------------------------------------------------------------------
    c("fedplat-attack", "", "the following arguments are required: run_dir"),
    c("fedplat-attack", "{tmp}/no-such-run", "does not exist"),
    c("fedplat-attack", "{empty}", "is not a fedplat run directory (no config.yaml)"),
    c("fedplat-attack", "{corrupt_config}", BROKEN_YAML),
    c("fedplat-attack", "{run}", "no captured messages in"),
    c("fedplat-attack", "{run} --attack gan", "unknown attack 'gan' (choose from: "),
    c("fedplat-attack", "{run} --labels guess", "labels='guess' is not valid (choose from: auto"),
    c("fedplat-attack", "{run} --iterations 0", "iterations and restarts must be at least 1"),
    c("fedplat-attack", "{run} --lr -1", "lr must be positive and tv non-negative"),
    c("fedplat-attack", "{run} --round first", "argument --round: invalid int value: 'first'"),
    c("fedplat-attack", "{run} --turbo", "unrecognized arguments: --turbo"),
]


def _entry(program: str) -> Callable[[list[str]], None]:
    if program == "fedplat":
        from fedplat.cli import main
    elif program == "fedplat-report":
        from fedplat.recording.report import main
    elif program == "fedplat-certs":
        from fedplat.runtime.certs import main
    else:
        from fedplat.privacy.cli import main
    return main


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The files and folders the cases name: run directories whole and broken, a user's config
    directory with good and bad experiment files, a file where a directory is expected."""
    from fedplat.config.compose import compose
    from fedplat.config.tree import CONF_DIR

    tmp = tmp_path_factory.mktemp("mistakes")
    saved = compose(["simulation.backend=inline", "num_clients=2", "num_rounds=1",
                     "checkpoint_every=1"])
    run = tmp / "run"
    run.mkdir()
    OmegaConf.save(saved, run / "config.yaml")
    _write(run / "summary.json", json.dumps({"status": "completed", "strategy": "fedavg"}))
    _write(run / "checkpoint" / "latest.json", json.dumps({"round": 1, "dir": "round_1"}))
    no_checkpoint = tmp / "no_checkpoint"
    no_checkpoint.mkdir()
    shutil.copy(run / "config.yaml", no_checkpoint / "config.yaml")
    corrupt_latest = tmp / "corrupt_latest"
    shutil.copy(run / "config.yaml", _write(corrupt_latest / "summary.json", "{}").parent
                / "config.yaml")
    _write(corrupt_latest / "checkpoint" / "latest.json", '{"round": ')
    corrupt_config = tmp / "corrupt_config"
    _write(corrupt_config / "config.yaml", "seed: [0\n")
    _write(corrupt_config / "summary.json", "{}")
    _write(tmp / "corrupt_summary" / "summary.json", '{"status": ')
    _write(tmp / "list_summary" / "summary.json", "[1, 2]")
    (tmp / "empty").mkdir()
    mnist = tmp / "corrupt_mnist"
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        _write(mnist / f"{name}.gz", "\x1f\x8b broken")
    conf = tmp / "user_conf" / "experiment"
    glob = "# @package _global_\n"
    _write(conf / "mine.yaml", glob + "num_clients: 3\nnum_rounds: 1\n")
    _write(conf / "typo.yaml", glob + "num_clientz: 3\n")
    _write(conf / "nested_typo.yaml", glob + "defaults:\n  - mine\n\nclient:\n  lrr: 0.1\n")
    _write(conf / "broken.yaml", glob + "num_clients: [3\n")
    _write(conf / "no_package.yaml", "num_clients: 3\n")
    _write(conf / "bad_value.yaml", glob + "num_rounds: 0\n")
    _write(tmp / "primary" / "config.yaml", "defaults:\n  - [strategy\n")
    a_file = _write(tmp / "a_file", "not a directory\n")
    return {"tmp": str(tmp), "run": str(run), "no_checkpoint": str(no_checkpoint),
            "corrupt_latest": str(corrupt_latest),
            "corrupt_config": str(corrupt_config),
            "corrupt_config_summary": str(corrupt_config),
            "corrupt_summary": str(tmp / "corrupt_summary"),
            "list_summary": str(tmp / "list_summary"), "empty": str(tmp / "empty"),
            "corrupt_mnist": str(mnist), "user_conf": str(tmp / "user_conf"),
            "a_file": str(a_file), "bad_experiment": "zz_typo",
            "broken_primary": str(tmp / "primary"),
            "conf_dir": str(CONF_DIR)}


@pytest.fixture
def bad_experiment_in_conf(places: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """fedplat's own config tree (a copy) with an experiment file that has a typo."""
    from fedplat.config import compose, tree

    conf = Path(places["tmp"]) / "conf"
    if not conf.is_dir():
        shutil.copytree(places["conf_dir"], conf)
        _write(conf / "experiment" / "zz_typo.yaml", "# @package _global_\nnum_clientz: 3\n")
    monkeypatch.setattr(compose, "CONF_DIR", conf)
    monkeypatch.setattr(tree, "CONF_DIR", conf)


def _fill(text: str, places: dict[str, str]) -> str:
    return text.format(**places)


def _answer(case: Case, places: dict[str, str], capsys: pytest.CaptureFixture[str]
            ) -> tuple[object, list[str]]:
    args = [_fill(a, places) for a in case.args]
    with pytest.raises(SystemExit) as info:
        _entry(case.program)(args)
    err = capsys.readouterr().err
    return info.value.code, err.splitlines()


#: The answers seen in this session, normalised for the table (case id -> message).
ANSWERS: dict[str, tuple[object, str]] = {}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_mistake_is_one_line_and_exit_2(case: Case, places: dict[str, str],
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch,
                                          request: pytest.FixtureRequest) -> None:
    monkeypatch.chdir(places["tmp"])  # a run that slipped through would write here, not in git
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(Path(places["tmp"]) / "no-data"))
    if "{bad_experiment}" in " ".join(case.args):
        request.getfixturevalue("bad_experiment_in_conf")
    code, lines = _answer(case, places, capsys)
    ANSWERS[case.id] = (code, lines[0] if len(lines) == 1 else "\n".join(lines))
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{case.program}: error: ")
    assert "Traceback" not in lines[0]
    assert _fill(case.hint, places) in lines[0]


def test_there_are_at_least_60_distinct_mistakes() -> None:
    assert len({case.id for case in CASES}) == len(CASES) >= 60
    assert {case.program for case in CASES} == {"fedplat", "fedplat-report", "fedplat-certs",
                                                "fedplat-attack"}
    assert sum(case.args[:1] == ("evaluate",) for case in CASES) >= 5


def _row(case: Case, code: object, message: str, places: dict[str, str]) -> str:
    def norm(text: str) -> str:
        for key in ("tmp",):
            text = text.replace(str(Path(places[key]).resolve()), "<tmp>")
            text = text.replace(places[key], "<tmp>")
        text = text.replace(places["conf_dir"], "<fedplat>/conf")
        return text.replace("|", "\\|").replace("\n", " ")

    command = " ".join([case.program, *(repr(a) if " " in a or not a else a for a in
                                         (_fill(x, places) for x in case.args))])
    return f"| `{norm(command)}` | {code} | {norm(message)} |"


HEADER = """# Mistakes and the answers they get

Every bad input to fedplat's command lines gets one line on stderr and exit code 2, before
anything runs or is written (README, Reliability). This table is what the code answers to each
mistake `tests/fedplat/test_mistakes.py` tries (`<tmp>` is the test's temporary folder); the
test checks that it still does. Rewrite it after changing a message:

    FEDPLAT_WRITE_MISTAKES=1 PYTHONPATH=. python -m pytest tests/fedplat/test_mistakes.py

| input | exit code | message |
|---|---|---|
"""


def test_the_table_in_docs_is_what_the_code_says(places: dict[str, str]) -> None:
    """Each answer seen in this session is a row of docs/mistakes.md (rewritten on request)."""
    seen = {case.id: case for case in CASES if case.id in ANSWERS}
    if not seen:
        pytest.skip("no mistake was tried in this session (run the whole module)")
    rows = [_row(case, *ANSWERS[case.id], places) for case in seen.values()]
    if WRITE:
        if len(seen) != len(CASES):
            pytest.fail("run every case of the module to rewrite docs/mistakes.md")
        DOC.write_text(HEADER + "\n".join(rows) + "\n")
    text = DOC.read_text()
    missing = [row for row in rows if row not in text.splitlines()]
    assert missing == [], ("docs/mistakes.md is out of date; rewrite it with "
                           "FEDPLAT_WRITE_MISTAKES=1 (see the module's docstring)")
    assert text.count("\n| `") == len(CASES)


@pytest.mark.parametrize(("script", "args", "hint"), [
    ("fedplat", ["num_clientz=3"], "did you mean num_clients=3?"),
    ("fedplat-certs", ["{tmp}/certs", "--host", "not a host!"], "is not a host name"),
])
def test_the_console_scripts_answer_the_same(script: str, args: list[str], hint: str,
                                             places: dict[str, str]) -> None:
    exe = Path(sys.executable).parent / script
    if not exe.exists():
        pytest.skip(f"{script} is not installed next to {sys.executable}")
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(exe), *(_fill(a, places) for a in args)], cwd=places["tmp"],
                          env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{script}: error: ") and hint in lines[0]

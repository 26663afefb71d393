"""The two errors a run can end with, and the exit code and single line each one gives."""

import os

import pytest

from fedplat.cli import main
from fedplat.errors import FedplatError, RunAborted, UserError
from simulations import centralized

#: This module stands in for a scenario module (`scenario.runner` names a runner below), so it
#: offers the scenario check the config loader asks for: the centralized one.
validate_config = centralized.validate_config


def bad_input_runner(cfg, run_dir):
    """A scenario runner that finds bad input only once it runs (e.g. a corrupt file)."""
    raise UserError("corrupt file x.gz: truncated; provide a fresh copy")


def aborting_runner(cfg, run_dir):
    """A scenario runner whose run stops early."""
    raise RunAborted("round 3: all 4 clients failed in train")


def test_both_are_fedplat_errors_and_neither_is_the_other():
    assert issubclass(UserError, FedplatError) and issubclass(RunAborted, FedplatError)
    assert not issubclass(UserError, RunAborted) and not issubclass(RunAborted, UserError)
    with pytest.raises(FedplatError, match=r"^why$"):
        raise UserError("why")
    with pytest.raises(UserError):  # a UserError is never mistaken for an aborted run
        try:
            raise UserError("bad")
        except RunAborted:
            pytest.fail("caught as RunAborted")


@pytest.mark.parametrize(
    ("runner", "code", "line"),
    [("bad_input_runner", 2, "fedplat: error: corrupt file x.gz: truncated; provide a fresh copy"),
     ("aborting_runner", 1, "fedplat: error: run stopped: round 3: all 4 clients failed in train "
                            "(results so far are in the run directory)")],
)
def test_the_cli_turns_each_into_one_line_and_its_exit_code(runner, code, line, capsys,
                                                            monkeypatch, tmp_path):
    monkeypatch.chdir(os.environ.get("TMPDIR", "/tmp"))
    with pytest.raises(SystemExit) as info:
        main([f"scenario.runner=tests.fedplat.test_errors.{runner}",
              f"hydra.run.dir={tmp_path}/run"])
    assert info.value.code == code
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == line and "Traceback" not in err

"""What a run shows while it runs: start-up steps with times, a line (or a bar) per round."""

import io
import logging
import re
from pathlib import Path

import pytest

from fedplat.errors import UserError
from fedplat.progress import RoundProgress, check_mode, duration, run_logging, step, wants_bar

ROW = {"round": 1, "test_accuracy": 0.5, "num_train_clients": 2, "round_time_s": 0.1}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_only_on_a_terminal_unless_asked(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    assert wants_bar("auto", _Tty()) and not wants_bar("auto", io.StringIO())
    assert wants_bar("bar", io.StringIO()) and not wants_bar("plain", _Tty())
    monkeypatch.setenv("TERM", "dumb")
    assert not wants_bar("auto", _Tty())
    assert check_mode({}) == "auto" and check_mode({"progress": "plain"}) == "plain"
    with pytest.raises(UserError, match="progress=fancy is not one of auto, bar, plain"):
        check_mode({"progress": "fancy"})


def test_duration_is_short():
    assert [duration(s) for s in (4.4, 65, 7325)] == ["4 s", "1 min 05 s", "2 h 02 min"]


def test_plain_lines_say_the_time_left_and_no_escape_codes(caplog):
    ticks = iter([0.0, 0.0, 2.0, 4.0])
    out = io.StringIO()  # not a terminal: no bar
    with caplog.at_level(logging.INFO, logger="fedplat"), \
            RoundProgress(3, mode="auto", stream=out, clock=lambda: next(ticks)) as progress:
        assert not progress.bar
        progress.update({**ROW, "round": 1}, "round 1/3")
        progress.update({**ROW, "round": 2}, "round 2/3")
    lines = [r.getMessage() for r in caplog.records]
    # 2 s per round so far: 2 rounds left after round 1, 1 after round 2
    assert lines == ["round 1/3  eta 4 s", "round 2/3  eta 2 s"]
    assert out.getvalue() == ""
    assert progress.accuracy == 0.5


def test_the_bar_shows_rounds_done_and_the_last_accuracy_and_log_lines_pass_above_it():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("fedplat")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with RoundProgress(4, first_round=2, mode="bar", stream=out) as progress:
            assert handler.stream is not out  # routed through rich's console meanwhile
            progress.update({**ROW, "round": 2, "test_accuracy": 0.8123}, "round 2/4")
            progress.update({**ROW, "round": 3, "test_accuracy": None}, "round 3/4")
        assert handler.stream is out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    text = out.getvalue()
    assert "round 2/4" in text and "round 3/4" in text
    assert "3/4" in text.splitlines()[-1] and "acc 81.23%" in text.splitlines()[-1]


def test_a_step_logs_its_start_and_its_time(caplog):
    with caplog.at_level(logging.INFO, logger="fedplat"), step("loading", "loaded"):
        pass
    first, second = (r.getMessage() for r in caplog.records)
    assert first == "start-up: loading ..."
    assert re.fullmatch(r"start-up: loaded in \d+\.\d s", second)


def test_a_tiny_inline_run_tells_its_start_up_and_rounds_in_plain_lines(tmp_path, capsys,
                                                                        monkeypatch):
    """Through the console entry, stdout captured (not a terminal): plain, timed lines."""
    from fedplat.cli import main

    monkeypatch.chdir(tmp_path)
    main(["simulation.backend=inline", "num_rounds=2", "num_clients=2",
          f"hydra.run.dir={tmp_path}/run"])
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # no terminal escape codes in a log
    expected = [r"start-up: checking the config \.\.\.",
                r"start-up: config checked in \d+\.\d s",
                r"start-up: loading and partitioning mnist1d \(iid, 2 clients\) \.\.\.",
                r"start-up: data loaded and partitioned in \d+\.\d s",
                r"start-up: starting 2 inline nodes \(in this process\)",
                r"start-up: waiting for 2 nodes to connect and set up \(config, data\) \.\.\.",
                r"start-up: 2 nodes ready in \d+\.\d s",
                r"round 1/2  .*test_acc 0\.\d{4}.*  eta \d+ s",
                r"round 2/2  .*test_acc 0\.\d{4}.* s",
                r"fedplat run completed"]
    lines = out.splitlines()
    at = 0
    for pattern in expected:  # in this order, each on a line of its own
        found = [i for i in range(at, len(lines)) if re.search(pattern, lines[i])]
        assert found, f"no line after line {at} matches {pattern!r}:\n{out}"
        at = found[0] + 1
    assert re.match(r"\[\d\d:\d\d:\d\d\] start-up: checking", lines[0])
    log = (tmp_path / "run" / "run.log").read_text()
    assert "start-up: data loaded and partitioned in" in log and "round 2/2" in log


def test_a_run_without_hydra_logs_to_stdout_and_run_log(tmp_path, capsys, monkeypatch):
    """`flwr run --stream` shows what the flwr-serverapp process writes to stdout."""
    from flwr.app import Context, RecordDict
    from flwr.supercore.run import Run

    from fedplat.app import client_app, make_server_app
    from fedplat.runtime.inline import InlineGrid

    logger = logging.getLogger("fedplat")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", False)  # as in flwr-serverapp: no handler
    level = logger.level
    logger.setLevel(logging.NOTSET)
    out = tmp_path / "out"
    run = Run.create_empty(run_id=1)
    grid = InlineGrid(client_app, 2, run)
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config={"overrides": "num_rounds=1 num_clients=2 "
                                               "simulation.backend=inline",
                                  "output-dir": str(out)})
    try:
        make_server_app()(grid, context)
    finally:
        restored = logger.level
        logger.setLevel(level)
    printed = capsys.readouterr().out
    assert "start-up: 2 nodes ready in" in printed and "round 1/1" in printed
    log = (out / "run.log").read_text()
    assert "round 1/1" in log and "[fedplat][INFO]" in log
    assert logger.handlers == [] and not logger.propagate  # put back after the run
    assert restored == logging.NOTSET


def test_run_logging_adds_nothing_when_the_log_already_reaches_a_handler(tmp_path):
    logger = logging.getLogger("fedplat")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with run_logging(Path(tmp_path / "x")):
            assert logger.handlers == [handler]
        assert not (tmp_path / "x").exists()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_stop_all_ends_a_live_bar_and_puts_the_log_streams_back():
    """The CLI's exit on an interrupted Ray run does not unwind the server thread."""
    from fedplat import progress as module

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logging.getLogger("fedplat").addHandler(handler)
    try:
        with RoundProgress(2, mode="bar", stream=out) as bar:
            assert bar in module._LIVE and handler.stream is not out
            module.stop_all()
            assert not module._LIVE and handler.stream is out and bar._progress is None
    finally:
        logging.getLogger("fedplat").removeHandler(handler)

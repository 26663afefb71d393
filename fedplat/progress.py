"""What a run shows while it runs: timed start-up steps, then one update per round.

Start-up (loading and partitioning the data, starting Ray, the nodes' set-up) took up to a
minute on a loaded machine with nothing on the console; `step` logs each step when it begins
and again with its time when it ends.

Rounds: `RoundProgress` writes each round's line (`fedplat.server.progress_line` and the time
left) to the `fedplat` log, which Hydra sends to the console and to run.log. On a terminal
(`progress=auto`, or `progress=bar`) a live rich bar under those lines also shows the rounds
done, the time left and the last accuracy; the log lines are routed through rich's console
while the bar is drawn so that they scroll above it instead of tearing it. When stdout is not a
terminal (a pipe, a file, CI, `flwr run --stream`, a joblib sweep job) only the lines are
written, so logs stay readable.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from fedplat.errors import UserError

log = logging.getLogger("fedplat")

#: Values of the root config key `progress`.
MODES = ("auto", "bar", "plain")
#: Bars being drawn (`stop_all` before a process ends without unwinding, so that the terminal
#: gets its cursor back).
_LIVE: set[RoundProgress] = set()


def stop_all() -> None:
    """Stop every live bar of this process (the CLI's exit on an interrupted Ray run)."""
    for progress in list(_LIVE):
        progress.__exit__(None, None, None)


def check_mode(cfg: Mapping[str, Any]) -> str:
    """The `progress` setting of a config (`auto` when absent); UserError for another value."""
    mode = str(cfg.get("progress", "auto") or "auto")
    if mode not in MODES:
        raise UserError(f"progress={mode} is not one of {', '.join(MODES)} (auto: a live bar "
                        "on a terminal, plain lines otherwise)")
    return mode


def wants_bar(mode: str, stream: IO[str] | None = None) -> bool:
    """Whether to draw the live bar: `bar`, or `auto` on a terminal that can redraw a line."""
    if mode == "plain":
        return False
    if mode == "bar":
        return True
    out = sys.stdout if stream is None else stream
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM", "") != "dumb"


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `2 h 07 min`: short enough for a progress line."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@contextmanager
def step(what: str, done: str | None = None) -> Iterator[None]:
    """Log `start-up: WHAT ...` now and `start-up: DONE in X s` when the block ends.

    A step that fails logs nothing more: its error is what the user reads next.
    """
    log.info("start-up: %s ...", what)
    t0 = time.perf_counter()
    yield
    log.info("start-up: %s in %.1f s", done or f"{what}: done", time.perf_counter() - t0)


def accuracy_of(row: Mapping[str, Any]) -> float | None:
    """The round's pooled test accuracy, when this round was evaluated."""
    value = row.get("test_accuracy")
    return float(value) if isinstance(value, int | float) else None


class RoundProgress:
    """The rounds of one run: a line per round in the log, a live bar on a terminal.

    The time left is the mean time of the rounds run by this process so far times the rounds
    still to run (a resumed run counts from its first new round).
    """

    def __init__(self, num_rounds: int, first_round: int = 1, mode: str = "auto",
                 stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.num_rounds = num_rounds
        self.first_round = first_round
        self.bar = wants_bar(mode, stream)
        self.stream = stream
        self.accuracy: float | None = None
        self._t0 = self.clock()
        self._progress: Any = None
        self._task: Any = None
        self._swapped: list[tuple[logging.StreamHandler[Any], Any]] = []

    def eta_s(self, server_round: int) -> float | None:
        """Seconds left after `server_round` (None before the first round of this process)."""
        done = server_round - self.first_round + 1
        if done <= 0:
            return None
        per_round = (self.clock() - self._t0) / done
        return per_round * (self.num_rounds - server_round)

    def line(self, row: Mapping[str, Any], text: str) -> str:
        """The round's log line: `text` (`fedplat.server.progress_line`) and the time left."""
        eta = self.eta_s(int(row["round"]))
        if eta is not None and int(row["round"]) < self.num_rounds:
            text += f"  eta {duration(eta)}"
        return text

    def update(self, row: Mapping[str, Any], text: str) -> None:
        """Report a finished round: `row` is its metrics row, `text` its summary line."""
        log.info("%s", self.line(row, text))
        if (acc := accuracy_of(row)) is not None:
            self.accuracy = acc
        if self._progress is not None:
            self._progress.update(self._task, completed=int(row["round"]),
                                  acc=self._acc_text())

    def _acc_text(self) -> str:
        return "acc  n/a " if self.accuracy is None else f"acc {100 * self.accuracy:5.2f}%"

    def __enter__(self) -> RoundProgress:
        self._t0 = self.clock()
        if not self.bar:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(file=self.stream) if self.stream is not None else Console()
        self._progress = Progress(
            TextColumn("rounds"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[acc]}"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(),
            console=console, transient=False, redirect_stdout=False, redirect_stderr=False)
        self._task = self._progress.add_task("rounds", total=self.num_rounds,
                                             completed=self.first_round - 1, acc=self._acc_text())
        self._progress.start()
        _LIVE.add(self)
        self._route_logs(console)
        return self

    def _route_logs(self, console: Any) -> None:
        """Send the console log handlers through rich's console while the bar is drawn."""
        from rich.file_proxy import FileProxy

        terminal = {id(console.file), id(sys.stdout), id(sys.__stdout__)}
        for logger in (logging.getLogger(), log):
            for handler in logger.handlers:
                if (type(handler) is logging.StreamHandler
                        and id(handler.stream) in terminal):
                    self._swapped.append((handler, handler.stream))
                    handler.setStream(FileProxy(console, handler.stream))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for handler, stream in self._swapped:
            handler.flush()
            handler.setStream(stream)
        self._swapped.clear()
        _LIVE.discard(self)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def run_logging(run_dir: Path) -> Iterator[None]:
    """The `fedplat` log on stdout and in `run_dir/run.log` for a run Hydra did not start.

    Under `flwr run` (and on a deployment) the ServerApp runs in Flower's `flwr-serverapp`
    process, which streams what is written to its stdout and stderr to `flwr run --stream` and
    `flwr log`; the `fedplat` logger has no handler there, so the start-up steps and rounds
    were dropped. Nothing is added when the logger already reaches a handler at INFO (the
    `fedplat` CLI, whose handlers Hydra configures).
    """
    if log.isEnabledFor(logging.INFO) and _has_handler(log):
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    file = logging.FileHandler(run_dir / "run.log")
    file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    level, propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(console)
    log.addHandler(file)
    try:
        yield
    finally:
        log.removeHandler(console)
        log.removeHandler(file)
        file.close()
        log.setLevel(level)
        log.propagate = propagate


def _has_handler(logger: logging.Logger) -> bool:
    """Whether a record of `logger` reaches a handler (logging's lastResort does not count)."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False

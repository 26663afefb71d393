"""A run directory's life: claimed by one run, resumed only while unfinished, closed on a signal.

* `claim`: a new run refuses a directory that already holds a run (metrics.jsonl, summary.json
  or a checkpoint) unless the user says `overwrite=true`; results are never replaced silently.
* `completed_line`: `resume=` of a run whose last round is checkpointed and whose summary says
  "completed" has nothing to do; the CLI says so and writes nothing.
* `no_checkpoint_line`: why a run cannot be resumed: the option was missing, or the run stopped
  before its first checkpoint was complete.
* `Interrupted` / `on_sigterm`: SIGTERM becomes an exception like Ctrl-C's KeyboardInterrupt,
  so the run's recorder writes `"status": "interrupted"` and the last round before the
  process exits (the checkpoint stays resumable: it is replaced atomically).
* `sigterm_deferred`: a SIGTERM that arrives while a round is being committed (its metrics row
  written, its checkpoint saved) takes effect once the commit is done, so a logged round is
  never left without the checkpoint that was due after it.

A light module (no torch): the CLI reads it before anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from omegaconf import DictConfig

from fedplat.config.checks import check_bool
from fedplat.errors import UserError

CHECKPOINT_DIR = "checkpoint"
LATEST = "latest.json"
#: What makes a directory hold a run: results, or state a later `resume=` would read.
RUN_FILES = ("metrics.jsonl", "summary.json", CHECKPOINT_DIR)


def held_run(run_dir: Path) -> list[str]:
    """The run files in `run_dir` (empty: no run there)."""
    return [name for name in RUN_FILES if (Path(run_dir) / name).exists()]


def overwrite_flag(cfg: DictConfig) -> bool:
    """`overwrite` (true/false; a missing key in an old saved config means false)."""
    return "overwrite" in cfg and check_bool(cfg, "overwrite")


def claim(run_dir: Path, overwrite: bool) -> None:
    """Refuse `run_dir` if it holds a run, unless `overwrite`; then drop its stale checkpoint.

    Refusing touches nothing. With `overwrite`, the old checkpoint is removed (a later `resume=`
    must not continue the old run's state with the new run's config); the new run rewrites
    config.yaml, metrics.jsonl, summary.json and clients.json, and appends to run.log.
    """
    run_dir = Path(run_dir)
    held = held_run(run_dir)
    if not held:
        return
    if not overwrite:
        raise UserError(f"{run_dir} already holds a run ({', '.join(held)}); continue it with "
                        f"resume={run_dir}, replace it with overwrite=true, or choose another "
                        "directory (hydra.run.dir=... or output_dir=...)")
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)


def read_latest(run_dir: Path) -> tuple[int, str] | None:
    """(round, folder name) that `checkpoint/latest.json` names; None when there is none.

    A file that cannot be read or parsed is one line (`UserError`): resuming from it is
    impossible, and the run's other files stay as they are.
    """
    path = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        return int(info["round"]), str(info["dir"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{path} is corrupt ({type(exc).__name__}: {exc}); the run cannot be "
                        f"resumed from it: start it again with hydra.run.dir={run_dir} "
                        "overwrite=true") from None


def latest_round(run_dir: Path) -> int | None:
    """The round of the newest complete checkpoint in `run_dir` (None: none complete)."""
    found = read_latest(run_dir)
    return found[0] if found else None


def _saved(run_dir: Path, name: str) -> dict[str, Any]:
    try:
        if name.endswith(".json"):
            data = json.loads((run_dir / name).read_text())
        else:
            from omegaconf import OmegaConf

            data = OmegaConf.to_container(OmegaConf.load(run_dir / name))
    except (OSError, ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def completed_line(run_dir: Path) -> str | None:
    """One line if the run in `run_dir` is complete (nothing left to resume), else None.

    Complete: its last round is checkpointed and summary.json says "completed". A run killed
    after its last checkpoint but before its summary was closed is resumed (it is finished
    then, without training).
    """
    run_dir = Path(run_dir)
    done = latest_round(run_dir)
    num_rounds = _saved(run_dir, "config.yaml").get("num_rounds")
    status = _saved(run_dir, "summary.json").get("status")
    if done is None or not isinstance(num_rounds, int) or done < num_rounds \
            or status != "completed":
        return None
    return (f"resume={run_dir}: the run is already complete ({done} of {num_rounds} rounds, "
            "checkpointed); nothing to do, nothing changed")


def no_checkpoint_line(run_dir: Path, given: str) -> str:
    """Why `resume=given` cannot continue the run in `run_dir`, which has no complete checkpoint.

    A run started with `checkpoint_every=N` that stopped before (or while) writing its first
    checkpoint has a config with N > 0, perhaps a partial `checkpoint/` folder: say that, and
    not that the option was missing.
    """
    every = _saved(Path(run_dir), "config.yaml").get("checkpoint_every")
    if isinstance(every, int) and every > 0:
        partial = " (a partial one was left)" if (Path(run_dir) / CHECKPOINT_DIR).exists() \
            else ""
        return (f"resume={given}: the run was started with checkpoint_every={every} but no "
                f"checkpoint was completed{partial}; it stopped before its first checkpoint: "
                f"start it again with hydra.run.dir={given} overwrite=true")
    return (f"resume={given}: the run has no checkpoint; it must have been started with "
            "checkpoint_every=N")


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt (so `except Exception` does not eat it)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def signal_name(exc: BaseException) -> str:
    """SIGTERM for `Interrupted`, SIGINT for a plain KeyboardInterrupt (Ctrl-C)."""
    return exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"


def exit_code(name: str) -> int:
    """The shell's code for a process ended by signal `name`: 128 + its number (130, 143)."""
    return 128 + int(getattr(signal, name))


Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextlib.contextmanager
def sigterm_kept_across_ray_init() -> Iterator[None]:
    """Keep this process's SIGTERM handler when Flower's Ray backend calls `ray.init`.

    `ray.init` installs Ray's own handlers (Python: exit; its core worker's: abort with a
    stack dump, exit code 134), so a SIGTERM would end the run without recording it. Ray is
    imported and patched only while the block runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import ray

    handler = signal.getsignal(signal.SIGTERM)
    original = ray.init

    @functools.wraps(original)
    def init(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            if handler is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, handler)

    ray.init = init
    try:
        yield
    finally:
        ray.init = original


class _Deferral:
    """How many `sigterm_deferred` blocks are open, and whether a SIGTERM waits for them."""

    lock = threading.Lock()
    depth = 0
    pending = False


def on_sigterm() -> Handler:
    """Make SIGTERM raise `Interrupted` in the main thread; return the previous handler.

    The first SIGTERM raises (inside a `sigterm_deferred` block: once the block ends); the
    handler then goes back to the default, so a further SIGTERM ends the process at once (a run
    that does not stop in time can still be ended). A second SIGTERM while the first one waits
    for a block does not wait.
    """
    def handler(signum: int, frame: FrameType | None) -> None:
        with _Deferral.lock:
            if _Deferral.depth and not _Deferral.pending:
                _Deferral.pending = True
                return
            _Deferral.pending = False
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Interrupted("SIGTERM")

    return signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Hold a SIGTERM that `on_sigterm`'s handler receives while the block runs until it ends.

    Why: SIGTERM is how schedulers preempt jobs. Landing between a round's metrics row and the
    checkpoint due after it, it used to leave a run whose last logged round cannot be resumed
    (or, in a first round, no checkpoint at all). The held signal is sent again when the
    outermost block ends, so it is handled where it always is (the main thread), whichever
    thread ran the block. Without `on_sigterm`'s handler installed this changes nothing.
    """
    with _Deferral.lock:
        _Deferral.depth += 1
    try:
        yield
    finally:
        with _Deferral.lock:
            _Deferral.depth -= 1
            resend = not _Deferral.depth and _Deferral.pending
        if resend:
            os.kill(os.getpid(), signal.SIGTERM)

"""Run directories never lose results: refuse to start over a run, resume only what is unfinished,
record an interruption, and load checkpoints without running code from them."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, RecordDict

from fedplat.cli import main
from fedplat.errors import UserError
from fedplat.recording import checkpoint, rundir
from tests.helpers import make_cfg

TINY = ["simulation.backend=inline", "num_clients=2", "num_rounds=2", "checkpoint_every=1",
        "simulation.torch_threads=1"]


def _cli(args, capsys):
    """Run `fedplat ARGS` in this process: (exit code, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete two-round run with a checkpoint after each round (made once, copied)."""
    root = tmp_path_factory.mktemp("finished")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        main([*TINY, f"hydra.run.dir={root / 'run'}"])
    finally:
        os.chdir(cwd)
    return root / "run"


@pytest.fixture
def run_copy(finished, tmp_path, monkeypatch):
    """A copy of the finished run; the working directory is an empty folder `cwd`."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return run


def test_claim_refuses_a_run_directory_unless_overwrite(tmp_path):
    rundir.claim(tmp_path, overwrite=False)  # empty: fine
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "checkpoint").mkdir()
    with pytest.raises(UserError, match=r"already holds a run \(metrics.jsonl, checkpoint\); "
                                        r"continue it with resume="):
        rundir.claim(tmp_path, overwrite=False)
    assert (tmp_path / "checkpoint").is_dir()
    rundir.claim(tmp_path, overwrite=True)  # the stale checkpoint must not be resumed
    assert not (tmp_path / "checkpoint").exists() and (tmp_path / "metrics.jsonl").exists()


def test_a_new_run_refuses_a_directory_holding_a_run_and_touches_nothing(run_copy, capsys):
    before = _files(run_copy)
    for where in (f"hydra.run.dir={run_copy}", f"output_dir={run_copy}"):
        code, err = _cli([*TINY, where], capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"fedplat: error: {run_copy} already holds a run "
                              "(metrics.jsonl, summary.json, checkpoint); continue it with "
                              f"resume={run_copy}, replace it with overwrite=true")
    code, err = _cli([*TINY, f"hydra.run.dir={run_copy}", "overwrite=maybe"], capsys)
    assert (code, err) == (2, "fedplat: error: overwrite=maybe: expected true or false\n")
    assert _files(run_copy) == before
    assert not any(Path.cwd().iterdir())


def test_overwrite_replaces_the_run(run_copy, capsys):
    code, _ = _cli(["simulation.backend=inline", "num_clients=2", "num_rounds=1",
                    f"hydra.run.dir={run_copy}", "overwrite=true"], capsys)
    assert code == 0
    rows = (run_copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["round"] for r in rows] == [1]
    assert not (run_copy / "checkpoint").exists()  # the old run's state is gone


def test_resume_of_a_complete_run_changes_nothing(run_copy, capsys):
    before = _files(run_copy)
    code, err = _cli([f"resume={run_copy}"], capsys)
    assert code == 0
    assert err == (f"fedplat: resume={run_copy}: the run is already complete (2 of 2 rounds, "
                   "checkpointed); nothing to do, nothing changed\n")
    assert _files(run_copy) == before
    assert not any(Path.cwd().iterdir())  # no stray outputs/ either


def test_a_run_stopped_before_its_first_checkpoint_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoint" / "round-2").mkdir(parents=True)
    (run / "checkpoint" / "round-2" / "server.pt.tmp").write_bytes(b"PK\x03\x04 torn")
    (run / "config.yaml").write_text("num_rounds: 4\ncheckpoint_every: 2\n")
    code, err = _cli([f"resume={run}"], capsys)
    assert code == 2 and err == (
        f"fedplat: error: resume={run}: the run was started with checkpoint_every=2 but no "
        "checkpoint was completed (a partial one was left); it stopped before its first "
        f"checkpoint: start it again with hydra.run.dir={run} overwrite=true\n")
    (run / "config.yaml").write_text("num_rounds: 4\ncheckpoint_every: 0\n")
    assert rundir.no_checkpoint_line(run, "X").endswith("must have been started with "
                                                       "checkpoint_every=N")


def test_checkpoint_files_are_private_durable_and_loaded_without_code(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    checkpoint.save_server(tmp_path, 1, {"w": torch.ones(2)})
    directory = checkpoint.round_dir(tmp_path, 1)
    assert len(synced) == 4  # server.pt and latest.json, each file then its directory
    for path in (directory / "server.pt", tmp_path / "checkpoint" / "latest.json"):
        assert path.stat().st_mode & 0o777 == 0o600
    for path in (directory, tmp_path / "checkpoint"):
        assert path.stat().st_mode & 0o777 == 0o700
    assert not list(tmp_path.rglob("*.tmp"))
    state = RecordDict({"c4.model": ArrayRecord({"w": torch.arange(3.0)})})
    assert checkpoint.save_client_states(state, directory) == [4]
    assert checkpoint.client_file(directory, 4).stat().st_mode & 0o777 == 0o600

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    torch.save({"round": 1, "strategy": {"x": Evil()}}, directory / "server.pt")
    with pytest.raises(UserError, match=r"server.pt: refused to load: it refers to "
                                        r"(posix|os)\.system, which a fedplat checkpoint never"):
        checkpoint.load_server(directory)
    assert not (tmp_path / "PWNED").exists()


def test_resume_refuses_a_checkpoint_holding_a_malicious_pickle(run_copy, capsys):
    summary = json.loads((run_copy / "summary.json").read_text())
    (run_copy / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    server = next((run_copy / "checkpoint").glob("round-*")) / "server.pt"

    class Evil:
        def __reduce__(self):
            return (eval, ("__import__('pathlib').Path('PWNED').touch()",))

    torch.save({"round": 2, "strategy": Evil()}, server)
    code, err = _cli([f"resume={run_copy}"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"fedplat: error: {server}: refused to load: it refers to "
                          "builtins.eval")
    assert not (Path.cwd() / "PWNED").exists()


def test_sigterm_records_the_interruption_and_the_run_resumes_in_its_directory(tmp_path,
                                                                               capsys,
                                                                               monkeypatch):
    run = tmp_path / "run"
    args = ["simulation.backend=inline", "num_clients=2", "num_rounds=3", "checkpoint_every=1",
            "simulation.torch_threads=1", "faults.slow_clients=[0]", "faults.slow_delay_s=1.0"]
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "fedplat.cli", *args,
                             f"hydra.run.dir={run}"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and metrics.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(
        "fedplat: error: run interrupted: stopped by SIGTERM after round 1; resume=")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["interrupted"] == {"signal": "SIGTERM", "last_round": 1,
                                      "checkpoint_round": 1}
    first_wall = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["wall_time_s"]

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    code, err = _cli([f"resume={run}"], capsys)
    assert code == 0, err
    assert not any(Path.cwd().iterdir())  # the resumed run logs into its own directory
    assert "resuming after round 1" in (run / "run.log").read_text()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert rows[0]["wall_time_s"] == first_wall
    assert rows[1]["wall_time_s"] > first_wall + 1.0  # continues, with round 2's slow client
    done = json.loads((run / "summary.json").read_text())
    assert done["status"] == "completed" and done["wall_time_s"] > rows[1]["wall_time_s"]


@pytest.fixture
def sigterm_raises():
    """`on_sigterm`'s handler installed for one test, the previous one restored after."""
    previous = rundir.on_sigterm()
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_during_a_deferred_block_is_raised_when_the_block_ends(sigterm_raises):
    done = []
    with pytest.raises(rundir.Interrupted, match="SIGTERM"), rundir.sigterm_deferred():
        with rundir.sigterm_deferred():  # nested: only the outermost end raises
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # a further one ends the process


def test_a_second_sigterm_does_not_wait_for_the_block(sigterm_raises):
    done = []
    with pytest.raises(rundir.Interrupted), rundir.sigterm_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("held")
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("not reached")
    assert done == ["held"]


def test_a_block_in_another_thread_hands_the_held_sigterm_to_the_main_thread(sigterm_raises):
    import threading

    def commit() -> None:
        with rundir.sigterm_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the main thread must not be interrupted yet

    worker = threading.Thread(target=commit)
    with pytest.raises(rundir.Interrupted):
        worker.start()
        t0 = time.perf_counter()
        while worker.is_alive():
            time.sleep(0.01)
        time.sleep(1.0)  # the resent signal is handled at the main thread's next step
    assert time.perf_counter() - t0 >= 0.2


def test_a_sigterm_while_the_checkpoint_is_written_leaves_that_round_resumable(
        tmp_path, capsys, monkeypatch):
    """SIGTERM between round 1's metrics row and its checkpoint (the race a scheduler's
    preemption can hit): the checkpoint is finished first, then the run stops as interrupted.

    Runs of an earlier call in the same process (one interrupted, one left open) are neither
    named in this call's last line nor closed by its signal.
    """
    from fedplat.recording.recorder import RunRecorder

    earlier = RunRecorder(tmp_path / "earlier", make_cfg("num_rounds=3"))
    earlier.log_round({"round": 1, "wall_time_s": 1.0})
    earlier.interrupt("SIGINT")
    still_open = RunRecorder(tmp_path / "open", make_cfg("num_rounds=3"))
    run = tmp_path / "run"
    save_server = checkpoint.save_server

    def preempted(run_dir, server_round, state):
        if server_round == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return save_server(run_dir, server_round, state)

    monkeypatch.setattr(checkpoint, "save_server", preempted)
    code, err = _cli([*TINY, "num_rounds=3", f"hydra.run.dir={run}"], capsys)
    assert code == 143, err
    assert err.strip().splitlines()[-1].startswith(
        "fedplat: error: run interrupted: stopped by SIGTERM after round 1; resume=")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] == {"signal": "SIGTERM", "last_round": 1,
                                      "checkpoint_round": 1}
    assert checkpoint.latest(run)[0] == 1
    assert not still_open.closed

"""Deployment on loopback: SuperLink + SuperNodes running the same apps as the simulation."""

import json
import urllib.error
import urllib.request

import pytest

from fedplat.runtime.deploy import LoopbackFederation, listening
from tests.helpers import run_inline

pytestmark = pytest.mark.deploy

#: measured: the status `flower-supernode` exits with when the SuperLink refuses its key. Its log
#: says "Exit Code: 305" (Flower's code for a connection error), the process returns 1 (README).
UNREGISTERED_NODE_EXIT = 1


def _rows(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def _check(proc, fed, out):
    assert proc.returncode == 0, (proc.stdout[-2000:] + proc.stderr[-2000:]
                                  + fed.log("superlink.log")[-2000:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    return summary


def _status(url):
    """HTTP status of an empty POST to `url` (Flower's APIs are POST with protobuf bodies)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"),
                                    timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def test_fedavg_and_a_stateful_strategy_on_two_supernodes(tmp_path):
    # the Fleet API on another loopback address than the Control API, to tell them apart
    with LoopbackFederation(tmp_path / "fed", num_nodes=2, fleet_host="127.0.0.2") as fed:
        out = tmp_path / "fedavg"
        summary = _check(fed.run("strategy=fedavg num_rounds=2 num_clients=2", out), fed, out)
        assert summary["rounds_completed"] == 2 and summary["final"]["accuracy"] > 0

        # What the SuperLink (and its children: SuperExec, ServerApp) listens on, read from
        # the kernel: the Control API's port on 127.0.0.1 only, the Fleet API's on the
        # configured address only, nothing else.
        sockets = {(s.ip, s.port) for s in listening([fed.procs[0].pid])}
        assert sockets == {("127.0.0.1", fed.port), ("127.0.0.2", fed.fleet_port)}, sockets
        # The Fleet address serves the Fleet API and nothing else: a Control API call there
        # is refused before it reaches Flower (404); on loopback the same path reaches
        # Flower's handler, which rejects the empty body (415).
        fleet, control = (f"http://127.0.0.2:{fed.fleet_port}",
                          f"http://127.0.0.1:{fed.port}")
        assert _status(f"{fleet}/v1/control/list-runs") == 404
        assert _status(f"{fleet}/v1/runtime/get-nodes") == 404
        assert _status(f"{fleet}/v1/fleet/get-run") == 415
        assert _status(f"{control}/v1/control/list-runs") == 415

        # FedPer keeps each client's personal head in Context.state between rounds: the
        # deployed run must reproduce the inline simulation exactly, which it only can if
        # that state persisted on the SuperNodes.
        out = tmp_path / "fedper"
        _check(fed.run("strategy=fedper num_rounds=2 num_clients=2", out), fed, out)
        _, expected = run_inline(tmp_path / "inline", "strategy=fedper", "num_rounds=2",
                                 "num_clients=2")
        got = _rows(out)
        assert [r["test_accuracy"] for r in got] == [r["test_accuracy"] for r in expected]
        # losses agree up to float noise from a different torch thread count per process
        assert [r["train_loss"] for r in got] == pytest.approx(
            [r["train_loss"] for r in expected], rel=1e-6)
        assert got[1]["train_loss"] < got[0]["train_loss"]
    assert not fed.procs  # everything was shut down


def test_tls_with_authenticated_supernodes_and_a_refused_stranger(tmp_path):
    with LoopbackFederation(tmp_path / "fed", num_nodes=2, tls=True, auth=True) as fed:
        out = tmp_path / "tls"
        summary = _check(fed.run("num_rounds=1 num_clients=2", out), fed, out)
        assert summary["rounds_completed"] == 1
        # key pair 2 exists but was never registered: the SuperLink refuses that node
        stranger = fed.start_node(0, key_index=2)
        code = stranger.wait(timeout=120)
        print(f"unregistered SuperNode exit code: {code}")
        assert code == UNREGISTERED_NODE_EXIT
        log = fed.log("node-0-key2.log")
        assert "Failed to activate SuperNode" in log and "Exit Code: 305" in log

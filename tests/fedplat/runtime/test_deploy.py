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


def test_a_stateful_strategy_on_two_supernodes_and_the_fleet_address_serves_only_fleet(tmp_path):
    # One `flwr run` (each ClientApp message is a process on a SuperNode: the cost of this
    # test). FedAvg on a deployment is the TLS test's run below; here the stateful FedPer.
    # the Fleet API on another loopback address than the Control API, to tell them apart
    with LoopbackFederation(tmp_path / "fed", num_nodes=2, fleet_host="127.0.0.2") as fed:
        # FedPer keeps each client's personal head in Context.state between rounds: the
        # deployed run must reproduce the inline simulation exactly, which it only can if
        # that state persisted on the SuperNodes. Round 1 is not evaluated (eval_every=2):
        # round 2's training loss and its evaluation both start from the head kept in round 1.
        args = ("strategy=fedper", "num_rounds=2", "num_clients=2", "eval_every=2")
        out = tmp_path / "fedper"
        summary = _check(fed.run(" ".join(args), out), fed, out)
        assert summary["rounds_completed"] == 2 and summary["final"]["accuracy"] > 0
        _, expected = run_inline(tmp_path / "inline", *args)
        got = _rows(out)
        assert [r["round"] for r in got] == [1, 2] and "test_accuracy" in got[1]
        assert [r.get("test_accuracy") for r in got] == \
            [r.get("test_accuracy") for r in expected]
        # losses agree up to float noise from a different torch thread count per process
        assert [r["train_loss"] for r in got] == pytest.approx(
            [r["train_loss"] for r in expected], rel=1e-6)
        assert got[1]["train_loss"] < got[0]["train_loss"]

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
    assert not fed.procs  # everything was shut down


def test_tls_with_authenticated_supernodes_and_a_refused_stranger(tmp_path):
    with LoopbackFederation(tmp_path / "fed", num_nodes=2, tls=True, auth=True) as fed:
        out = tmp_path / "tls"
        # the default strategy, FedAvg (the other deployment test runs the stateful FedPer).
        # The clients report their test metrics with the train reply (no evaluate stage): one
        # ClientApp process less per node; the evaluate stage is the FedPer test's.
        summary = _check(fed.run("num_rounds=1 num_clients=2 strategy.fraction_evaluate=0 "
                                 "client.evaluate_after_train=true", out), fed, out)
        assert summary["strategy"] == "fedavg", summary["strategy"]
        assert summary["rounds_completed"] == 1 and summary["final"]["accuracy"] > 0
        # key pair 2 exists but was never registered: the SuperLink refuses that node
        stranger = fed.start_node(0, key_index=2)
        code = stranger.wait(timeout=120)
        print(f"unregistered SuperNode exit code: {code}")
        assert code == UNREGISTERED_NODE_EXIT
        log = fed.log("node-0-key2.log")
        assert "Failed to activate SuperNode" in log and "Exit Code: 305" in log

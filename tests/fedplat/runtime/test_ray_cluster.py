"""simulation.ray_address: a run on a running two-node Ray cluster gives the local numbers."""

import json
import os
import time

import pytest

from fedplat.recording.recorder import without_timing
from fedplat.runtime.net import is_loopback
from fedplat.runtime.ray_cluster import init_args, local_on_loopback, on_this_machine_loopback
from tests.helpers import make_cfg, run_inline, watch_listening

pytestmark = pytest.mark.ray


def test_init_args_start_a_local_cluster_or_connect_without_resources():
    assert init_args(None, num_cpus=2) == {"address": "local", "num_cpus": 2}
    assert init_args("auto", num_cpus=2) == {"address": "auto"}
    assert [on_this_machine_loopback(a) for a in ("127.0.0.1:6379", "[::1]:1", "localhost:1",
                                                   "10.0.0.5:6379", "head.lab:6379", "auto")] \
        == [True, True, True, False, False, False]


def test_a_run_on_a_two_node_cluster_gives_exactly_the_local_metrics(tmp_path):
    """A head and a second node (1 CPU each, both on 127.0.0.1), as `ray start` would make them.

    One worker per CPU: the two ClientApp workers run one on each node, and every metric of
    every round equals the inline run's (same seed, same draws, data built on each node).
    """
    import ray
    import torch
    from ray.cluster_utils import Cluster

    from simulations.centralized import run

    # the same grouping (one client per node) and one torch thread per client in both runs,
    # so that bytes and float sums are the same operations
    args = ("strategy=fedavg", "num_rounds=2", "num_clients=2", "simulation.num_cpus=1",
            "simulation.clients_per_node=1", "simulation.torch_threads=1")
    threads = torch.get_num_threads()
    try:
        _, expected = run_inline(tmp_path / "inline", *args)
    finally:
        torch.set_num_threads(threads)

    t0 = time.perf_counter()
    with local_on_loopback(None):  # else Ray advertises the routable address, not 127.0.0.1
        cluster = Cluster(initialize_head=True, shutdown_at_exit=True,
                          head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
        second = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    try:
        raylet = [p.process.pid for p in second.all_processes["raylet"]]
        cfg = make_cfg("simulation.backend=ray", f"simulation.ray_address={cluster.address}",
                       *args)
        with watch_listening(lambda: raylet) as on_second:
            summary = run(cfg, tmp_path / "cluster")
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"two-node cluster: started and ran 2 rounds in {time.perf_counter() - t0:.1f} s")

    assert summary["status"] == "completed" and summary["rounds_completed"] == 2
    got = [json.loads(x) for x in (tmp_path / "cluster" / "metrics.jsonl").read_text()
           .splitlines()]
    assert without_timing(got) == without_timing(expected)
    # the second node ran ClientApp workers (its raylet's children listen for their tasks),
    # and, started on 127.0.0.1, listens on loopback only
    assert any(s.name.startswith("ray::") for s in on_second), on_second
    assert on_second and all(is_loopback(s.ip) for s in on_second)
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None  # nothing leaked

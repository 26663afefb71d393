"""Which simulated node serves which clients (`simulation.clients_per_node`)."""

from __future__ import annotations

import pytest

from fedplat.errors import UserError
from fedplat.transport import placement
from tests.helpers import make_cfg


def test_auto_groups_on_ray_follow_the_workers_and_inline_keeps_one() -> None:
    cfg = make_cfg("num_clients=100", "simulation.ray_num_cpus=2", "simulation.num_cpus=1")
    assert cfg.simulation.clients_per_node == 50 and placement.num_nodes(cfg) == 2
    cfg = make_cfg("num_clients=100", "simulation.ray_num_cpus=4", "simulation.num_cpus=0.5")
    assert cfg.simulation.clients_per_node == 13 and placement.num_nodes(cfg) == 8
    cfg = make_cfg("num_clients=10", "simulation.backend=inline")
    assert cfg.simulation.clients_per_node == 1 and placement.num_nodes(cfg) == 10


def test_members_cover_every_client_once_and_spread_the_work() -> None:
    from fedplat.data import load_federated

    cfg = make_cfg("num_clients=10", "simulation.clients_per_node=4", "dataset.num_samples=2000",
                   "partition=dirichlet")
    nodes = placement.num_nodes(cfg)
    assert nodes == 3
    federated = load_federated(cfg)
    served = [placement.members(cfg, p, federated) for p in range(nodes)]
    assert sorted(c for s in served for c in s) == list(range(10))
    assert all(len(s) <= 4 for s in served)
    work = placement.expected_work(federated)
    loads = [sum(work[c] for c in s) for s in served]
    contiguous = [sum(work[p * 4:(p + 1) * 4]) for p in range(nodes)]
    assert max(loads) - min(loads) <= max(work)  # greedy: within one client's work
    assert max(loads) - min(loads) <= max(contiguous) - min(contiguous)
    assert make_cfg("num_clients=3", "simulation.clients_per_node=9") \
        .simulation.clients_per_node == 3


def test_assign_deals_clients_out_by_work_within_the_room_of_each_node() -> None:
    assert placement.assign([5, 1, 1, 1, 4, 4], 3) == [[0, 1, 2], [3, 4, 5]]
    assert placement.assign([1] * 7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert placement.assign([1] * 7, 1) == [[c] for c in range(7)]


def test_a_rounds_sampled_clients_are_spread_over_the_nodes() -> None:
    """PeFLL's layout: the last quarter of the ids never trains. Each round samples 4 of the 9
    training clients; per node and round, the sampled clients served there."""
    import numpy as np

    def counts(served: list[list[int]]) -> np.ndarray:
        node_of = {c: p for p, s in enumerate(served) for c in s}
        rng = np.random.default_rng(0)
        out = np.zeros((300, len(served)), dtype=int)
        for r in range(300):
            for c in rng.choice(9, size=4, replace=False):
                out[r, node_of[int(c)]] += 1
        return out

    contiguous = counts([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    spread = counts(placement.assign([1] * 12, 4))
    assert spread.sum() == contiguous.sum() == 1200
    per_node = spread.mean(axis=0)
    assert abs(per_node - 4 / 3).max() < 0.15  # every node serves a third of the sample
    assert contiguous.mean(axis=0)[2] < 0.6  # the last node idles in most rounds
    assert (spread.max(axis=1) >= 3).mean() < (contiguous.max(axis=1) >= 3).mean()


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_clients_per_node_is_one_line(value: str) -> None:
    with pytest.raises(UserError, match="clients_per_node"):
        make_cfg(f"simulation.clients_per_node={value}")


def test_bad_batched_and_poll_interval_are_rejected() -> None:
    with pytest.raises(UserError, match="batched"):
        make_cfg("simulation.batched=maybe")
    with pytest.raises(UserError, match="poll_interval_s"):
        make_cfg("simulation.poll_interval_s=0")


def test_gpu_shares_bound_the_workers_by_the_gpus_there_are(monkeypatch) -> None:
    import torch

    cfg = make_cfg("num_clients=64", "simulation.ray_num_cpus=16", "simulation.num_gpus=0.125")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert placement.ray_workers(cfg) == 16  # no CUDA: the clients run on CPU, CPUs count
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert placement.ray_workers(cfg) == 8  # one GPU, 1/8 each
    cfg.simulation.ray_num_gpus = 0.5
    assert placement.ray_workers(cfg) == 4  # what Ray is given wins
    cfg.simulation.num_gpus = 0.0
    assert placement.ray_workers(cfg) == 16

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


def test_members_cover_every_client_once() -> None:
    cfg = make_cfg("num_clients=10", "simulation.clients_per_node=4")
    nodes = placement.num_nodes(cfg)
    assert nodes == 3
    assert [placement.members(cfg, p) for p in range(nodes)] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert make_cfg("num_clients=3", "simulation.clients_per_node=9") \
        .simulation.clients_per_node == 3


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

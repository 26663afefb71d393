"""Which simulated node serves which clients.

A real device is one node serving one client. In simulation a node may serve a group of
clients (`simulation.clients_per_node` = k): node `p` serves clients `p*k .. p*k+k-1`, and the
work of all of its selected clients travels in one message (`fedplat.transport.wire`).
Strategies never see this: they reason about client ids only, and every client's private
state stays namespaced by client id in the node's `Context.state`
(`fedplat.core.client.ClientState`).
"""

from __future__ import annotations

import math
import os

from omegaconf import DictConfig

from fedplat.config.settings import parse_clients_per_node


def ray_workers(cfg: DictConfig) -> int:
    """Clients the Ray backend runs at once: CPUs (and GPUs) over the per-client resources.

    The GPUs are `simulation.ray_num_gpus`, else this machine's CUDA devices (none visible:
    the clients run on CPU and only CPUs count, as `fedplat.runtime.simulation` says).
    """
    sim = cfg.simulation
    cpus = float(sim.ray_num_cpus) if sim.get("ray_num_cpus") else float(os.cpu_count() or 1)
    workers = max(1, math.floor(cpus / float(sim.num_cpus) + 1e-9))
    gpus_each = float(sim.num_gpus)
    gpus: float | None = None
    if gpus_each > 0:
        if sim.get("ray_num_gpus") is not None:
            gpus = float(sim.ray_num_gpus)
        else:
            import torch

            gpus = float(torch.cuda.device_count()) if torch.cuda.is_available() else None
    if gpus is not None:
        workers = min(workers, max(1, math.floor(gpus / gpus_each + 1e-9)))
    return workers


def resolve_clients_per_node(cfg: DictConfig) -> int:
    """Turn `simulation.clients_per_node` (`auto` or an int >= 1) into an int, in place.

    `auto`: on Ray, as many nodes as the backend runs clients at once (each worker then gets one
    message per stage and round, which is the fewest messages that keep every worker busy);
    inline, 1 (the debugging backend keeps one message per client).
    """
    sim = cfg.simulation
    n = int(cfg.num_clients)
    value = parse_clients_per_node(cfg)  # the one check of the key, with its one-line error
    if value == "auto":
        k = math.ceil(n / ray_workers(cfg)) if sim.backend == "ray" else 1
    else:
        k = value
    k = max(1, min(k, n))
    sim.clients_per_node = k
    return k


def num_nodes(cfg: DictConfig) -> int:
    """Nodes needed to serve `num_clients` clients, `clients_per_node` each."""
    return math.ceil(int(cfg.num_clients) / int(cfg.simulation.get("clients_per_node", 1)))


def members(cfg: DictConfig, partition_id: int) -> list[int]:
    """The client ids node `partition_id` serves."""
    k = int(cfg.simulation.get("clients_per_node", 1))
    n = int(cfg.num_clients)
    return list(range(partition_id * k, min(n, (partition_id + 1) * k)))

"""Which simulated node serves which clients.

A real device is one node serving one client. In simulation a node may serve a group of
clients (`simulation.clients_per_node` = k), and the work of all of its selected clients
travels in one message (`fedplat.transport.wire`). Strategies never see this: they reason
about client ids only.

Which clients share a node (`assign`). A client's private state lives in its node's
`Context.state`, namespaced by client id (`fedplat.core.client.ClientState`); the engine keeps
that context with the node, checkpoints are written node by node, and a resumed run restores
each client's entries into the node that serves it. Moving a client to another node from
round to round would mean shipping its state between nodes (or through the server) every round,
so the placement is static: fixed for the run, the same on every node and on the server.

Within that, it spreads expected work. Contiguous groups (node p serving p*k .. p*k+k-1) put
neighbouring ids, and with them whatever a partitioner made similar about neighbours, on one
node, and a round's sample could land mostly there (3 of 4 sampled clients on one node: that
node's message is the round). `assign` instead deals the clients out greedily by expected work
(their training samples: a uniformly sampled client costs in proportion to them), largest
first, each to the node with the least work so far that still has room for it (at most k
clients; ties to the lower node). Every node then carries about the same work, and since
sampling is uniform over clients each node's expected share of a round's sampled work is the
same. Nothing else changes: the set of clients, their data, seeds and state are per client, so
grouped and ungrouped runs give the same numbers.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from fedplat.config.settings import parse_clients_per_node

if TYPE_CHECKING:  # the data package is only needed on the nodes
    from fedplat.data.federated import Federated


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


def assign(work: Sequence[float], k: int) -> list[list[int]]:
    """Clients per node: `len(work)` clients with expected `work`, at most `k` per node.

    Greedy by work (largest first, ties by id), each client to the node with the least work so
    far among those with room (ties to the lower node); every node's list is sorted. A heap of
    the nodes with room keeps it O(clients log nodes) instead of O(clients x nodes).
    """
    n = len(work)
    nodes = math.ceil(n / k) if n else 0
    served: list[list[int]] = [[] for _ in range(nodes)]
    room = [(0.0, q) for q in range(nodes)]  # (work so far, node), a heap
    for cid in sorted(range(n), key=lambda c: (-float(work[c]), c)):
        load, p = heapq.heappop(room)
        served[p].append(cid)
        if len(served[p]) < k:
            heapq.heappush(room, (load + float(work[cid]), p))
    return [sorted(c) for c in served]


#: The last placement computed in this process: (data set, k, the nodes' clients). Every node a
#: worker serves asks for its clients once at set-up; the data set and k are the same for all.
_LAST: list[tuple[object, int, list[list[int]]]] = []


def expected_work(federated: Federated) -> list[int]:
    """Each client's training samples (labeled and unlabeled; a graph client: its nodes).

    A generated data set's sizes are known without generating any client.
    """
    from fedplat.data import FederatedGraph
    from fedplat.data.federated import GeneratedFederatedDataset

    if isinstance(federated, FederatedGraph):
        return [len(nodes) for nodes in federated.nodes]
    if isinstance(federated, GeneratedFederatedDataset):
        n = federated.num_clients
        return [int(v) for v in federated.users.num_train[:n] - federated.num_val()]
    unl = federated.unlabeled
    return [len(split[0]) + (len(unl[c]) if unl else 0)
            for c, split in enumerate(federated.splits)]


def members(cfg: DictConfig, partition_id: int, federated: Federated) -> list[int]:
    """The client ids node `partition_id` serves (`assign` over the clients' expected work)."""
    k = int(cfg.simulation.get("clients_per_node", 1))
    if k == 1:
        return [partition_id]
    if not (_LAST and _LAST[0][0] is federated and _LAST[0][1] == k):
        _LAST[:] = [(federated, k, assign(expected_work(federated), k))]
    return _LAST[0][2][partition_id]

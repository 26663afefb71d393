"""Where Ray listens: a local cluster on loopback, or a running cluster the user names.

Ray binds its servers (GCS, raylet and object manager, every worker's and the driver's gRPC
server, the runtime-env agent) to the node's IP address, and a node's IP address is the
machine's routable one: `ray.init()` and `ray start` replace 127.0.0.1, given as
`_node_ip_address`/`--node-ip-address`, by the address that reaches the internet
(`ray._private.services.resolve_ip_for_localhost`, Ray 2.55). Measured here with psutil, a
default local cluster listened on `::` (all interfaces, IPv4 and IPv6) and the runtime-env agent
on the machine's public address: anyone on the network could submit work to it. Ray uses the
loopback address only where it believes clusters are unsupported; its switch for that,
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (read by `ray._private.ray_constants` at import), is what
`local_on_loopback` sets, in the environment (for the processes Ray starts) and in the already
imported module, while a local cluster starts. Then every listening socket of the driver and of
the processes Ray starts is on 127.0.0.1 (`tests/fedplat/runtime/test_ray_cluster.py`).

Connecting to a running cluster (`simulation.ray_address`, `p2p.ray_address` of the disaster
scenario) is done on purpose: where that cluster listens is set where it was started
(`ray start --head --node-ip-address=...`, README "Running on a Ray cluster").
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fedplat.runtime.net import is_loopback

#: Ray's own switch: when it reads "0", a node's IP address is the loopback address.
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_args(address: str | None, **local: Any) -> dict[str, Any]:
    """`ray.init` keywords: a new local cluster with `local` resources, or `address` alone.

    `address="local"` makes Ray start a new cluster even when `RAY_ADDRESS` is set or a cluster
    already runs on this machine, so null really means "local". Resources (`num_cpus`,
    `num_gpus`) belong to a running cluster, and `ray.init` refuses them with an address.
    """
    if address:
        return {"address": address}
    return {"address": "local", **local}


def on_this_machine_loopback(address: str) -> bool:
    """Whether `address` (HOST:PORT) names a cluster on this machine's loopback interface."""
    return is_loopback(address.rpartition(":")[0])


@contextmanager
def local_on_loopback(address: str | None) -> Iterator[None]:
    """While Ray starts a local cluster inside this block, it binds to 127.0.0.1 only.

    Also for an `address` on loopback (127.0.0.1:PORT, a cluster started that way on this
    machine): Ray would otherwise rewrite 127.0.0.1 into the routable address, where such a
    cluster does not listen. With any other `address` (a cluster the user connects to on
    purpose) nothing changes.
    """
    if address and not on_this_machine_loopback(address):
        yield
        return
    from ray._private import ray_constants

    saved_env = os.environ.get(LOOPBACK_SWITCH)
    saved_const = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved_env is None:
            os.environ.pop(LOOPBACK_SWITCH, None)
        else:
            os.environ[LOOPBACK_SWITCH] = saved_env


def init(address: str | None, local: Mapping[str, Any] | None = None, **common: Any) -> None:
    """`ray.init` a local loopback cluster with `local` resources, or connect to `address`.

    `common` keywords (logging, dashboard) go to `ray.init` in both cases.
    """
    import ray

    with local_on_loopback(address):
        ray.init(**init_args(address, **(local or {})), **common)

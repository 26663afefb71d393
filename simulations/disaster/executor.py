"""Where shards run: in this process (`p2p.backend=local`) or as Ray actors (`ray`).

Both executors expose the same three calls per round (`step`, then `consensus_sums` and
`consensus_distances` on evaluated rounds) and return the same reports, so the learning is
identical on both (tested). The Ray executor never brings models to the driver: each actor
publishes its block of messages to Ray's object store and the driver only passes the object
references on; an actor fetches the blocks of the shards its nodes neighbour (zero-copy on the
same machine, over the network on a multi-machine cluster).

A worker that dies mid-round (its process exits, its machine goes away) or misses
`p2p.round_timeout` is reported as lost: the driver marks its nodes as dead and the round goes
on with the others. Nobody waits for a lost peer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedplat.runtime import ray_cluster
from simulations.disaster.shard import Block, RoundPlan, Shard, ShardSetup, StepReport, WorkerExit

log = logging.getLogger("fedplat")

Labels = Mapping[int, int]


class LocalExecutor:
    """All shards in this process, stepped one after another (tests, gauss_seidel, debugging)."""

    name = "local"

    def __init__(self) -> None:
        self.shards: dict[int, Shard] = {}
        self.blocks: dict[int, Block] = {}

    def start(self, setups: list[ShardSetup], threads: int = 1) -> None:
        """Build the shards; torch uses `threads` threads until `close`.

        Tiny per-node models run much faster on one thread than on several competing ones.
        """
        import torch

        self._threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        self.shards = {s.shard_id: Shard(s) for s in setups}

    def alive_shards(self) -> list[int]:
        """Ids of shards still running."""
        return sorted(self.shards)

    def step(self, plans: Mapping[int, RoundPlan]) -> tuple[dict[int, StepReport], list[int]]:
        """Run one round on every shard; return (reports, lost shard ids)."""
        reports: dict[int, StepReport] = {}
        new_blocks: dict[int, Block] = {}
        lost: list[int] = []
        for sid in sorted(plans):
            try:
                report, block = self.shards[sid].step(plans[sid], self.blocks)
            except WorkerExit as exc:
                log.warning("%s; its nodes are gone", exc)
                del self.shards[sid]
                lost.append(sid)
                continue
            reports[sid], new_blocks[sid] = report, block
        self.blocks = new_blocks  # snapshot semantics: swap after everyone has read
        return reports, lost

    def consensus_sums(self, labels: Labels) -> list[dict[int, tuple[int, np.ndarray]]]:
        """Every shard's per-label (count, sum of models)."""
        return [self.shards[s].consensus_sums(labels) for s in sorted(self.shards)]

    def consensus_distances(self, labels: Labels,
                            means: Mapping[int, np.ndarray]) -> list[dict[int, float]]:
        """Every shard's per-label sum of distances to the label's mean."""
        return [self.shards[s].consensus_distances(labels, means) for s in sorted(self.shards)]

    def get_models(self) -> dict[int, np.ndarray]:
        """All current models (for tests; gathers everything in this process)."""
        out: dict[int, np.ndarray] = {}
        for s in self.shards.values():
            out.update(s.get_models())
        return out

    def close(self) -> None:
        """Drop the shards and restore torch's thread count."""
        import torch

        self.shards.clear()
        if getattr(self, "_threads", None):
            torch.set_num_threads(self._threads)


def _ray_shard_class() -> Any:
    import ray
    import torch

    @ray.remote
    class RayShard:
        """A Shard inside a Ray actor; reads neighbours' blocks from the object store."""

        def __init__(self, setup: ShardSetup, threads: int) -> None:
            torch.set_num_threads(threads)
            self.shard = Shard(setup)
            self.shard.hard_exit = True
            owner = setup.settings["node_shard"]
            self.owner = np.asarray(owner)

        @ray.method(num_returns=2)
        def step(self, plan: RoundPlan, refs: dict[int, Any]) -> tuple[StepReport, Block]:
            if self.shard.settings["order"] == "gauss_seidel":
                return self.shard.step(plan, {})
            wanted = {self.shard.id}
            for v in plan.nodes:
                wanted.update(int(self.owner[j]) for j in plan.neighbours.get(v, []))
            sids = sorted(s for s in wanted if s in refs)
            t0 = time.perf_counter()
            blocks = dict(zip(sids, ray.get([refs[s] for s in sids]))) if sids else {}
            fetch = time.perf_counter() - t0
            report, block = self.shard.step(plan, blocks)
            report.t_exchange += fetch  # reading the neighbours' blocks is exchange too
            return report, block

        def consensus_sums(self, labels: Labels) -> dict[int, tuple[int, np.ndarray]]:
            return self.shard.consensus_sums(labels)

        def consensus_distances(self, labels: Labels,
                                means: Mapping[int, np.ndarray]) -> dict[int, float]:
            return self.shard.consensus_distances(labels, means)

        def get_models(self) -> dict[int, np.ndarray]:
            return self.shard.get_models()

    return RayShard


class RayExecutor:
    """Shards as Ray actors; messages travel through Ray's object store."""

    name = "ray"

    def __init__(self, *, address: str | None = None, num_cpus: float | None = None,
                 cpus_per_worker: float = 1.0, round_timeout: float | None = None) -> None:
        import ray

        self._ray = ray
        self.started_ray = False
        if not ray.is_initialized():
            # the one way fedplat starts Ray: a local cluster on loopback, or `address`
            ray_cluster.init(address, {} if num_cpus is None else {"num_cpus": num_cpus},
                             include_dashboard=False, logging_level="ERROR",
                             log_to_driver=False)
            self.started_ray = True
        self.cpus_per_worker = cpus_per_worker
        self.round_timeout = round_timeout
        self.actors: dict[int, Any] = {}
        self.block_refs: dict[int, Any] = {}

    def start(self, setups: list[ShardSetup], threads: int = 1) -> None:
        """Create one actor per shard (its data goes through the object store once)."""
        cls = _ray_shard_class()
        self.actors = {s.shard_id: cls.options(num_cpus=self.cpus_per_worker)
                       .remote(self._ray.put(s), threads) for s in setups}

    def alive_shards(self) -> list[int]:
        """Ids of actors still running."""
        return sorted(self.actors)

    def _lose(self, sid: int, why: str) -> None:
        log.warning("worker %d lost (%s); its nodes are gone", sid, why)
        actor = self.actors.pop(sid, None)
        self.block_refs.pop(sid, None)
        if actor is not None:
            with contextlib.suppress(Exception):
                self._ray.kill(actor)

    def step(self, plans: Mapping[int, RoundPlan]) -> tuple[dict[int, StepReport], list[int]]:
        """Run one round on every actor in parallel; lost actors are dropped, not awaited."""
        ray = self._ray
        calls = {sid: self.actors[sid].step.remote(plans[sid], self.block_refs)
                 for sid in sorted(plans) if sid in self.actors}
        report_refs = {sid: c[0] for sid, c in calls.items()}
        ready, _ = ray.wait(list(report_refs.values()), num_returns=len(report_refs),
                            timeout=self.round_timeout)
        ready_set = set(ready)
        reports: dict[int, StepReport] = {}
        lost: list[int] = []
        new_refs: dict[int, Any] = {}
        for sid, ref in report_refs.items():
            if ref not in ready_set:
                self._lose(sid, f"no reply within p2p.round_timeout={self.round_timeout} s")
                lost.append(sid)
                continue
            try:
                reports[sid] = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                self._lose(sid, type(exc).__name__)
                lost.append(sid)
                continue
            new_refs[sid] = calls[sid][1]
        self.block_refs = new_refs
        return reports, lost

    def _gather(self, method: str, *args: Any) -> list[Any]:
        ray = self._ray
        out = []
        for sid in sorted(self.actors):
            try:
                out.append(ray.get(getattr(self.actors[sid], method).remote(*args)))
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                self._lose(sid, type(exc).__name__)
        return out

    def consensus_sums(self, labels: Labels) -> list[dict[int, tuple[int, np.ndarray]]]:
        """Every actor's per-label (count, sum of models)."""
        return self._gather("consensus_sums", labels)

    def consensus_distances(self, labels: Labels,
                            means: Mapping[int, np.ndarray]) -> list[dict[int, float]]:
        """Every actor's per-label sum of distances (means go through the object store)."""
        return self._gather("consensus_distances", labels, self._ray.put(dict(means)))

    def get_models(self) -> dict[int, np.ndarray]:
        """All current models gathered here (tests only)."""
        out: dict[int, np.ndarray] = {}
        for part in self._gather("get_models"):
            out.update(part)
        return out

    def close(self) -> None:
        """Stop the actors, and Ray if this executor started it."""
        for sid in list(self.actors):
            with contextlib.suppress(Exception):
                self._ray.kill(self.actors.pop(sid))
        self.block_refs.clear()
        if self.started_ray:
            self._ray.shutdown()

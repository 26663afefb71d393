"""One copy of a run's partitioned data per machine, shared by the local Ray workers.

The driver loads and partitions the data before Ray starts (`simulations.centralized.run`).
Without sharing, every Ray worker process then loads the raw files and builds its own pooled
arrays again: n workers hold n private copies of the same features. `publish` writes the
driver's `FederatedDataset` into the cache once per run (the pooled features and labels as
`.npy` files, every client's index arrays in one flat array, what the loader read as JSON) and
`shared_for_workers` names that directory in the environment, which the workers of the local
Ray cluster inherit from the driver. A worker's `load_federated` then opens the arrays
memory-mapped and read-only (`opened`): their pages are the operating system's page cache, one
copy for every process of the machine, and the worker neither reads the raw files nor
partitions again. The arrays hold exactly the driver's values, so metrics do not change.

What stays private per process: the tensors of the clients a worker serves (a copy of their
rows, made when the client is first used).

Workers of a cluster reached through `simulation.ray_address` (perhaps on other machines) do
not inherit the variable and build their data themselves, as before. A directory that is
missing, unreadable or written for another data key is ignored the same way: sharing only ever
saves memory, it never decides what the data is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from fedplat.data.base import DatasetInfo
from fedplat.data.provenance import DataSource

log = logging.getLogger("fedplat")

#: The environment variable naming the shared directory (set by the driver during a Ray run).
ENV = "FEDPLAT_SHARED_DATA"
#: Folder of the cache that holds the shared directories.
SHARED_DIR = "shared"
_FORMAT = 1


class Partitioned(Protocol):
    """What is shared of a `fedplat.data.federated.FederatedDataset` (which imports this)."""

    info: DatasetInfo
    x: np.ndarray
    y: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    unlabeled: list[np.ndarray]
    server: list[np.ndarray]
    source: DataSource | None
    num_source_train: int


class Shared(NamedTuple):
    """The fields of a `FederatedDataset`, in its order, read back from a shared directory."""

    info: DatasetInfo
    x: np.ndarray
    y: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    unlabeled: list[np.ndarray]
    server: list[np.ndarray]
    source: DataSource | None
    num_source_train: int


def _flatten(fed: Partitioned) -> tuple[np.ndarray, np.ndarray]:
    """Every client's (train, val, test), then the unlabeled, then the server shares' indices."""
    parts = [a for split in fed.splits for a in split] + list(fed.unlabeled) + list(fed.server)
    lengths = np.array([len(a) for a in parts], dtype=np.int64)
    flat = (np.concatenate([np.asarray(a, dtype=np.int64) for a in parts]) if parts
            else np.zeros(0, dtype=np.int64))
    return flat, lengths


def publish(fed: Partitioned, key: str, cache: Path) -> Path | None:
    """Write `fed` (a `FederatedDataset`'s fields) under `cache/shared/`; its directory or None.

    The directory is named by the data key's hash and replaced as a whole (written to a
    temporary name, then renamed), so a reader sees a complete copy or none. The driver has
    just loaded and checked the data, so an older copy under the same name is replaced. A
    cache that cannot be written costs only the sharing (a warning; workers load their own).
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    root = Path(cache) / SHARED_DIR
    final = root / digest
    tmp = root / f".{digest}.{os.getpid()}.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, mode=0o700)
        np.save(tmp / "x.npy", np.ascontiguousarray(fed.x))
        np.save(tmp / "y.npy", np.ascontiguousarray(fed.y))
        flat, lengths = _flatten(fed)
        np.save(tmp / "index.npy", flat)
        np.save(tmp / "lengths.npy", lengths)
        source = dataclasses.asdict(fed.source) if fed.source is not None else None
        meta = {"format": _FORMAT, "key": key, "info": dataclasses.asdict(fed.info),
                "source": source, "num_source_train": int(fed.num_source_train),
                "clients": len(fed.splits), "unlabeled": len(fed.unlabeled),
                "server": len(fed.server)}
        (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except (OSError, TypeError, ValueError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("data  could not share the data between workers (%s); each worker "
                    "loads its own copy", exc)
        return None
    return final


def opened(key: str) -> Shared | None:
    """What the driver shared for `key` (arrays memory-mapped); None if there is none.

    Looks at the directory named by `FEDPLAT_SHARED_DATA` only: unset, missing, unreadable or
    written for another key gives None, and the caller builds the data itself.
    """
    where = os.environ.get(ENV)
    if not where:
        return None
    path = Path(where)
    try:
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != _FORMAT or meta.get("key") != key:
            return None
        x = np.load(path / "x.npy", mmap_mode="r")
        y = np.load(path / "y.npy", mmap_mode="r")
        flat = np.load(path / "index.npy")
        lengths = np.load(path / "lengths.npy")
    except (OSError, ValueError):
        return None
    parts = np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
    n, u = int(meta["clients"]), int(meta["unlabeled"])
    splits = [(parts[3 * c], parts[3 * c + 1], parts[3 * c + 2]) for c in range(n)]
    unlabeled = parts[3 * n:3 * n + u]
    server = parts[3 * n + u:]
    info = meta["info"]
    info["input_shape"] = tuple(info["input_shape"])
    src = meta["source"]
    source = None
    if src is not None:
        src["files"] = tuple(src["files"])
        source = DataSource(**src)
    return Shared(DatasetInfo(**info), x, y, splits, list(unlabeled), list(server), source,
                  int(meta["num_source_train"]))


@contextlib.contextmanager
def shared_for_workers(fed: Partitioned, key: str, cache: Path) -> Iterator[Path | None]:
    """Publish `fed` and name it in the environment for the duration of the block.

    Used around the launch of a local Ray cluster, whose workers inherit the driver's
    environment. The directory stays in the cache afterwards (the next run with the same data
    replaces it); the variable is restored.
    """
    path = publish(fed, key, cache)
    old = os.environ.get(ENV)
    if path is not None:
        os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old

"""Save and restore everything a run needs to continue: `checkpoint_every=N`, `resume=RUN_DIR`.

Layout inside the run directory::

    checkpoint/latest.json            {"round": r, "dir": "round-r"}, replaced atomically last
    checkpoint/round-r/server.pt      round, strategy state (models, optimizers, per-client state)
    checkpoint/round-r/client-<id>.pt each client's private state, written by that client

Client state never travels to the server (HyperFL's private embedding, FED-PUB's masks must not
leave the device): at a checkpoint the server asks every node to write its clients' state to
disk itself (in deployment under the node's `checkpoint-dir`). Metrics so far are in
metrics.jsonl, which a resumed run truncates to the checkpoint round. No RNG state is needed:
every random draw derives from (seed, round, client id), so a resumed run repeats the numbers
of an uninterrupted one.

Durability and privacy: every file is written to a temporary name, flushed and fsynced, renamed
over the old one, and the directory fsynced, so a crash or power loss leaves the old or the new
checkpoint, never a torn one. Files are readable by their owner only (0o600) and checkpoint
directories 0o700: they hold clients' private state.

Loading never runs code from the file: a client's state is stored as Flower's protobuf
serialisation of its records (inside a torch file read with `weights_only=True`); the server's
state is read with `weights_only=True` when it holds only tensors and containers, and otherwise
with an unpickler that accepts only torch's tensor-rebuilding functions and the classes of
classes (no functions) of fedplat's models and core, the strategies, the running strategy's own
package, and torch.nn / torch.optim. Anything else (`os.system`, `builtins.eval`, ...) is
refused with a `UserError` naming the file.
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import os
import pickle
import shutil
import types
from pathlib import Path
from typing import Any

import torch
from flwr.app import RecordDict
from flwr.common import serde
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

from fedplat.errors import UserError
from fedplat.recording.rundir import CHECKPOINT_DIR, LATEST, read_latest

SERVER_FILE = "server.pt"
#: Marks a client file of the protobuf format (older checkpoints pickled the records).
CLIENT_FORMAT = "fedplat-client-state/1"
FILE_MODE = 0o600
DIR_MODE = 0o700


def round_dir(run_dir: Path, server_round: int) -> Path:
    """Directory of the checkpoint taken after round `server_round`."""
    return Path(run_dir) / CHECKPOINT_DIR / f"round-{server_round}"


def client_file(directory: Path, cid: int) -> Path:
    """File of client `cid`'s private state inside a round directory."""
    return Path(directory) / f"client-{cid}.pt"


def client_ids_in(state: RecordDict) -> list[int]:
    """Client ids with entries in a node's Context.state (keys `c<id>.<name>`)."""
    ids = set()
    for key in state:
        head, dot, _ = key.partition(".")
        if dot and head.startswith("c") and head[1:].isdigit():
            ids.add(int(head[1:]))
    return sorted(ids)


def save_client_states(state: RecordDict, directory: Path) -> list[int]:
    """Write each client's entries of a node's Context.state to `client-<id>.pt`."""
    private_dir(directory)
    written = []
    for cid in client_ids_in(state):
        prefix = f"c{cid}."
        entries = RecordDict({k: v for k, v in state.items() if k.startswith(prefix)})
        blob = serde.recorddict_to_proto(entries).SerializeToString()
        _atomic_save({"format": CLIENT_FORMAT, "records": blob}, client_file(directory, cid))
        written.append(cid)
    return written


def restore_client_state(state: RecordDict, directory: Path, cid: int) -> bool:
    """Load client `cid`'s saved entries into a node's Context.state (False if none saved)."""
    path = client_file(directory, cid)
    if not path.is_file():
        return False
    saved = safe_load(path)
    if isinstance(saved, dict) and saved.get("format") == CLIENT_FORMAT \
            and isinstance(saved.get("records"), bytes):
        records = serde.recorddict_from_proto(ProtoRecordDict.FromString(saved["records"]))
        entries: dict[str, Any] = dict(records.items())
    elif isinstance(saved, dict):  # written by an older fedplat: the records pickled
        entries = saved
    else:
        raise UserError(f"{path} is not a client checkpoint fedplat wrote")
    for key, record in entries.items():
        state[key] = record
    return True


def save_server(run_dir: Path, server_round: int, strategy_state: dict[str, Any]) -> Path:
    """Write the server's state for round `server_round`, then point latest.json at it."""
    directory = round_dir(run_dir, server_round)
    private_dir(directory)
    _atomic_save({"round": server_round, "strategy": strategy_state}, directory / SERVER_FILE)
    latest = Path(run_dir) / CHECKPOINT_DIR / LATEST
    _atomic_write(latest, json.dumps({"round": server_round, "dir": directory.name}).encode())
    for old in (Path(run_dir) / CHECKPOINT_DIR).glob("round-*"):
        if old != directory and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return directory


def latest(run_dir: Path) -> tuple[int, Path] | None:
    """(round, directory) of the newest complete checkpoint, or None."""
    found = read_latest(run_dir)
    return None if found is None else (found[0], Path(run_dir) / CHECKPOINT_DIR / found[1])


def load_server(directory: Path, trusted: tuple[str, ...] = ()) -> dict[str, Any]:
    """The saved server state of a round directory (`trusted`: see `safe_load`)."""
    path = Path(directory) / SERVER_FILE
    state = safe_load(path, trusted)
    if not isinstance(state, dict) or "strategy" not in state:
        raise UserError(f"{path} is not a server checkpoint fedplat wrote (no strategy state)")
    return state


# -- writing: durable, owner-only -----------------------------------------------------------------

def private_dir(directory: Path) -> None:
    """Make `directory` (and a missing checkpoint/ above it) with mode 0o700.

    Existing directories are narrowed to 0o700 too (mkdir's mode is masked by the umask and
    ignored for directories that exist).
    """
    directory = Path(directory)
    for d in (directory.parent, directory) if directory.parent.name == CHECKPOINT_DIR \
            else (directory,):
        d.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(d, DIR_MODE)


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_with(path: Path, write: Any) -> None:
    """Write through `write(file)` to a temporary 0o600 file, fsync, rename, fsync the dir."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an old temp file keeps its mode through O_CREAT
    with os.fdopen(fd, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _atomic_write(path: Path, data: bytes) -> None:
    _atomic_write_with(path, lambda f: f.write(data))


def _atomic_save(obj: Any, path: Path) -> None:
    _atomic_write_with(path, lambda f: torch.save(obj, f))


# -- reading: no code from the file ---------------------------------------------------------------

#: Modules whose classes a strategy's state may hold (models, optimizers, its own bookkeeping).
_TRUSTED_PREFIXES = ("strategies.", "fedplat.models.", "fedplat.core.", "torch.nn.",
                     "torch.optim.")
#: Plain builtins and containers a pickle may name.
_PLAIN = {("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytearray",
                                    "complex", "slice", "range", "object")} | {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "deque"),
    ("collections", "Counter"), ("_codecs", "encode"), ("copyreg", "_reconstructor"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar")}


def _allowed(module: str, name: str, obj: Any, trusted: tuple[str, ...]) -> bool:
    """Whether a pickle may name `module.name` (resolved to `obj`): data, never a function.

    Functions are refused except torch's tensor-rebuilding ones (torch's own `weights_only`
    list) and numpy's array reconstruction; classes only from the trusted modules.
    """
    if (module, name) in _PLAIN:
        return True
    from torch._weights_only_unpickler import _get_allowed_globals

    if f"{module}.{name}" in _get_allowed_globals():
        return True
    if module.startswith("flwr.app.message."):  # records of older client files
        return isinstance(obj, type) or name in ("_check_key", "_check_value")
    if module == "torch" and isinstance(obj, torch.dtype | torch.device | torch.Size):
        return True
    return isinstance(obj, type) and f"{module}.".startswith(trusted)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals `_allowed` accepts (nothing else imported)."""

    trusted: tuple[str, ...] = _TRUSTED_PREFIXES

    def find_class(self, module: str, name: str) -> Any:
        # torch.save writes protocol 2, which names Python 2 modules (__builtin__)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        known = module.split(".")[0] in {"builtins", "collections", "_codecs", "copyreg",
                                         "numpy", "torch", "flwr"} \
            or f"{module}.".startswith(self.trusted)
        obj = super().find_class(module, name) if known else None
        if obj is None or not _allowed(module, name, obj, self.trusted):
            raise pickle.UnpicklingError(f"it refers to {module}.{name}")
        return obj


def safe_load(path: Path, trusted: tuple[str, ...] = ()) -> Any:
    """`torch.load` that never runs code from the file; a refused file is a one-line UserError.

    First with `weights_only=True` (tensors and containers); a state holding models or
    optimizers is then read with the restricted unpickler (see the module docstring), which
    also accepts classes from the module prefixes in `trusted` (a strategy's own package).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError:
        pass
    except Exception as exc:  # not a torch file at all (truncated, garbage)
        raise UserError(f"{path} is not a readable checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); resume from an "
                        "intact run directory") from exc
    unpickler = type("Unpickler", (_RestrictedUnpickler,),
                     {"trusted": _TRUSTED_PREFIXES + tuple(trusted)})
    restricted = types.SimpleNamespace(Unpickler=unpickler, load=pickle.load,
                                       __name__="fedplat_restricted_pickle")
    try:
        return torch.load(io.BytesIO(data), weights_only=False, pickle_module=restricted)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: refused to load: {exc}, which a fedplat checkpoint never "
                        "holds (only tensors, containers and classes of fedplat, its "
                        "strategies and torch.nn/torch.optim); the file was not written by "
                        "fedplat or was altered") from exc


"""Message capture for privacy audits: keep what an honest-but-curious server sees.

With `capture.round=r` (and `capture.clients=[...]`), the server saves, for each chosen client
that trains in round r, every message of that round's training step exactly as it crossed the
wire: the payload the server sent (`down`) and the client's reply (`up`), serialised with
Flower's own protobuf encoding of a RecordDict. Nothing is recomputed: the reply is the object
`Grid.send_and_receive` returned. `fedplat-attack` (fedplat.privacy.cli) reads these files.

Gradient-inversion attacks assume a known local protocol (how many steps on how many images).
`capture.num_samples=B` makes a captured client train, in the capture round only, on a seeded
subset of B of its training samples (`attack_batch`); with a batch size >= B each local epoch
is then one step on the same B images. The subset is a function of (seed, round, client), so
the scoring code can rebuild the true private batch from the seeded data pipeline; the server
never sees it.

Layout: `<run>/capture/round_<r>/client_<c>/<stage>[.<phase>].{down,up}.pb` and `meta.json`
(round, client, exchanges, message bytes, failures).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from flwr.app import RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict
from omegaconf import DictConfig

from fedplat.config.checks import check_int, check_int_list
from fedplat.core import seeding
from fedplat.errors import UserError

if TYPE_CHECKING:  # a type only: the capture stays a leaf below config, data and models
    from fedplat.data import ClientData

log = logging.getLogger("fedplat")

CAPTURE_DIR = "capture"
META_FILE = "meta.json"
#: Control-record key telling a client to train on its attack batch only.
SUBSET_KEY = "capture-samples"


def validate_capture_config(cfg: DictConfig) -> None:
    """`capture.round` in [0, num_rounds], client ids in range, `num_samples` >= 0."""
    if "capture" not in cfg:
        return
    check_int(cfg, "capture.round", lo=0, hi=int(cfg.num_rounds))
    check_int_list(cfg, "capture.clients", lo=0, hi=int(cfg.num_clients) - 1)
    check_int(cfg, "capture.num_samples", lo=0)


def encode(content: RecordDict) -> bytes:
    """Flower's wire encoding of a RecordDict."""
    data: bytes = recorddict_to_proto(content).SerializeToString()
    return data


def decode(data: bytes) -> RecordDict:
    """Inverse of `encode`."""
    proto = ProtoRecordDict()
    proto.ParseFromString(data)
    return recorddict_from_proto(proto)


def attack_batch(seed: int, server_round: int, cid: int, num_train: int, size: int) -> torch.Tensor:
    """Indices (into the client's training split) of its capture-round batch, sorted."""
    if size > num_train:
        raise UserError(f"capture.num_samples={size} exceeds client {cid}'s {num_train} "
                        "training samples; lower it")
    perm = seeding.rng(seed, seeding.CAPTURE, server_round, cid).permutation(num_train)
    return torch.as_tensor(sorted(int(i) for i in perm[:size]), dtype=torch.long)


def restrict(data: ClientData, seed: int, server_round: int, size: int) -> ClientData:
    """`data` with its training split cut to the capture-round batch (`attack_batch`)."""
    idx = attack_batch(seed, server_round, data.cid, data.num_train, size).to(data.x_train.device)
    return replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])


def exchange_name(stage: str, phase: str = "") -> str:
    """`train` or `train.<phase>`: the file stem of one exchange."""
    return f"{stage}.{phase}" if phase else stage


class MessageCapture:
    """Server-side recorder of one round's messages for chosen clients (see module doc)."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        cap = cfg.get("capture")
        self.round = int(cap.round) if cap is not None else 0
        self.clients = set(cap.clients) if cap is not None else set()
        self.num_samples = int(cap.num_samples) if cap is not None else 0
        self.root = Path(run_dir) / CAPTURE_DIR
        self._meta: dict[int, dict[str, Any]] = {}

    def wants(self, server_round: int, stage: str, cid: int) -> bool:
        """True for a training exchange of a chosen client in the capture round."""
        return (self.round > 0 and server_round == self.round and stage == "train"
                and (not self.clients or cid in self.clients))

    def control(self, server_round: int, stage: str, cid: int) -> dict[str, int]:
        """Extra control entries for a message (the attack-batch size, when one is set)."""
        if self.num_samples > 0 and self.wants(server_round, stage, cid):
            return {SUBSET_KEY: self.num_samples}
        return {}

    def check(self, server_round: int) -> None:
        """After a round's training: warn about chosen clients that were not captured."""
        if server_round != self.round:
            return
        missing = sorted(c for c in self.clients if c not in self._meta)
        if missing:
            log.warning("capture: clients %s did not train in round %d; nothing captured for "
                        "them (choose clients the strategy samples that round)", missing,
                        server_round)

    def client_dir(self, server_round: int, cid: int) -> Path:
        """Where client `cid`'s messages of round `server_round` go."""
        return self.root / f"round_{server_round}" / f"client_{cid}"

    def save(self, server_round: int, stage: str, phase: str, cid: int, sent: RecordDict,
             reply: RecordDict | None, failure: str | None = None) -> None:
        """Write one exchange (reply None: failed or late) and refresh the client's meta."""
        out = self.client_dir(server_round, cid)
        out.mkdir(parents=True, exist_ok=True)
        name = exchange_name(stage, phase)
        (out / f"{name}.down.pb").write_bytes(down := encode(sent))
        entry: dict[str, Any] = {"name": name, "stage": stage, "phase": phase,
                                 "bytes_down": len(down)}
        if reply is not None:
            (out / f"{name}.up.pb").write_bytes(up := encode(reply))
            entry["bytes_up"] = len(up)
        else:
            entry["failure"] = failure or "no reply"
        meta = self._meta.setdefault(cid, {"round": server_round, "client": cid, "exchanges": [],
                                           "num_samples": self.num_samples})
        meta["exchanges"] = [e for e in meta["exchanges"] if e["name"] != name] + [entry]
        (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


@dataclass
class CapturedExchange:
    """One exchange as the server saw it: what it sent and what came back (None if nothing)."""

    name: str
    stage: str
    phase: str
    sent: RecordDict
    reply: RecordDict | None


@dataclass
class Capture:
    """Everything captured for one client in one round (read back from a run directory)."""

    run_dir: Path
    round: int
    client: int
    num_samples: int
    exchanges: dict[str, CapturedExchange] = field(default_factory=dict)

    @property
    def main(self) -> CapturedExchange:
        """The main training exchange (`train`)."""
        if "train" not in self.exchanges:
            raise UserError(f"the capture of client {self.client} in round {self.round} has no "
                            "main training exchange")
        return self.exchanges["train"]


def captured(run_dir: Path) -> dict[int, list[int]]:
    """{round: [client ids]} of the captures in a run directory."""
    root = Path(run_dir) / CAPTURE_DIR
    out: dict[int, list[int]] = {}
    for meta in sorted(root.glob(f"round_*/client_*/{META_FILE}")):
        server_round = int(meta.parent.parent.name.split("_")[1])
        out.setdefault(server_round, []).append(int(meta.parent.name.split("_")[1]))
    return {r: sorted(c) for r, c in sorted(out.items())}


def load_capture(run_dir: Path, server_round: int | None = None, cid: int | None = None) -> Capture:
    """Read one client's capture; `None` picks the only (or first) round / client captured."""
    available = captured(run_dir)
    if not available:
        raise UserError(f"no captured messages in {run_dir}: rerun training with "
                        "capture.round=R capture.clients=[...] (see docs/privacy.md)")
    if server_round is None:
        server_round = next(iter(available))
    if server_round not in available:
        raise UserError(f"no capture of round {server_round} in {run_dir} (captured rounds: "
                        f"{', '.join(map(str, available))})")
    if cid is None:
        cid = available[server_round][0]
    if cid not in available[server_round]:
        raise UserError(f"client {cid} was not captured in round {server_round} of {run_dir} "
                        f"(captured: {', '.join(map(str, available[server_round]))})")
    folder = Path(run_dir) / CAPTURE_DIR / f"round_{server_round}" / f"client_{cid}"
    meta = json.loads((folder / META_FILE).read_text())
    cap = Capture(Path(run_dir), server_round, cid, int(meta.get("num_samples", 0)))
    for entry in meta["exchanges"]:
        name = entry["name"]
        up = folder / f"{name}.up.pb"
        cap.exchanges[name] = CapturedExchange(
            name, entry["stage"], entry["phase"], decode((folder / f"{name}.down.pb").read_bytes()),
            decode(up.read_bytes()) if up.is_file() else None)
    return cap


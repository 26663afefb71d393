"""The node runtime: grouped runs equal ungrouped ones; a client fails alone; batched training;
the device facts, the device data cache and deterministic mode."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import run_inline

# Keys that legitimately differ between grouped and ungrouped runs (timing, wire layout).
VOLATILE = ("wall_time_s", "round_time_s", "exchange_s_", "pack_s_", "node_compute_s_",
            "bytes_down_")


def _stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def keep(key: str) -> bool:
        return not any(key.startswith(v) for v in VOLATILE)

    out = []
    for row in rows:
        clean = {k: v for k, v in row.items() if keep(k) and k != "per_client"}
        clean["per_client"] = {c: {k: v for k, v in e.items() if keep(k)}
                               for c, e in row.get("per_client", {}).items()}
        out.append(clean)
    return out


# -- grouped runs equal ungrouped runs ------------------------------------------------------

SMALL = ("num_clients=7", "num_rounds=3", "dataset.num_samples=1400", "model=mlp",
         "seed=5")


SMALL_HN = ("strategy.inner_steps=5", "strategy.hypernet.hidden=16",
            "strategy.hypernet.n_hidden=1")


@pytest.mark.parametrize("strategy", [
    ("strategy=fedavg", "strategy.fraction_train=0.6"),
    ("strategy=fedper", "strategy.fraction_train=0.6"),
    ("strategy=local", "strategy.fraction_train=0.6"),
    # multi-exchange protocol (descriptor, weights, embedding gradient) and unseen clients
    ("strategy=pefll", "strategy.unseen_fraction=0.2", "strategy.fraction_train=0.6",
     *SMALL_HN),
    # private embedding and classifier in each client's state
    ("strategy=hyperfl", "strategy.hypernet.hidden=16"),
], ids=["fedavg", "fedper", "local", "pefll", "hyperfl"])
def test_grouped_run_equals_ungrouped(tmp_path: Path, strategy: tuple[str, ...]) -> None:
    common = (*SMALL, *strategy)
    s1, plain = run_inline(tmp_path / "one", *common, "simulation.clients_per_node=1")
    s3, grouped = run_inline(tmp_path / "three", *common, "simulation.clients_per_node=3")
    assert _stable(grouped) == _stable(plain)
    assert s3["final"] == s1["final"]


def test_grouped_fedavg_sends_the_global_model_once_per_node(tmp_path: Path) -> None:
    _, plain = run_inline(tmp_path / "one", *SMALL, "simulation.clients_per_node=1")
    _, grouped = run_inline(tmp_path / "seven", *SMALL, "simulation.clients_per_node=7")
    model_bytes = plain[0]["bytes_down_train"] / 7
    assert grouped[0]["bytes_down_train"] == pytest.approx(model_bytes, rel=1e-3)
    per_client = grouped[0]["per_client"]["0"]["bytes_down_train"]
    assert per_client == pytest.approx(model_bytes / 7, abs=1)
    assert grouped[0]["bytes_up_train"] == plain[0]["bytes_up_train"]


def test_a_crashing_client_fails_alone_in_its_group(tmp_path: Path) -> None:
    common = (*SMALL, "faults.crash_clients=[1]")
    _, plain = run_inline(tmp_path / "one", *common, "simulation.clients_per_node=1")
    _, grouped = run_inline(tmp_path / "three", *common, "simulation.clients_per_node=3")
    assert _stable(grouped) == _stable(plain)
    assert grouped[0]["failures_train"] == 1
    assert "injected crash" in grouped[0]["per_client"]["1"]["failed_train"]


def test_state_written_before_a_crash_is_rolled_back(tmp_path: Path) -> None:
    common = (*SMALL, "strategy=local", "strategy.client_target=tests.helpers.StateThenCrashClient")
    _, plain = run_inline(tmp_path / "one", *common, "simulation.clients_per_node=1")
    _, grouped = run_inline(tmp_path / "three", *common, "simulation.clients_per_node=3")
    assert grouped[1]["failures_train"] == 1
    # round 3 of client 1 continues from its round-1 model in both runs
    assert _stable(grouped) == _stable(plain)


# -- faults are the client's own, whatever the grouping ------------------------------------

# Client 1 straggles past the deadline in every round; the others answer in time.
STRAGGLER = ("faults.slow_clients=[1]", "faults.slow_delay_s=0.6",
             "simulation.round_timeout=0.4")


def test_a_late_client_is_late_alone_and_its_node_mates_count(tmp_path: Path) -> None:
    """FedPer: each client keeps a private head, so node-mates' state must stand too."""
    common = (*SMALL, "num_rounds=2", "strategy=fedper", *STRAGGLER)
    s1, plain = run_inline(tmp_path / "one", *common, "simulation.clients_per_node=1")
    s3, grouped = run_inline(tmp_path / "three", *common, "simulation.clients_per_node=3")
    assert [r["late_train"] for r in grouped] == [r["late_train"] for r in plain] == [1, 1]
    assert [r["num_train_clients"] - r["late_train"] for r in grouped] == [6, 6]
    assert all("train_loss" not in r["per_client"]["1"] for r in grouped)
    assert all(r["per_client"]["1"]["late_train"] is True for r in grouped)
    assert _stable(grouped) == _stable(plain)
    assert s3["final"] == s1["final"] and s3["faults"] == s1["faults"]
    assert s3["faults"]["late"] == 2


def test_stragglers_timeouts_crashes_and_dropouts_count_the_same_grouped(tmp_path: Path) -> None:
    """Seeded draws: some clients straggle past the deadline, some crash, some are offline;
    the node runs them side by side in one message."""
    common = (*SMALL, "num_rounds=2", "strategy=fedper", "faults.slow_prob=0.3",
              "faults.slow_delay_s=0.5", "simulation.round_timeout=0.3", "faults.crash_prob=0.25",
              "faults.dropout_prob=0.15")
    _, plain = run_inline(tmp_path / "one", *common, "simulation.clients_per_node=1")
    _, grouped = run_inline(tmp_path / "four", *common, "simulation.clients_per_node=4")
    keys = ("late_train", "failures_train", "dropped_train")
    counts = [tuple(r[k] for k in keys) for r in grouped]
    assert counts == [tuple(r[k] for k in keys) for r in plain]
    assert sum(c[0] for c in counts) >= 1 and sum(c[1] for c in counts) >= 1
    assert sum(c[2] for c in counts) >= 1
    assert _stable(grouped) == _stable(plain)


def test_a_straggler_within_the_deadline_delays_nobody_into_lateness(tmp_path: Path) -> None:
    """Three clients of one node each wait 0.25 s: the node's message takes 0.75 s, over the
    0.4 s deadline, yet each client is on time by its own clock."""
    _, rows = run_inline(tmp_path, *SMALL, "faults.slow_clients=[0,1,2]",
                         "faults.slow_delay_s=0.25", "simulation.round_timeout=0.4",
                         "simulation.clients_per_node=7", "num_rounds=1")
    assert rows[0]["late_train"] == 0 and rows[0]["failures_train"] == 0
    assert rows[0]["evaluated_clients"] == 7


# -- batched training -----------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ("client.momentum=0.9", "client.weight_decay=0.001")])
def test_batched_training_matches_one_client_at_a_time(tmp_path: Path,
                                                       extra: tuple[str, ...]) -> None:
    common = (*SMALL, "simulation.clients_per_node=4", "client.local_epochs=2", *extra)
    _, seq = run_inline(tmp_path / "seq", *common)
    _, bat = run_inline(tmp_path / "bat", *common, "simulation.batched=true")
    assert len(seq) == len(bat) == 3
    for a, b in zip(seq, bat):
        for key in ("train_loss", "test_loss", "test_accuracy"):
            assert math.isclose(a[key], b[key], rel_tol=1e-4, abs_tol=1e-5), key
        for cid, entry in a["per_client"].items():
            assert math.isclose(entry["train_loss"], b["per_client"][cid]["train_loss"],
                                rel_tol=1e-4, abs_tol=1e-5)


def test_batched_falls_back_to_sequential_for_adam(tmp_path: Path) -> None:
    common = (*SMALL, "simulation.clients_per_node=4", "client.optimizer=adam",
              "client.lr=0.001")
    _, seq = run_inline(tmp_path / "seq", *common)
    _, bat = run_inline(tmp_path / "bat", *common, "simulation.batched=true")
    assert _stable(bat) == _stable(seq)  # the same code path: exactly equal


def test_a_subclass_that_changes_train_is_not_batched_behind_its_back(tmp_path: Path) -> None:
    """BadReplyClient alters FedAvg's replies in train: batching must not skip that code."""
    common = (*SMALL, "simulation.clients_per_node=4",
              "strategy.client_target=tests.helpers.BadReplyClient")
    _, rows = run_inline(tmp_path, *common, "simulation.batched=true")
    assert rows[0]["rejected_train"] == 2  # clients 1 and 2 still send their bad replies


# -- batched evaluation -----------------------------------------------------------------------


def test_batched_evaluation_matches_one_client_at_a_time(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Adam keeps training sequential, so only the evaluation differs between the two runs."""
    from fedplat.core.client import Client

    sizes: list[int] = []
    many = Client.eval_metrics_many
    monkeypatch.setattr(Client, "eval_metrics_many",
                        staticmethod(lambda cs, m: sizes.append(len(cs)) or many(cs, m)))
    common = (*SMALL, "simulation.clients_per_node=4", "client.optimizer=adam",
              "client.lr=0.001", "split.val=0.2")
    _, seq = run_inline(tmp_path / "seq", *common)
    assert sizes == []
    _, bat = run_inline(tmp_path / "bat", *common, "simulation.batched=true")
    # every round, each node's clients together (placement decides which node has 4)
    assert [sorted(sizes[i:i + 2]) for i in (0, 2, 4)] == [[3, 4]] * 3
    for a, b in zip(_stable(seq), _stable(bat), strict=True):
        assert a.keys() == b.keys()
        for cid, entry in a["per_client"].items():
            other = b["per_client"][cid]
            assert entry.keys() == other.keys()
            for key, value in entry.items():
                if "loss" in key or "f1" in key:
                    assert math.isclose(value, other[key], rel_tol=1e-6, abs_tol=1e-7), key
                else:
                    assert value == other[key], key  # counts, accuracies, train metrics
        for key in ("test_accuracy", "val_accuracy", "num_evaluate_clients"):
            assert a[key] == b[key]


def test_a_subclass_that_changes_evaluate_is_not_batched(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from fedplat.core.client import Client

    calls: list[int] = []
    monkeypatch.setattr(Client, "eval_metrics_many",
                        staticmethod(lambda cs, m: calls.append(len(cs))))
    _, rows = run_inline(tmp_path, *SMALL, "num_rounds=1", "simulation.clients_per_node=4",
                         "simulation.batched=true", "strategy=local")
    assert calls == [] and rows[0]["num_evaluate_clients"] == 7


def test_batched_evaluation_leaves_the_global_rng_as_the_loop_does() -> None:
    from flwr.app import ArrayRecord, RecordDict

    from fedplat.core.stage import Stage
    from fedplat.transport import wire
    from fedplat.transport.node import run_clients

    worker = _worker_on("cpu", 0)
    model = worker.client(0, {}, Stage.EVALUATE, 1).new_model()
    record = ArrayRecord(model.state_dict())
    batch = wire.Batch(2, "", {c: RecordDict({"arrays": record}) for c in (1, 4, 6)},
                       packed=True)
    out = {}
    for on in (False, True):
        worker.cfg.simulation.batched = on
        replies, errors = run_clients(worker, RecordDict(), Stage.EVALUATE, batch)
        out[on] = (replies, torch.get_rng_state())
        assert not errors and sorted(replies) == [1, 4, 6]
    assert torch.equal(out[False][1], out[True][1])
    for cid in (1, 4, 6):
        a, b = (dict(out[on][0][cid]["metrics"]) for on in (False, True))
        assert a["test_accuracy"] == b["test_accuracy"] and a["num-examples"] == b["num-examples"]
        assert math.isclose(a["test_loss"], b["test_loss"], rel_tol=1e-6)


# -- devices ----------------------------------------------------------------------------------


def test_every_run_records_where_its_clients_ran(tmp_path: Path) -> None:
    from fedplat.cli import format_summary

    summary, rows = run_inline(tmp_path, *SMALL, "simulation.clients_per_node=3",
                               "strategy.fraction_train=0.6")
    for row in rows:
        assert row["devices"] == {"cpu": 7}  # the sampled trainers and every evaluator
        assert {e["device"] for e in row["per_client"].values()} == {"cpu"}
        assert "peak_mem_bytes" not in row  # CUDA only
    devices = summary["devices"]
    assert devices["clients"] == {"cpu": 7} and devices["peak_mem_bytes"] is None
    assert (devices["backend"], devices["num_cpus_each"], devices["at_once"]) == \
        ("inline", 1.0, 1)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["devices"] == devices
    text = format_summary(summary, tmp_path)
    assert "  clients       on cpu (1 CPU each, 1 at once)\n" in text


def _worker_on(device: str, cache_mb: float) -> Any:
    from clients.fedavg import FedAvgClient
    from fedplat.transport.node import Worker
    from tests.helpers import make_cfg

    cfg = make_cfg("simulation.backend=inline", *SMALL)
    return Worker(cfg, torch.device(device), FedAvgClient, int(cache_mb * 2**20))


def test_a_cpu_worker_hands_out_the_partitions_own_tensors() -> None:
    worker = _worker_on("cpu", 0)
    assert worker.data(2) is worker.federated.client(2)
    assert worker.cached_clients == []


def test_a_worker_looks_its_data_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # the data cache key costs ~3 ms: once per client was 35 s of a 10,000-client set-up
    from fedplat.transport import node

    calls = []
    real = node.config_data_key
    monkeypatch.setattr(node, "config_data_key", lambda cfg: calls.append(1) or real(cfg))
    worker = _worker_on("cpu", 0)
    for cid in (0, 1, 2, 1):
        worker.data(cid)
    assert worker.federated is worker.federated and len(calls) == 1


def test_client_data_is_moved_to_the_device_once_and_kept_within_the_bound() -> None:
    from fedplat.transport.node import tensor_bytes

    probe = _worker_on("meta", 0)  # "meta": a non-CPU device any machine has
    size = tensor_bytes(probe.federated.client(0))
    assert size > 0
    assert probe.data(0) is not probe.data(0)  # bound 0: copied for every message
    assert probe.cached_clients == []

    worker = _worker_on("meta", 2.5 * size / 2**20)  # room for two clients
    first = worker.data(0)
    assert first.x_train.device.type == "meta" and first.x_train.shape == \
        worker.federated.client(0).x_train.shape
    assert worker.data(0) is first  # reused, not copied again
    worker.data(1)
    worker.data(0)  # client 0 is now the most recently used
    worker.data(2)  # client 1 leaves
    assert worker.cached_clients == [0, 2]
    assert worker.data(0) is first


def test_deterministic_mode_switches_torch_to_deterministic_kernels() -> None:
    from fedplat.transport.node import set_deterministic

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    try:
        set_deterministic(False)
        assert torch.are_deterministic_algorithms_enabled() == before[0]
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic = before[1]

"""The wire format: one message per node and exchange, plain for one client, packed for several."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedplat.core.records import CONTROL, to_record
from fedplat.transport import wire
from fedplat.transport.wire import payload_bytes


def _payloads() -> tuple[ArrayRecord, dict[int, ArrayRecord], dict[int, RecordDict]]:
    shared = to_record({"w": torch.ones(100)})
    own = {c: to_record({"h": torch.full((10,), float(c))}) for c in (3, 5, 7)}
    payloads = {c: RecordDict({"arrays": shared, "head": own[c],
                               "config": ConfigRecord({"lr": 0.1 * c})}) for c in own}
    return shared, own, payloads


def test_a_packed_batch_sends_a_shared_record_once_and_splits_its_bytes() -> None:
    shared, own, payloads = _payloads()
    packed, shares = wire.encode_batch(payloads, 4, "", {5: {"capture-samples": 8}})
    arrays = [k for k, v in packed.items() if isinstance(v, ArrayRecord)]
    assert len(arrays) == 4  # one shared model + three heads, not 3 models + 3 heads
    assert sum(shares.values()) == payload_bytes(packed)
    assert shares[3] == pytest.approx(shared.count_bytes() / 3 + own[3].count_bytes(), abs=1)
    assert wire.is_packed(packed)

    batch = wire.decode_batch(packed)
    assert batch.packed and batch.server_round == 4 and batch.exchange == ""
    assert sorted(batch.payloads) == [3, 5, 7]
    assert batch.controls == {5: {"capture-samples": 8}}
    for cid, content in batch.payloads.items():
        assert set(content) == {"arrays", "head", "config"}
        assert content["arrays"] is batch.payloads[3]["arrays"]  # decoded once, shared
        assert torch.equal(content["head"].to_torch_state_dict()["h"],
                           torch.full((10,), float(cid)))
        assert content["config"]["lr"] == pytest.approx(0.1 * cid)


def test_a_lone_client_gets_the_plain_format_and_its_own_control() -> None:
    _, _, payloads = _payloads()
    content, shares = wire.encode_batch({5: payloads[5]}, 2, "embed", {5: {"capture-samples": 4}})
    assert not wire.is_packed(content)
    assert dict(content[CONTROL]) == {"cid": 5, "round": 2, "exchange": "embed",
                                      "capture-samples": 4}
    assert shares == {5: payload_bytes(content)}
    assert content == wire.as_sent(payloads[5], 5, 2, "embed", {"capture-samples": 4})
    batch = wire.decode_batch(content)
    assert not batch.packed and (batch.server_round, batch.exchange) == (2, "embed")
    assert list(batch.payloads) == [5] and set(batch.payloads[5]) == {"arrays", "head", "config"}
    assert batch.controls == {5: {"capture-samples": 4}}


def test_packed_replies_carry_per_client_errors_and_plain_replies_are_the_content() -> None:
    _, _, payloads = _payloads()
    packed_batch = wire.decode_batch(wire.encode_batch(payloads, 1, "")[0])
    reply = RecordDict({"metrics": MetricRecord({"a": 1.0})})
    content = wire.encode_replies(packed_batch, {3: reply}, {5: "ValueError: boom"}, 0.5)
    decoded = wire.decode_replies(content, [3, 5, 7])
    assert list(decoded.contents) == [3] and decoded.errors == {5: "ValueError: boom"}
    assert decoded.compute_s == 0.5

    plain_batch = wire.decode_batch(wire.encode_batch({7: payloads[7]}, 1, "")[0])
    content = wire.encode_replies(plain_batch, {7: reply}, {}, 0.5)
    assert content is reply
    assert wire.decode_replies(content, [7]).contents == {7: reply}


def test_device_facts_ride_in_the_control_and_leave_the_client_reply_as_written() -> None:
    _, _, payloads = _payloads()
    reply = RecordDict({"metrics": MetricRecord({"a": 1.0})})
    cpu = {"device": "cpu"}
    gpu = {"device": "cuda:0", "peak-mem": 12345, "device-name": "NVIDIA H200"}

    plain_batch = wire.decode_batch(wire.encode_batch({7: payloads[7]}, 1, "")[0])
    content = wire.encode_replies(plain_batch, {7: reply}, {}, 0.5, {7: gpu})
    assert dict(content[CONTROL]) == gpu and CONTROL not in reply  # the client's is untouched
    decoded = wire.decode_replies(content, [7])
    assert decoded.devices == {7: gpu}
    assert set(decoded.contents[7]) == {"metrics"}

    packed_batch = wire.decode_batch(wire.encode_batch(payloads, 1, "")[0])
    content = wire.encode_replies(packed_batch, {3: reply, 7: reply}, {5: "ValueError: boom"},
                                  0.5, {3: cpu, 7: cpu})
    decoded = wire.decode_replies(content, [3, 5, 7])
    assert decoded.devices == {3: cpu, 7: cpu} and decoded.errors == {5: "ValueError: boom"}
    assert all(set(c) == {"metrics"} for c in decoded.contents.values())
    # a node that sends none (an older node) leaves the facts empty
    assert wire.decode_replies(wire.encode_replies(packed_batch, {3: reply}, {}, 0.1),
                               [3, 5, 7]).devices == {}

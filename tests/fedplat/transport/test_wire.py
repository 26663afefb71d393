"""The wire format: one message per node and exchange, plain for one client, packed for several."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto

from fedplat.core import records
from fedplat.core.records import CONTROL, RowRecord, from_record, to_record, to_rows
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


def test_rows_of_clients_trained_together_travel_as_one_stack_and_come_back_bit_for_bit() -> None:
    _, _, payloads = _payloads()
    batch = wire.decode_batch(wire.encode_batch(payloads, 1, "")[0])
    states = {c: {"w": torch.randn(4, 3, generator=torch.Generator().manual_seed(c)),
                  "b": torch.full((3,), float(c))} for c in (3, 5, 7)}
    odd = {"w": torch.zeros(2, 2)}  # another shape: a stack of its own
    replies = {c: RecordDict({"arrays": to_rows(s), "metrics": MetricRecord({"n": c})})
               for c, s in states.items()}
    replies[5]["extra"] = to_rows(odd)
    content = wire.encode_replies(batch, replies, {}, 0.1)
    arrays = {k: v for k, v in content.items() if isinstance(v, ArrayRecord)}
    assert sorted(arrays) == ["s0", "s1"]  # 2 stacks, not 4 records of 2 arrays each
    assert tuple(arrays["s0"]["w"].shape) == (3, 4, 3)
    assert tuple(arrays["s1"]["w"].shape) == (1, 2, 2)
    sent = recorddict_from_proto(recorddict_to_proto(content))  # through Flower's serde
    decoded = wire.decode_replies(sent, [3, 5, 7])
    assert sorted(decoded.contents) == [3, 5, 7]
    for cid, state in states.items():
        got = decoded.contents[cid]["arrays"]
        assert isinstance(got, RowRecord) and not got.built
        assert got.count_bytes() == to_record(state).count_bytes()
        back = from_record(got)
        assert all(torch.equal(back[k], state[k]) for k in state)
        assert got == to_record(state)  # built on request: the record the client would send
        assert decoded.contents[cid]["metrics"]["n"] == cid
    assert torch.equal(from_record(decoded.contents[5]["extra"])["w"], odd["w"])
    assert set(decoded.contents[3]) == {"arrays", "metrics"}


def test_a_non_finite_row_is_found_and_its_stack_mates_are_known_finite() -> None:
    _, _, payloads = _payloads()
    batch = wire.decode_batch(wire.encode_batch(payloads, 1, "")[0])
    states = {c: {"w": torch.full((2, 3), float(c))} for c in (3, 5, 7)}
    states[5]["w"][1, 0] = float("inf")
    replies = {c: RecordDict({"arrays": to_rows(s)}) for c, s in states.items()}
    decoded = wire.decode_replies(wire.encode_replies(batch, replies, {}, 0.0), [3, 5, 7])
    assert [records.non_finite(decoded.contents[c]) for c in (3, 5, 7)] == [
        None, "non-finite values in arrays/w", None]
    assert decoded.contents[3]["arrays"].known_finite
    assert not decoded.contents[5]["arrays"].known_finite

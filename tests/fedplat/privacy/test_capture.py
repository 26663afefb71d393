"""Message capture: the saved files are the real messages of the chosen client and round."""

import json

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedplat.app import client_app, make_server_app
from fedplat.core.records import CONTROL, from_record
from fedplat.data import load_federated
from fedplat.errors import UserError
from fedplat.privacy.capture import (
    CAPTURE_DIR,
    SUBSET_KEY,
    MessageCapture,
    attack_batch,
    captured,
    decode,
    encode,
    load_capture,
    restrict,
)
from fedplat.recording.recorder import RunRecorder
from fedplat.runtime.inline import run_inline as run_grid
from tests.helpers import make_cfg

SMALL = ("simulation.backend=inline", "num_clients=3", "simulation.torch_threads=1",
         "model=mlp", "model.hidden=[8]")


def test_encode_decode_round_trip():
    content = RecordDict({"arrays": ArrayRecord({"w": torch.arange(6.0).reshape(2, 3)}),
                          "metrics": MetricRecord({"num-examples": 4, "loss": 0.5}),
                          "config": ConfigRecord({"lr": 0.1, "name": "x", "flag": True})})
    back = decode(encode(content))
    assert torch.equal(from_record(back["arrays"])["w"], torch.arange(6.0).reshape(2, 3))
    assert dict(back["metrics"]) == {"num-examples": 4, "loss": 0.5}
    assert dict(back["config"]) == {"lr": 0.1, "name": "x", "flag": True}


def test_capture_holds_the_real_messages_of_the_chosen_client_and_round(tmp_path):
    """Spy on the ClientApp: the files equal what it received and what it returned."""
    cfg = make_cfg(*SMALL, "num_rounds=3", "capture.round=2", "capture.clients=[1]",
                   "capture.num_samples=5", "client.batch_size=8")
    seen = {}

    def spy(message, context):
        reply = client_app(message, context)
        control = message.content[CONTROL]
        if message.metadata.message_type == "train":
            seen[(int(control["round"]), int(control["cid"]))] = (message.content,
                                                                   reply.content)
        return reply

    run_grid(make_server_app(cfg, RunRecorder(tmp_path, cfg)), spy, 3)
    assert captured(tmp_path) == {2: [1]}
    cap = load_capture(tmp_path)
    assert (cap.round, cap.client, cap.num_samples) == (2, 1, 5)
    sent, reply = seen[(2, 1)]
    got = cap.main
    for name, want in from_record(sent["arrays"]).items():
        assert torch.equal(from_record(got.sent["arrays"])[name], want)
    for name, want in from_record(reply["arrays"]).items():
        assert torch.equal(from_record(got.reply["arrays"])[name], want)
    assert dict(got.reply["metrics"]) == dict(reply["metrics"])
    # the capture round's client trained on its 5-sample attack batch, the others on all data
    assert got.reply["metrics"]["num-examples"] == 5
    assert got.sent[CONTROL][SUBSET_KEY] == 5
    assert seen[(2, 0)][1]["metrics"]["num-examples"] > 5
    assert SUBSET_KEY not in seen[(1, 1)][0][CONTROL]
    meta = json.loads((tmp_path / CAPTURE_DIR / "round_2" / "client_1" / "meta.json").read_text())
    assert [e["name"] for e in meta["exchanges"]] == ["train"]
    assert meta["exchanges"][0]["bytes_up"] > 0


def test_attack_batch_is_seeded_and_within_the_training_split(tmp_path):
    cfg = make_cfg(*SMALL)
    n = load_federated(cfg).client(1).num_train
    a = attack_batch(0, 2, 1, n, 4)
    assert torch.equal(a, attack_batch(0, 2, 1, n, 4))
    assert not torch.equal(a, attack_batch(0, 3, 1, n, 4))
    assert len(set(a.tolist())) == 4 and int(a.max()) < n
    with pytest.raises(UserError, match=r"capture\.num_samples"):
        attack_batch(0, 2, 1, n, n + 1)


def test_no_capture_by_default_and_all_clients_when_none_chosen(tmp_path):
    from tests.helpers import run_inline

    run_inline(tmp_path / "off", *SMALL[1:], "num_rounds=1")
    assert not (tmp_path / "off" / CAPTURE_DIR).exists()
    run_inline(tmp_path / "all", *SMALL[1:], "num_rounds=1", "capture.round=1")
    assert captured(tmp_path / "all") == {1: [0, 1, 2]}


@pytest.mark.parametrize(("override", "match"), [
    ("capture.round=4", "capture.round"),
    ("capture.clients=[3]", "capture.clients"),
    ("capture.num_samples=-1", "capture.num_samples"),
])
def test_bad_capture_config(override, match):
    with pytest.raises(UserError, match=match):
        make_cfg(*SMALL, "num_rounds=3", override)


def test_load_capture_errors(tmp_path):
    with pytest.raises(UserError, match="no captured messages"):
        load_capture(tmp_path)
    from tests.helpers import run_inline

    run_inline(tmp_path, *SMALL[1:], "num_rounds=1", "capture.round=1", "capture.clients=[0]")
    with pytest.raises(UserError, match="no capture of round 2"):
        load_capture(tmp_path, 2)
    with pytest.raises(UserError, match="client 1 was not captured"):
        load_capture(tmp_path, 1, 1)


def test_capture_in_a_client_group_equals_one_client_per_node(tmp_path):
    """A node serving all three clients: the captured client's messages are the same."""
    common = (*SMALL, "num_rounds=2", "capture.round=2", "capture.clients=[1]",
              "capture.num_samples=5", "client.batch_size=8")
    caps = {}
    for per_node, nodes in ((1, 3), (3, 1)):
        cfg = make_cfg(*common, f"simulation.clients_per_node={per_node}")
        out = tmp_path / str(per_node)
        run_grid(make_server_app(cfg, RunRecorder(out, cfg)), client_app, nodes)
        caps[per_node] = load_capture(out).main
    one, grouped = caps[1], caps[3]
    assert grouped.reply["metrics"]["num-examples"] == 5
    assert grouped.sent[CONTROL][SUBSET_KEY] == 5
    for name, want in from_record(one.reply["arrays"]).items():
        assert torch.equal(from_record(grouped.reply["arrays"])[name], want)


def test_message_capture_wants_training_of_chosen_clients_in_its_round_only(tmp_path):
    cfg = make_cfg(*SMALL, "num_rounds=3", "capture.round=2", "capture.clients=[1]",
                   "capture.num_samples=4")
    cap = MessageCapture(cfg, tmp_path)
    assert cap.wants(2, "train", 1)
    assert not cap.wants(1, "train", 1) and not cap.wants(2, "evaluate", 1)
    assert not cap.wants(2, "train", 0)
    assert cap.control(2, "train", 1) == {SUBSET_KEY: 4}
    assert cap.control(2, "train", 0) == {} and cap.control(3, "train", 1) == {}
    everyone = MessageCapture(make_cfg(*SMALL, "num_rounds=3", "capture.round=2",
                                       "capture.clients=[]"), tmp_path)
    assert everyone.wants(2, "train", 0) and everyone.control(2, "train", 0) == {}
    off = MessageCapture(make_cfg(*SMALL, "num_rounds=3"), tmp_path)
    assert not off.wants(0, "train", 0) and not off.wants(1, "train", 0)


def test_message_capture_saves_exchanges_and_warns_about_missing_clients(tmp_path, caplog):
    cfg = make_cfg(*SMALL, "num_rounds=3", "capture.round=2", "capture.clients=[0,1]")
    cap = MessageCapture(cfg, tmp_path)
    sent = RecordDict({"config": ConfigRecord({"lr": 0.1})})
    reply = RecordDict({"metrics": MetricRecord({"num-examples": 3})})
    cap.save(2, "train", "", 0, sent, reply)
    cap.save(2, "train", "extra", 0, sent, None, "timed out")
    cap.save(2, "train", "", 0, sent, reply)  # saved again: one entry per exchange
    loaded = load_capture(tmp_path, 2, 0)
    assert sorted(loaded.exchanges) == ["train", "train.extra"]
    assert loaded.exchanges["train.extra"].reply is None
    assert dict(loaded.main.reply["metrics"]) == {"num-examples": 3}
    meta = json.loads((cap.client_dir(2, 0) / "meta.json").read_text())
    assert [e["name"] for e in meta["exchanges"]] == ["train.extra", "train"]
    assert meta["exchanges"][0]["failure"] == "timed out"
    with caplog.at_level("WARNING", logger="fedplat"):
        cap.check(1)
        assert not caplog.records
        cap.check(2)
    assert "clients [1] did not train in round 2" in caplog.text


def test_restrict_cuts_the_training_split_to_the_attack_batch():
    cfg = make_cfg(*SMALL)
    data = load_federated(cfg).client(2)
    small = restrict(data, 0, 3, 4)
    idx = attack_batch(0, 3, 2, data.num_train, 4)
    assert torch.equal(small.x_train, data.x_train[idx])
    assert torch.equal(small.y_train, data.y_train[idx])
    assert torch.equal(small.x_test, data.x_test) and small.cid == 2

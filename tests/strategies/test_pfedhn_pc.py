"""pFedHN-PC: pFedHN whose hypernetwork generates the target without its head."""

import math

import pytest
import torch
from flwr.app import RecordDict

from fedplat.core.records import from_record, to_record
from fedplat.core.strategy import ClientInfo
from fedplat.errors import UserError
from strategies.pfedhn import PFedHN
from strategies.pfedhn_pc import PFedHNPC
from tests.helpers import check_cli_rejects, check_hypernetwork_run_on_images, make_cfg

SMALL = ("num_clients=4", "strategy.hypernet.hidden=8", "strategy.hypernet.n_hidden=1",
         "model=mlp", "model.hidden=[8]")


def _setup(cls, name):
    s = cls(make_cfg(f"strategy={name}", *SMALL))
    s.setup({c: ClientInfo(c, 10, 2, 2, [1] * 10) for c in range(4)})
    return s


def test_the_head_is_left_out_of_every_generated_target():
    pc, plain = _setup(PFedHNPC, "pfedhn_pc"), _setup(PFedHN, "pfedhn")
    body = {"net.1.weight": (8, 40), "net.1.bias": (8,)}  # MLP 40-8-10; the head is net.3
    for payloads in (pc.configure_train(1, [0, 2]), pc.configure_evaluate(1, [1])):
        for rd in payloads.values():
            assert {k: tuple(v.shape) for k, v in from_record(rd["arrays"]).items()} == body
    generated = from_record(plain.configure_train(1, [0])[0]["arrays"])
    assert set(generated) == {*body, "net.3.weight", "net.3.bias"}
    # the hypernetwork lacks the head's output layer: Linear(8, 8 * 10 + 10) with its bias
    pc_params = sum(p.numel() for p in pc.model.parameters())
    plain_params = sum(p.numel() for p in plain.model.parameters())
    assert plain_params - pc_params == (8 + 1) * (8 * 10 + 10)


def test_a_body_only_update_trains_the_hypernetwork():
    s = _setup(PFedHNPC, "pfedhn_pc")
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    theta = from_record(s.configure_train(1, [3])[3]["arrays"])
    delta = {k: torch.full_like(v, 0.01) for k, v in theta.items()}
    metrics = s.aggregate_train(1, {3: RecordDict({"arrays": to_record(delta)})}, {})
    assert math.isfinite(metrics["hn_grad_norm"]) and metrics["hn_grad_norm"] > 0
    assert any(not torch.equal(before[k], v) for k, v in s.model.state_dict().items())


def test_config_pairs_it_with_the_private_head_client_and_the_papers_rate():
    cfg = make_cfg("strategy=pfedhn_pc")
    assert cfg.strategy.client_target == "clients.pfedhn_pc.PFedHNPCClient"
    assert cfg.strategy.lr == 0.05 and make_cfg("strategy=pfedhn").strategy.lr == 0.01


def test_a_target_that_is_only_a_head_is_refused():
    with pytest.raises(UserError, match=r"single layer"):
        make_cfg("strategy=pfedhn_pc", "model=mlp", "model.hidden=[]")
    make_cfg("strategy=pfedhn", "model=mlp", "model.hidden=[]")  # plain pFedHN generates it


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_runs_on_image_datasets(tmp_path, dataset):
    check_hypernetwork_run_on_images(tmp_path, "pfedhn_pc", dataset)


@pytest.mark.parametrize(("args", "message"), [
    (["strategy.hypernet.hidden=-1"],
     "strategy.hypernet.hidden=-1 must be"),
])
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(args, message, capsys,
                                                              monkeypatch, tmp_path):
    check_cli_rejects(["strategy=pfedhn_pc", *args], message, capsys, monkeypatch, tmp_path)


def test_beats_fedavg_on_two_classes_per_client(mnist1d_two_class_run):
    fedavg = mnist1d_two_class_run("fedavg")[0]["final"]["accuracy"]
    ours = mnist1d_two_class_run("pfedhn_pc")[0]["final"]["accuracy"]
    assert ours > fedavg + 0.1, (ours, fedavg)

"""FedPer server: only the base is sent and averaged; the head is found by name."""

import pytest
import torch

from fedplat.core.records import from_record
from fedplat.errors import UserError
from strategies.fedper import FedPer, head_prefix, split_head
from tests.helpers import make_cfg, run_inline

pytest.importorskip("pymetis")

GRAPH = ("dataset=sbm", "dataset.nodes_per_block=60", "partition=metis_disjoint",
         "num_clients=4", "client=graph", "strategy=fedper", "strategy.fraction_evaluate=0",
         "model=gcn", "model.hidden=[16,16]", "simulation.torch_threads=1")


def test_head_prefix_auto_and_split():
    assert head_prefix(["conv1.lin.weight", "clsif.weight", "clsif.bias"], "auto") == "clsif."
    assert head_prefix(["net.1.weight", "net.3.weight", "net.3.bias"], "auto") == "net.3."
    assert head_prefix(["a.weight"], "fc.") == "fc."
    base, head = split_head({"a.w": torch.ones(1), "h.w": torch.zeros(1)}, "h.")
    assert list(base) == ["a.w"] and list(head) == ["h.w"]


def test_server_sends_and_averages_only_the_base():
    s = FedPer(make_cfg(*GRAPH))
    s.setup({})
    assert s.prefix == "clsif." and not any(k.startswith("clsif.") for k in s.global_state)
    payload = s.configure_train(1, [0])[0]
    assert not any(k.startswith("clsif.") for k in from_record(payload["arrays"]))


def test_fedper_graph_run(tmp_path):
    summary, rows = run_inline(tmp_path, *GRAPH, "num_rounds=3")
    assert summary["status"] == "completed" and len(rows) == 3
    assert all(0 <= r["test_accuracy_mean"] <= 1 for r in rows)


def test_bad_head_prefix():
    with pytest.raises(UserError, match="must match some but not all"):
        FedPer(make_cfg(*GRAPH, "strategy.head_prefix=nothing.")).setup({})

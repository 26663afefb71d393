"""Graph data through the generic apps: FedAvg and Local on SBM subgraphs, inline backend."""

import pytest

from fedplat.results import without_timing
from tests.helpers import run_inline

pytest.importorskip("pymetis")

GRAPH_RUN = ("dataset=sbm", "dataset.nodes_per_block=60", "partition=metis_disjoint",
             "num_clients=4", "client=graph", "strategy.fraction_evaluate=0",
             "simulation.torch_threads=1")


@pytest.mark.parametrize("strategy", ["fedavg", "local"])
def test_graph_baselines_run_with_metrics_sent_after_local_training(tmp_path, strategy):
    summary, rows = run_inline(tmp_path / "a", *GRAPH_RUN, f"strategy={strategy}",
                               "num_rounds=3")
    assert summary["status"] == "completed" and summary["model"] == "gcn"
    assert len(rows) == 3
    for row in rows:
        assert "num_evaluate_clients" not in row  # no evaluation stage
        assert row["num_train_clients"] == 4
        assert 0 <= row["test_accuracy_mean"] <= 1 and 0 <= row["val_accuracy_mean"] <= 1
        for entry in row["per_client"].values():
            assert entry["num-test-examples_train"] > 0
    assert summary["best_mean"]["criterion"] == "val_accuracy_mean"
    assert summary["final"]["accuracy_mean"] == rows[-1]["test_accuracy_mean"]
    _, again = run_inline(tmp_path / "b", *GRAPH_RUN, f"strategy={strategy}", "num_rounds=3")
    assert without_timing(rows) == without_timing(again)

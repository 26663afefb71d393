"""Every FedHyper baseline runs from the config on the inline backend with the shared client."""

import pytest

from tests.helpers import run_inline


@pytest.mark.parametrize("name", ["fedadagrad", "fedhyper_adam", "fedexp", "decay_sl"])
def test_runs_and_logs_rates(tmp_path, name):
    summary, rows = run_inline(
        tmp_path, f"strategy={name}", "num_clients=4", "strategy.fraction_train=0.5",
        "strategy.fraction_evaluate=0.5", "num_rounds=2", "model=mlp", "model.hidden=[8]",
        "client.local_epochs=1", "client.batch_size=64", "client.lr=0.05")
    assert summary["status"] == "completed" and len(rows) == 2
    for r in rows:
        assert r["lr_global"] > 0 and r["lr_client_mean"] == r["lr_local"]
        assert r["test_accuracy"] == r["test_accuracy"]  # not NaN
    assert (tmp_path / "rates.png").is_file()

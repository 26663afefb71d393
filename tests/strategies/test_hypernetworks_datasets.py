"""Every hypernetwork method runs on the foundation's image datasets too (one tiny round each).

MNIST-1D is covered end to end by test_hypernetworks_mnist1d.py; here `model=auto` must pick a
target each method can generate on 8x8 digits and 28x28 MNIST, and a run must complete with an
evaluation. CIFAR-10 is not shipped offline, so it is not run here.
"""

from pathlib import Path

import pytest

from fedplat.errors import UserError
from tests.helpers import make_cfg, run_inline

TINY = ("num_clients=4", "num_rounds=1", "eval_every=1", "simulation.torch_threads=1",
        "strategy.hypernet.hidden=8")
PER_METHOD = {
    "pfedhn": ("strategy.inner_steps=2", "strategy.hypernet.n_hidden=1"),
    "pfedhn_pc": ("strategy.inner_steps=2", "strategy.hypernet.n_hidden=1"),
    "hyperfl": ("strategy.local_epochs=1", "strategy.batch_size=200"),
    "pefll": ("strategy.inner_steps=2", "strategy.hypernet.n_hidden=1",
              "strategy.unseen_fraction=0.25", "strategy.clients_per_round=2"),
}


def _available(dataset: str) -> bool:
    try:
        make_cfg(f"dataset={dataset}")
    except UserError:
        return False
    return True


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
@pytest.mark.parametrize("method", sorted(PER_METHOD))
def test_method_runs_on_dataset(tmp_path: Path, method: str, dataset: str):
    if not _available(dataset):
        pytest.skip(f"dataset {dataset} is not available offline here")
    summary, rows = run_inline(tmp_path, f"strategy={method}", f"dataset={dataset}", *TINY,
                               *PER_METHOD[method])
    assert summary["status"] == "completed" and summary["failures"] == 0
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0
    assert rows[-1]["bytes_up_train"] > 0 and rows[-1]["bytes_down_train"] > 0

"""The driver's partitioned data, shared with the local Ray workers through memory-mapped files."""

import json
import logging

import numpy as np
import pytest

from fedplat.data import FederatedDataset, load_federated
from fedplat.data import federated as federated_module
from fedplat.data.federated import data_key
from fedplat.data.shared import ENV, opened, publish, shared_for_workers
from tests.helpers import make_cfg


@pytest.fixture
def fed_and_key():
    cfg = make_cfg("num_clients=5", "split.label_ratio=0.5", "split.server_shares=1")
    fed = load_federated(cfg)
    assert isinstance(fed, FederatedDataset) and fed.unlabeled and fed.server
    return fed, data_key(cfg)


def test_a_worker_opens_exactly_the_drivers_data_memory_mapped(tmp_path, monkeypatch,
                                                               fed_and_key):
    fed, key = fed_and_key
    path = publish(fed, key, tmp_path)
    assert path is not None and path.parent == tmp_path / "shared"
    monkeypatch.setenv(ENV, str(path))
    got = FederatedDataset(*opened(key))
    assert isinstance(got.x, np.memmap) and not got.x.flags.writeable  # the page cache's copy
    assert got.x.dtype == fed.x.dtype and np.array_equal(got.x, fed.x)
    assert np.array_equal(got.y, fed.y)
    assert got.info == fed.info and got.source == fed.source
    assert got.num_source_train == fed.num_source_train
    for a, b in zip(got.splits, fed.splits, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    for a, b in zip(got.unlabeled + got.server, fed.unlabeled + fed.server, strict=True):
        assert np.array_equal(a, b)
    for cid in range(fed.num_clients):  # what a client trains on: the same tensors, bit for bit
        mine, theirs = got.client(cid), fed.client(cid)
        for name, value in vars(theirs).items():
            if hasattr(value, "numpy"):
                assert np.array_equal(getattr(mine, name).numpy(), value.numpy()), name
    # the process-wide loader takes the shared copy when the environment names it
    assert isinstance(federated_module._cached.__wrapped__(key).x, np.memmap)


def test_a_copy_for_other_data_or_none_at_all_is_ignored(tmp_path, monkeypatch, fed_and_key):
    fed, key = fed_and_key
    path = publish(fed, key, tmp_path)
    monkeypatch.delenv(ENV, raising=False)
    assert opened(key) is None
    monkeypatch.setenv(ENV, str(path))
    other = json.loads(key) | {"seed": 123}
    assert opened(json.dumps(other, sort_keys=True)) is None  # another data key
    monkeypatch.setenv(ENV, str(tmp_path / "gone"))
    assert opened(key) is None
    (path / "x.npy").write_bytes(b"not an array")
    monkeypatch.setenv(ENV, str(path))
    assert opened(key) is None  # unreadable: the worker builds its own


def test_publishing_replaces_an_older_copy_and_the_environment_is_restored(
        tmp_path, monkeypatch, fed_and_key):
    fed, key = fed_and_key
    first = publish(fed, key, tmp_path)
    assert first is not None
    (first / "stale").write_text("from an older run")
    monkeypatch.setenv(ENV, "before")
    with shared_for_workers(fed, key, tmp_path) as path:
        assert path == first and not (path / "stale").exists()
        import os

        assert os.environ[ENV] == str(path)
    assert os.environ[ENV] == "before"
    assert [p.name for p in (tmp_path / "shared").iterdir()] == [first.name]  # no temp left


def test_an_unwritable_cache_costs_only_the_sharing(tmp_path, fed_and_key, caplog):
    fed, key = fed_and_key
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache's folder would go")
    with caplog.at_level(logging.WARNING, logger="fedplat"):
        assert publish(fed, key, blocker) is None
    assert "each worker loads its own copy" in caplog.text

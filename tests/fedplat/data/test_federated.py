"""The federated view: every client's split (samples or subgraph), hidden labels, server shares."""

import hashlib
import importlib.util
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fedplat.data import build_federated, validate_data_config
from fedplat.data.federated import FederatedGraph, GraphClientData
from fedplat.data.sources import shared_data_dir
from fedplat.errors import UserError
from tests.helpers import make_cfg

# -- sample datasets -----------------------------------------------------------------------------


def test_client_splits_cover_the_pool_disjointly():
    fed = build_federated(make_cfg("num_clients=7", "partition=dirichlet", "partition.alpha=0.5"))
    all_idx = np.concatenate([np.concatenate(s) for s in fed.splits])
    assert len(all_idx) == len(np.unique(all_idx)) == len(fed.y) == 5000
    c = fed.client(3)
    train, val, test = fed.splits[3]
    assert c.x_train.shape == (len(train), 40) and c.y_test.dtype == torch.int64
    n = len(train) + len(val) + len(test)
    assert len(test) == round(0.2 * n) and len(val) == round(0.1 * n)
    counts = fed.label_counts()
    assert counts.shape == (7, 10) and counts.sum() == sum(len(s[0]) for s in fed.splits)


def test_same_seed_same_partition_other_seed_differs():
    a = build_federated(make_cfg("num_clients=5", "seed=1"))
    b = build_federated(make_cfg("num_clients=5", "seed=1"))
    c = build_federated(make_cfg("num_clients=5", "seed=2"))
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a.splits, b.splits))
    assert not np.array_equal(a.splits[0][0], c.splits[0][0])


def test_pathological_train_and_test_share_classes():
    fed = build_federated(make_cfg("num_clients=10", "partition=pathological"))
    for cid in range(10):
        c = fed.client(cid)
        assert set(c.y_test.tolist()) <= set(c.y_train.tolist())
        assert len(set(c.y_train.tolist())) == 2


def test_clients_without_training_data_are_named():
    cfg = make_cfg("num_clients=2500", "split.test=0.5", "split.val=0.4")
    with pytest.raises(UserError, match=r"client \d+ gets no training samples"):
        build_federated(cfg)


def _digest(fed) -> str:
    h = hashlib.sha256()
    for t in fed.splits:
        for a in t:
            h.update(np.asarray(a, np.int64).tobytes())
            h.update(b"|")
    for a in fed.unlabeled:
        h.update(np.asarray(a, np.int64).tobytes())
        h.update(b"u")
    for a in fed.server:
        h.update(np.asarray(a, np.int64).tobytes())
        h.update(b"s")
    return h.hexdigest()[:16]


# Digests of every sample partition on digits, computed with the code before the data layer
# was split into one module per dataset and per partitioner (commit b40d790): the move must
# not change a single index.
@pytest.mark.parametrize(("overrides", "digest"), [
    (("partition=iid", "num_clients=5"), "2bde89211c146db1"),
    (("partition=dirichlet", "num_clients=5"), "2ca8dbf0bbd596cd"),
    (("partition=pathological", "num_clients=5"), "0b3304ea8fe652ff"),
    (("partition=shards", "num_clients=5"), "1735659207b788c0"),
    (("partition=label_groups", "num_clients=5", "partition.local_size=100",
      "partition.test_size=30", "partition.block=counts"), "b23c0d8a31fcc035"),
    (("partition=iid", "num_clients=4", "split.server_shares=2", "split.label_ratio=0.5"),
     "ab0f63e23a4f7679"),
])
def test_partitions_are_pinned(tmp_path, overrides, digest):
    cfg = make_cfg("dataset=digits", "seed=2", *overrides, f"cache_dir={tmp_path}")
    assert _digest(build_federated(cfg)) == digest


# -- hidden labels -------------------------------------------------------------------------------


def test_label_ratio_hides_labels_of_the_same_training_split():
    full = build_federated(make_cfg("num_clients=4", "split.val=0"))
    semi = build_federated(make_cfg("num_clients=4", "split.val=0", "split.label_ratio=0.25"))
    for cid in range(4):
        train_full = full.splits[cid][0]
        lab, _, test = semi.splits[cid]
        hidden = semi.unlabeled[cid]
        assert np.array_equal(np.sort(np.concatenate([lab, hidden])), train_full)
        assert np.array_equal(test, full.splits[cid][2])
        assert len(lab) == round(0.25 * len(train_full))
        c = semi.client(cid)
        assert torch.equal(c.x_unlabeled, torch.from_numpy(semi.x[hidden]))
        assert c.num_train == len(lab) and c.num_unlabeled == len(hidden)
        assert torch.equal(c.x_train_all[:len(lab)], c.x_train)
    # the label histogram the server learns covers the labeled samples only
    assert semi.label_counts().sum() == sum(len(s[0]) for s in semi.splits)


def test_shuffling_hidden_labels_changes_no_client_tensor():
    cfg = make_cfg("num_clients=3", "split.label_ratio=0.1")
    a = build_federated(cfg)
    b = build_federated(cfg)
    hidden = np.concatenate(b.unlabeled)
    b.y[hidden] = np.random.default_rng(1).permutation(b.y[hidden])
    b.y[hidden[:5]] = 9 - b.y[hidden[:5]]  # and some labels simply changed
    for cid in range(3):
        ca, cb = a.client(cid), b.client(cid)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "x_unlabeled"):
            assert torch.equal(getattr(ca, name), getattr(cb, name)), name


def test_label_ratio_zero_refused_for_label_only_strategies():
    with pytest.raises(UserError, match=r"split.label_ratio=0 leaves the clients no labels"):
        make_cfg("split.label_ratio=0")
    with pytest.raises(UserError, match=r"split.label_ratio=1.5 is out of range"):
        make_cfg("split.label_ratio=1.5")


# -- server shares -------------------------------------------------------------------------------


def test_server_shares_are_the_first_shares_and_not_clients():
    plain = build_federated(make_cfg("num_clients=6", "split.val=0"))
    fed = build_federated(make_cfg("num_clients=4", "split.server_shares=2", "split.val=0"))
    assert fed.num_clients == 4 and fed.num_server_shares == 2
    for m in range(2):
        assert np.array_equal(fed.server[m], np.sort(np.concatenate(plain.splits[m])))
        x, y = fed.server_share(m)
        assert x.shape == (len(fed.server[m]), 40) and torch.equal(
            y, torch.from_numpy(fed.y[fed.server[m]]))
    for cid in range(4):
        assert np.array_equal(fed.splits[cid][0], plain.splits[cid + 2][0])
    server = set(np.concatenate(fed.server).tolist())
    assert not server & set(np.concatenate([np.concatenate(s) for s in fed.splits]).tolist())


def test_too_many_shares_is_one_line():
    with pytest.raises(UserError, match=r"num_clients \+ split.server_shares = 1798 exceeds"):
        make_cfg("dataset=digits", "num_clients=1790", "split.server_shares=8")


@pytest.mark.parametrize(("value", "message"), [
    (-1, "split.server_shares=-1 is out of range: must be in [0, inf]"),
    (1.5, "split.server_shares=1.5 must be an integer"),
    (True, "split.server_shares=True must be an integer"),
])
def test_server_shares_value_is_checked_by_the_data_layer(value, message):
    cfg = make_cfg("num_clients=4")
    cfg.split.server_shares = value
    with pytest.raises(UserError) as info:
        validate_data_config(cfg)
    assert str(info.value) == message


def test_server_shares_do_not_apply_to_graphs():
    with pytest.raises(UserError, match=r"split\.server_shares and split\.label_ratio apply to "
                                        r"feature datasets, not to graph dataset 'sbm'"):
        make_cfg("dataset=sbm", "partition=metis_disjoint", "split.server_shares=1")


# -- graph datasets ------------------------------------------------------------------------------

CORA_RAW = shared_data_dir() / "planetoid" / "Cora" / "raw"
needs_cora = pytest.mark.skipif(
    not (CORA_RAW / "ind.cora.x").is_file(),
    reason="Cora raw files not found in ../shared/data/planetoid/Cora/raw; set FEDPLAT_DATA_DIR")
needs_metis = pytest.mark.skipif(importlib.util.find_spec("pymetis") is None,
                                 reason="pymetis not installed (pip install 'fedplat[graph]')")

SBM = {"name": "sbm", "blocks": 4, "nodes_per_block": 100, "num_classes": 5, "num_features": 8,
       "intra_degree": 8.0, "inter_degree": 0.5, "homophily": 0.8, "label_alpha": 1.0,
       "feature_signal": 1.0, "block_shift": 0.5, "seed": 0, "lcc": True,
       "normalize_features": False, "split_train": 0.2, "split_test": 0.4, "split_seed": 1234}
DISJOINT = {"name": "metis_disjoint", "metis_seed": 1234}
OVERLAP = {"name": "metis_overlapping", "metis_seed": 1234, "clients_per_community": 5,
           "sample_ratio": 0.5, "sample_seed": 1234}


def graph_cfg(partition, num_clients, dataset=None, tmp=""):
    return OmegaConf.create({
        "dataset": dataset or SBM, "partition": partition, "num_clients": num_clients,
        "seed": 0, "split": {"val": 0.1, "test": 0.2}, "cache_dir": tmp})


def _edges_of(fed: FederatedGraph, cid: int) -> set[tuple[int, int]]:
    c = fed.client(cid)
    g = c.global_ids.numpy()
    return {(int(g[s]), int(g[d])) for s, d in c.edge_index.t().tolist()}


@needs_metis
@pytest.mark.parametrize("k", [1, 4, 8])
def test_disjoint_parts_cover_the_graph_and_drop_only_cut_edges(k):
    fed = build_federated(graph_cfg(DISJOINT, k))
    assert isinstance(fed, FederatedGraph) and fed.num_clients == k
    joined = np.concatenate(fed.nodes)
    assert len(joined) == len(np.unique(joined)) == fed.graph.num_nodes  # disjoint cover
    owner = np.empty(fed.graph.num_nodes, dtype=int)
    for cid, nodes in enumerate(fed.nodes):
        owner[nodes] = cid
    src, dst = fed.graph.edge_index
    kept = set()
    for cid in range(k):
        edges = _edges_of(fed, cid)
        assert all(owner[s] == cid and owner[d] == cid for s, d in edges)  # no cross edges
        kept |= edges
    inside = {(int(s), int(d)) for s, d in zip(src, dst) if owner[s] == owner[d]}
    assert kept == inside  # induced: every inside edge survives
    if k == 1:
        assert len(kept) == src.size


@needs_metis
def test_disjoint_client_splits_inherit_the_global_split():
    fed = build_federated(graph_cfg(DISJOINT, 4))
    total = np.zeros(3, dtype=int)
    for cid in range(4):
        c = fed.client(cid)
        assert isinstance(c, GraphClientData)
        parts = [c.train_idx, c.val_idx, c.test_idx]
        assert sum(len(p) for p in parts) == c.num_nodes  # every node in one split
        g = fed.graph.split[c.global_ids.numpy()]
        for s, idx in enumerate(parts):
            assert np.all(g[idx.numpy()] == s)
            total[s] += len(idx)
        assert c.num_train >= 1 and torch.equal(c.y_train, c.y[c.train_idx])
    n = fed.graph.num_nodes
    assert total.tolist() == [round(0.2 * n), n - round(0.2 * n) - round(0.4 * n),
                              round(0.4 * n)]
    assert fed.label_counts(0).sum() == total[0] and fed.label_counts(2).shape == (4, 5)
    assert fed.client_groups() is not None and len(fed.client_groups()) == 4  # planted blocks


@needs_metis
def test_overlapping_federated_clients_hold_copies_of_shared_nodes():
    fed = build_federated(graph_cfg(OVERLAP, 10))
    assert fed.community == [0] * 5 + [1] * 5
    a, b = fed.client(0), fed.client(1)
    shared = np.intersect1d(a.global_ids.numpy(), b.global_ids.numpy())
    assert len(shared) > 0
    # a shared node has the same features and label in both copies
    ia = np.searchsorted(a.global_ids.numpy(), shared[0])
    ib = np.searchsorted(b.global_ids.numpy(), shared[0])
    assert torch.equal(a.x[ia], b.x[ib]) and a.y[ia] == b.y[ib]


def _one_line_error(cfg, match):
    with pytest.raises(UserError) as info:
        build_federated(cfg)
    assert match in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


@needs_metis
def test_graph_partition_errors_are_one_line():
    _one_line_error(graph_cfg(DISJOINT, 1000), "num_clients=1000 exceeds the")
    _one_line_error(graph_cfg(OVERLAP, 12), "num_clients=12 is not a multiple of "
                                            "partition.clients_per_community=5")
    _one_line_error(graph_cfg({**OVERLAP, "sample_ratio": 0.0}, 10),
                    "partition.sample_ratio=0.0 must be in (0, 1]")


@needs_metis
def test_client_without_training_nodes_is_named():
    tiny = {**SBM, "split_train": 0.01}  # 4 training nodes for 40 clients
    with pytest.raises(UserError, match=r"^client \d+ has no training nodes \(\d+ nodes in its "
                                        r"subgraph\)"):
        build_federated(graph_cfg(DISJOINT, 40, tiny))


def test_metis_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymetis", None)  # import pymetis -> ImportError
    _one_line_error(graph_cfg(DISJOINT, 4), "METIS partitioning needs pymetis")


def test_sample_partitioners_do_not_take_graphs_and_back():
    with pytest.raises(UserError, match="partition 'iid' does not apply to graph dataset "
                                        "'sbm' \\(choose from: metis_disjoint"):
        make_cfg("dataset=sbm", "partition=iid")
    with pytest.raises(UserError, match="partition 'metis_disjoint' needs a graph dataset"):
        make_cfg("partition=metis_disjoint")


@needs_metis
@needs_cora
@pytest.mark.parametrize(("k", "lo", "hi", "kept"), [(5, 480, 515, 0.92), (10, 235, 260, 0.88),
                                                      (20, 115, 130, 0.83)])
def test_cora_disjoint_sizes_match_the_reference_ranges(tmp_path, k, lo, hi, kept):
    cora = {"name": "cora", "root": "", "allow_download": False, "lcc": True,
            "normalize_features": True, "split_train": 0.2, "split_test": 0.4,
            "split_seed": 1234}
    fed = build_federated(graph_cfg(DISJOINT, k, cora, str(tmp_path)))
    sizes = [len(n) for n in fed.nodes]
    assert lo <= min(sizes) and max(sizes) <= hi
    inside = sum(fed.client(c).edge_index.shape[1] for c in range(k))
    assert inside / fed.graph.edge_index.shape[1] == pytest.approx(kept, abs=0.02)


@needs_metis
@pytest.mark.parametrize(("overrides", "message"), [
    (["num_clients=5000"], "num_clients=5000 exceeds the"),
    (["num_clients=40", "dataset.split_train=0.01"], "has no training nodes"),
    (["partition=metis_overlapping", "num_clients=12"], "is not a multiple of"),
])
def test_graph_bad_input_stops_at_validation(overrides, message):
    """The CLI validates with the same call (prepare): exit 2 before anything starts."""
    with pytest.raises(UserError) as info:
        make_cfg("dataset=sbm", "partition=metis_disjoint", *overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


@needs_metis
@pytest.mark.parametrize(("partition", "num_clients", "digest"), [
    ("metis_disjoint", 5, "4cd495861314e07a"),
    ("metis_overlapping", 10, "84ab9b2d4c44c917"),
])
def test_graph_partitions_are_pinned(tmp_path, partition, num_clients, digest):
    """Digests from the code before the split into modules (commit b40d790)."""
    fed = build_federated(make_cfg("dataset=sbm", f"partition={partition}", "model=gcn",
                                   f"num_clients={num_clients}", f"cache_dir={tmp_path}"))
    h = hashlib.sha256()
    for a in fed.nodes:
        h.update(np.asarray(a, np.int64).tobytes())
        h.update(b"|")
    for a in (fed.graph.split, fed.graph.x, fed.graph.edge_index):
        h.update(a.tobytes())
    assert h.hexdigest()[:16] == digest


def test_usage_counts_assigned_and_unassigned_samples_of_each_part():
    """The run's record of how many samples of the dataset's parts went to some client."""
    from fedplat.data.base import DatasetInfo
    from fedplat.data.federated import FederatedDataset

    info = DatasetInfo("toy", (2,), 2, "vector", 10)
    x = np.zeros((10, 2), dtype=np.float32)
    y = np.arange(10) % 2
    # parts: samples 0..5 train, 6..9 test; sample 5 and 9 go to no one, 3 is in two clients
    splits = [(np.array([0, 1]), np.array([2]), np.array([6])),
              (np.array([3]), np.array([3, 4]), np.array([7, 8]))]
    fed = FederatedDataset(info, x, y, splits, [np.zeros(0, dtype=np.int64)] * 2, [],
                           num_source_train=6)
    usage = fed.usage()
    assert usage["train"] == {"total": 6, "assigned": 5, "unassigned": 1}
    assert usage["test"] == {"total": 4, "assigned": 3, "unassigned": 1}
    assert usage["clients"] == {"train": 3, "unlabeled": 0, "val": 3, "test": 3}


def test_describe_data_records_source_files_and_hashes_once(tmp_path, monkeypatch):
    """summary.json's `data` entry: loader, files with sha256 (cached), samples, the line."""
    import hashlib

    from fedplat.data import provenance
    from fedplat.data.federated import build_federated, describe_data

    monkeypatch.setenv("FEDPLAT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = make_cfg("num_clients=4", "dataset.num_samples=500", f"cache_dir={tmp_path / 'c'}")
    fed = build_federated(cfg)
    entry = describe_data(fed, tmp_path / "c")
    npz = tmp_path / "c" / "mnist1d_n500.npz"
    assert entry["loader"] == "fedplat.data.datasets.mnist1d" and entry["kind"] == "generated"
    assert entry["files"] == [{"path": str(npz), "bytes": npz.stat().st_size,
                               "sha256": hashlib.sha256(npz.read_bytes()).hexdigest()}]
    assert entry["samples"] == {"train": 400, "test": 100} and entry["num_classes"] == 10
    assert entry["feature_shape"] == [40] and not entry["subset"]
    assert entry["line"].startswith("mnist1d generated by mnist1d (num_samples=500, seed=42) "
                                    "(generated, mnist1d ")
    assert entry["line"].endswith("400 train + 100 test, 10 classes, 40 features")
    # the second description reads the hash from the cache instead of the file
    monkeypatch.setattr(provenance, "sha256_file", lambda p: pytest.fail("rehashed"))
    assert describe_data(fed, tmp_path / "c")["files"] == entry["files"]


def test_describe_data_of_a_graph_gives_nodes_edges_and_split_usage(tmp_path):
    from fedplat.data.federated import build_federated, describe_data

    cfg = make_cfg("dataset=sbm", "partition=metis_disjoint", "num_clients=3",
                   "dataset.blocks=3", "dataset.nodes_per_block=40")
    fed = build_federated(cfg)
    assert isinstance(fed, FederatedGraph)
    entry = describe_data(fed, tmp_path)
    g = fed.graph
    assert entry["graph"] == {"nodes": g.num_nodes, "edges": g.edge_index.shape[1] // 2}
    assert entry["kind"] == "generated" and entry["files"] == []
    assert entry["origin"].startswith("generated by fedplat's stochastic block model (blocks=3")
    usage = entry["partition"]
    assert sum(usage[p]["total"] for p in ("train", "val", "test")) == g.num_nodes
    assert usage["train"]["assigned"] == usage["clients"]["train"]  # disjoint parts
    assert f"{g.num_nodes:,} nodes" in entry["line"]


def test_timed_load_dates_a_cached_build_back_to_when_it_ran(tmp_path, monkeypatch):
    """A build done earlier (config validation builds graphs) still counts in startup_s."""
    import time

    from fedplat.data import federated
    from tests.helpers import make_cfg

    monkeypatch.setenv("FEDPLAT_CACHE_DIR", str(tmp_path))
    cfg = make_cfg("dataset=digits", f"cache_dir={tmp_path}", "num_clients=3")
    before = time.perf_counter()
    fed, started = federated.timed_load(cfg)  # built here: loading starts now
    assert before <= started <= time.perf_counter()
    built = federated._BUILD_SECONDS[federated.data_key(cfg)]
    time.sleep(0.05)
    now = time.perf_counter()
    again, started2 = federated.timed_load(cfg)  # cached: dated back by the build's duration
    after = time.perf_counter()
    assert again is fed and now - built <= started2 <= after - built

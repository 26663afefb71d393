"""METIS subgraph partitioning: disjoint and overlapping properties, client subgraphs, errors."""

import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fedplat.data.federated import FederatedGraph, GraphClientData, build_federated
from fedplat.data.graph_partition import metis, metis_disjoint, metis_overlapping
from fedplat.data.graphs import sbm_graph
from fedplat.data.sources import shared_data_dir
from fedplat.errors import UserError

pytest.importorskip("pymetis")

CORA_RAW = shared_data_dir() / "planetoid" / "Cora" / "raw"
needs_cora = pytest.mark.skipif(
    not (CORA_RAW / "ind.cora.x").is_file(),
    reason="Cora raw files not found in ../shared/data/planetoid/Cora/raw; set FEDPLAT_DATA_DIR")

SBM = {"name": "sbm", "blocks": 4, "nodes_per_block": 100, "num_classes": 5, "num_features": 8,
       "intra_degree": 8.0, "inter_degree": 0.5, "homophily": 0.8, "label_alpha": 1.0,
       "feature_signal": 1.0, "block_shift": 0.5, "seed": 0, "lcc": True,
       "normalize_features": False, "split_train": 0.2, "split_test": 0.4, "split_seed": 1234}


def graph_cfg(partition, num_clients, dataset=None, tmp=""):
    return OmegaConf.create({
        "dataset": dataset or SBM, "partition": partition, "num_clients": num_clients,
        "seed": 0, "split": {"val": 0.1, "test": 0.2}, "cache_dir": tmp})


DISJOINT = {"name": "metis_disjoint", "metis_seed": 1234}
OVERLAP = {"name": "metis_overlapping", "metis_seed": 1234, "clients_per_community": 5,
           "sample_ratio": 0.5, "sample_seed": 1234}


def _edges_of(fed: FederatedGraph, cid: int) -> set[tuple[int, int]]:
    c = fed.client(cid)
    g = c.global_ids.numpy()
    return {(int(g[s]), int(g[d])) for s, d in c.edge_index.t().tolist()}


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


def test_metis_recovers_sbm_blocks_and_is_deterministic():
    _, _, ei, block = sbm_graph(4, 100, 5, 8, intra_degree=8.0, inter_degree=0.5,
                                homophily=0.8, label_alpha=1.0, feature_signal=1.0,
                                block_shift=0.5, seed=0)
    a = metis(ei, 400, 4, seed=1)
    assert np.array_equal(a, metis(ei, 400, 4, seed=1))
    purity = np.mean([np.bincount(block[a == k]).max() / (a == k).sum() for k in range(4)])
    assert purity > 0.9


def test_overlapping_statistics():
    k, per = 20, 5
    part = metis_overlapping(
        *_sbm_edges(), num_clients=k, metis_seed=1234, clients_per_community=per,
        sample_ratio=0.5, sample_seed=7)
    communities = metis(_sbm_edges()[0], 400, k // per, 1234)
    assert part.community == [c for c in range(k // per) for _ in range(per)]  # cid = c*5+i
    sizes = np.bincount(communities)
    for cid, nodes in enumerate(part.nodes):
        c = part.community[cid]
        assert np.all(communities[nodes] == c)  # inside its community
        assert len(nodes) == round(0.5 * sizes[c])  # half of it
        assert len(np.unique(nodes)) == len(nodes)
    same, across = [], []
    for i in range(k):
        for j in range(i + 1, k):
            shared = len(np.intersect1d(part.nodes[i], part.nodes[j])) / len(part.nodes[i])
            (same if part.community[i] == part.community[j] else across).append(shared)
    assert max(across) == 0.0  # different communities share no node
    assert 0.4 < np.mean(same) < 0.6  # two 50 % samples share ~50 % of a client's nodes
    again = metis_overlapping(*_sbm_edges(), num_clients=k, metis_seed=1234,
                              clients_per_community=per, sample_ratio=0.5, sample_seed=7)
    assert all(np.array_equal(u, v) for u, v in zip(part.nodes, again.nodes))


def _sbm_edges():
    _, _, ei, _ = sbm_graph(4, 100, 5, 8, intra_degree=8.0, inter_degree=0.5, homophily=0.8,
                            label_alpha=1.0, feature_signal=1.0, block_shift=0.5, seed=0)
    return ei, 400


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


def test_disjoint_partition_is_a_pure_function_of_the_config():
    p1 = metis_disjoint(*_sbm_edges(), num_clients=5, metis_seed=3)
    p2 = metis_disjoint(*_sbm_edges(), num_clients=5, metis_seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(p1.nodes, p2.nodes))


# --- bad input: one line each ------------------------------------------------------------------


def _one_line_error(cfg, match):
    with pytest.raises(UserError) as info:
        build_federated(cfg)
    assert match in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_more_clients_than_nodes():
    _one_line_error(graph_cfg(DISJOINT, 1000), "num_clients=1000 exceeds the")


def test_overlapping_clients_must_fill_communities():
    _one_line_error(graph_cfg(OVERLAP, 12), "num_clients=12 is not a multiple of "
                                            "partition.clients_per_community=5")
    _one_line_error(graph_cfg({**OVERLAP, "sample_ratio": 0.0}, 10),
                    "partition.sample_ratio=0.0 must be in (0, 1]")


def test_client_without_training_nodes_is_named():
    tiny = {**SBM, "split_train": 0.01}  # 4 training nodes for 40 clients
    with pytest.raises(UserError, match=r"^client \d+ has no training nodes \(\d+ nodes in its "
                                        r"subgraph\)"):
        build_federated(graph_cfg(DISJOINT, 40, tiny))


def test_metis_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymetis", None)  # import pymetis -> ImportError
    _one_line_error(graph_cfg(DISJOINT, 4), "METIS partitioning needs pymetis")


def test_sample_partitioners_do_not_take_graphs_and_back():
    from tests.helpers import make_cfg

    with pytest.raises(UserError, match="partition 'iid' does not apply to graph dataset "
                                        "'sbm' \\(choose from: metis_disjoint"):
        make_cfg("dataset=sbm", "partition=iid")
    with pytest.raises(UserError, match="partition 'metis_disjoint' needs a graph dataset"):
        make_cfg("partition=metis_disjoint")


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


@pytest.mark.parametrize(("overrides", "message"), [
    (["num_clients=5000"], "num_clients=5000 exceeds the"),
    (["num_clients=40", "dataset.split_train=0.01"], "has no training nodes"),
    (["partition=metis_overlapping", "num_clients=12"], "is not a multiple of"),
])
def test_graph_bad_input_stops_at_validation(overrides, message):
    """The CLI validates with the same call (prepare): exit 2 before anything starts."""
    from tests.helpers import make_cfg

    with pytest.raises(UserError) as info:
        make_cfg("dataset=sbm", "partition=metis_disjoint", *overrides)
    assert message in str(info.value) and "\n" not in str(info.value)

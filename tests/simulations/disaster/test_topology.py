import networkx as nx
import pytest

from fedplat.errors import UserError
from simulations.disaster.events import build_timeline
from simulations.disaster.topology import build_graph, read_edge_list


def _t(**kw):
    base = {"type": "barabasi_albert", "n": 50, "m": 2, "p": 0.1, "k": 4, "radius": 0.25,
            "rows": None, "path": "", "seed": 7}
    base.update(kw)
    return base


def test_barabasi_albert_is_networkx_with_the_seed():
    topo = build_graph(_t())
    ref = nx.barabasi_albert_graph(50, 2, seed=7)
    assert sorted(topo.graph.edges) == sorted(tuple(sorted(e)) for e in ref.edges)
    assert topo.n == 50 and topo.graph.number_of_edges() == (50 - 2) * 2
    assert build_graph(_t()).graph.edges == topo.graph.edges  # seeded: same graph again
    assert sorted(build_graph(_t(seed=8)).graph.edges) != sorted(topo.graph.edges)


@pytest.mark.parametrize(
    ("kind", "extra", "check"),
    [
        ("erdos_renyi", {"p": 1.0}, lambda g: g.number_of_edges() == 12 * 11 // 2),
        ("watts_strogatz", {"p": 0.0}, lambda g: all(d == 4 for _, d in g.degree)),
        ("ring", {}, lambda g: all(d == 2 for _, d in g.degree)),
        ("grid", {}, lambda g: g.number_of_edges() == 3 * 3 + 4 * 2),  # 3 x 4 lattice
        ("star", {}, lambda g: g.degree(0) == 11 and g.number_of_edges() == 11),
        ("complete", {}, lambda g: g.number_of_edges() == 66),
        ("random_geometric", {"radius": 2.0}, lambda g: g.number_of_edges() == 66),
    ],
)
def test_every_generator_builds_n_nodes(kind, extra, check):
    topo = build_graph(_t(type=kind, n=12, **extra))
    assert sorted(topo.graph.nodes) == list(range(12))
    assert check(topo.graph)
    if kind in ("random_geometric", "grid"):
        assert set(topo.positions) == set(range(12))  # positions for drawing / disasters


def test_edge_list_file_with_weights(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text("# a triangle and a pendant\n0 1\n1 2 0.5\n2 0\n2,3\n")
    topo = build_graph(_t(type="edge_list", n=5, path=str(f)))
    assert topo.graph.number_of_edges() == 4
    assert topo.graph.edges[1, 2]["weight"] == 0.5
    assert "weight" not in topo.graph.edges[0, 1]
    assert topo.graph.degree(4) == 0  # a node no edge names stays isolated


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 1\n1 7\n", "g.txt:2: edge names unknown node 7; the network has nodes 0..4"),
        ("0 -1\n", "unknown node -1"),
        ("0 x\n", "node ids must be integers"),
        ("0 1 2 3\n", "expected 'u v [weight]'"),
        ("1 1\n", "self-loop"),
    ],
)
def test_edge_list_errors_are_one_line(tmp_path, text, message):
    f = tmp_path / "g.txt"
    f.write_text(text)
    with pytest.raises(UserError, match=None) as info:
        read_edge_list(f, 5)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("topo", "message"),
    [
        (_t(m=50), "topology.m=50 is out of range for barabasi_albert: must be in [1, 49]"),
        (_t(m=0), "topology.m=0 is out of range"),
        (_t(type="erdos_renyi", p=1.5), "topology.p=1.5 is out of range"),
        (_t(type="watts_strogatz", k=50), "topology.k=50 is out of range"),
        (_t(type="grid", rows=7), "topology.rows=7 does not divide n=50"),
        (_t(type="hypercube"), "topology.type='hypercube' is not valid"),
        (_t(type="edge_list"), "needs topology.path=FILE"),
    ],
)
def test_bad_topologies(topo, message):
    with pytest.raises(UserError) as info:
        build_graph(topo)
    assert message in str(info.value)


def test_ba_tree_shatters_when_hubs_go():
    """Spec sanity check: n=50, m=1, 10 % top-degree removal leaves a giant below 30 %."""
    fracs = []
    for seed in range(7, 12):
        topo = build_graph(_t(m=1, seed=seed))
        tl = build_timeline(topo, [{"round": 2, "type": "node_drop", "select": "top_degree",
                                    "fraction": 0.1}], 2, seed)
        g = tl.graph_at(2)
        fracs.append(max(len(c) for c in nx.connected_components(g)) / g.number_of_nodes())
    assert sum(fracs) / len(fracs) < 0.3

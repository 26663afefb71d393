import networkx as nx
import numpy as np
import pytest

from fedplat.errors import UserError
from simulations.disaster.events import build_timeline, select_nodes
from simulations.disaster.topology import Topology


def _topo(g):
    h = nx.Graph()
    h.add_nodes_from(range(g.number_of_nodes()))
    h.add_edges_from(g.edges)
    return Topology("test", h)


def _drop(server_round=2, **kw):
    return {"round": server_round, "type": "node_drop", **kw}


def test_top_degree_picks_the_hub_of_a_star_and_peripheral_the_leaves():
    g = nx.star_graph(5)  # hub 0
    rng = np.random.default_rng(0)
    assert select_nodes(g, "top_degree", 1, rng) == [0]
    assert select_nodes(g, "peripheral", 2, rng) == [1, 2]  # ties by id
    assert select_nodes(g, "betweenness", 1, rng) == [0]
    a = select_nodes(g, "peripheral", 2, np.random.default_rng(3), tie_break="random")
    b = select_nodes(g, "peripheral", 2, np.random.default_rng(3), tie_break="random")
    assert a == b and 0 not in a  # seeded
    assert select_nodes(g, "random", 6, rng) == list(range(6))


def test_node_drop_removes_node_and_edges_at_its_round():
    tl = build_timeline(_topo(nx.star_graph(4)), [_drop(3, select="top_degree", count=1)], 5, 0)
    assert 0 in tl.active_at(2) and tl.graph_at(2).number_of_edges() == 4
    assert 0 not in tl.active_at(3) and tl.graph_at(3).number_of_edges() == 0
    assert tl.active_at(5) == frozenset({1, 2, 3, 4})
    assert tl.dropped_by(2) == frozenset() and tl.dropped_by(3) == {0}
    assert tl.event_rounds() == [3] and tl.relays == frozenset()


def test_relay_victims_are_known_before_round_one():
    tl = build_timeline(_topo(nx.star_graph(4)),
                        [_drop(4, select="top_degree", count=1, victims_hold_data=False)], 5, 0)
    assert tl.relays == {0}
    assert 0 in tl.active_at(3) and 0 not in tl.active_at(4)


def test_events_of_one_round_compose_in_order():
    # path 0-1-2-3-4: dropping node 2 first makes 1 and 3 leaves, so the second top-degree
    # pick sees degrees {0:1, 1:1, 3:1, 4:1} and takes node 0 by id
    path = _topo(nx.path_graph(5))
    tl = build_timeline(path, [_drop(2, nodes=[2]), _drop(2, select="top_degree", count=1)],
                        3, 0)
    assert tl.active_at(2) == frozenset({1, 3, 4})
    assert [ev.nodes for ev in tl.events] == [(2,), (0,)]


def test_links_fail_and_come_back():
    ring = _topo(nx.cycle_graph(6))
    tl = build_timeline(ring, [{"round": 2, "type": "link_drop", "fraction": 0.5},
                               {"round": 4, "type": "link_up", "restore": True},
                               {"round": 5, "type": "link_drop", "edges": [[0, 1]]},
                               {"round": 5, "type": "link_drop", "select": "explicit",
                                "nodes": [3]}], 6, 0)
    assert len(tl.edges_at(1)) == 6 and len(tl.edges_at(2)) == 3 and len(tl.edges_at(3)) == 3
    assert len(tl.edges_at(4)) == 6
    assert set(tl.edges_at(5)) == {(1, 2), (4, 5), (0, 5)}
    assert tl.active_at(5) == frozenset(range(6))  # link failures drop no node


def test_offline_nodes_come_back():
    tl = build_timeline(_topo(nx.path_graph(3)),
                        [{"round": 2, "type": "node_offline", "nodes": [1], "duration": 2}], 5, 0)
    assert [1 in tl.active_at(t) for t in range(1, 6)] == [True, False, False, True, True]
    assert tl.dropped_by(5) == frozenset()


def test_battery_drains_faster_on_hubs():
    tl = build_timeline(_topo(nx.star_graph(3)),
                        [{"type": "battery", "capacity": 10.0, "idle_cost": 1.0,
                          "message_cost": 1.0}], 12, 0)
    # hub: 1 + 3 per round -> empty after round 3, gone at 4; leaves: 2 per round at first
    assert 0 in tl.active_at(3) and 0 not in tl.active_at(4)
    gone = {ev.round: ev.nodes for ev in tl.events if ev.type == "battery"}
    assert gone[4] == (0,)
    assert gone[max(gone)] == (1, 2, 3)  # isolated leaves then last 1/round: 10-6=4 more


def test_rate_drops_are_seeded():
    topo = _topo(nx.complete_graph(30))
    ev = [_drop(2, rate=0.1, until=5)]
    a, b = build_timeline(topo, ev, 6, 1), build_timeline(topo, ev, 6, 1)
    assert a.active_at(6) == b.active_at(6) and len(a.active_at(6)) < 30
    assert a.active_at(6) == a.active_at(5)  # nothing after `until`
    assert build_timeline(topo, ev, 6, 2).active_at(6) != a.active_at(6)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([_drop(select="random", fraction=1.5)],
         "disruption.events[0].fraction=1.5 is out of range: must be in [0.0, 1.0]"),
        ([_drop(select="random", fraction=-0.1)], "fraction=-0.1 is out of range"),
        ([_drop(11, select="random", fraction=0.1)],
         "disruption.events[0].round=11 is beyond the run (num_rounds=10)"),
        ([_drop(select="random")], "needs exactly one of fraction (in [0, 1]) or count"),
        ([_drop(select="central", count=1)], "select='central' is not valid"),
        ([_drop(nodes=[9])], "names unknown node 9"),
        ([_drop(nodes=[1]), _drop(3, nodes=[1])], "names node(s) [1] that are not present"),
        ([_drop(select="random", fraction=1.0)], "leaving none"),
        ([{"round": 1, "type": "flood"}], "type='flood' is not valid"),
        ([{"round": 1, "type": "link_up"}], "needs edges"),
    ],
)
def test_bad_events(events, message):
    with pytest.raises(UserError) as info:
        build_timeline(_topo(nx.path_graph(5)), events, 10, 0)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_allow_empty_lets_every_node_go():
    tl = build_timeline(_topo(nx.path_graph(3)), [_drop(select="random", fraction=1.0)], 3, 0,
                        allow_empty=True)
    assert tl.active_at(2) == frozenset()

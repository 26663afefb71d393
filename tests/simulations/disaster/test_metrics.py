import math

import networkx as nx
import numpy as np
import pytest

from simulations.disaster import metrics as M


def _graph():
    # triangle 0-1-2 with a tail 2-3, a pair 4-5, and isolated 6
    g = nx.Graph()
    g.add_nodes_from(range(7))
    g.add_edges_from([(0, 1), (1, 2), (2, 0), (2, 3), (4, 5)])
    return g


def test_graph_metrics_on_a_hand_built_graph():
    g = _graph()
    m = M.graph_metrics(g)
    assert m == {"alive": 7, "edges": 5, "giant_size": 4, "giant_frac": 4 / 7,
                 "n_components": 3, "n_isolated": 1}
    assert M.components(g) == [[0, 1, 2, 3], [4, 5], [6]]
    assert M.component_labels(M.components(g))[5] == 1


def test_accuracy_inside_and_outside_the_giant():
    g = _graph()
    acc = {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6, 4: 0.5, 5: 0.3, 6: 0.1}
    m = M.accuracy_metrics(acc, M.components(g), relays=[3, 6])
    assert m["acc_mean"] == pytest.approx(np.mean(list(acc.values())))
    assert m["acc_std"] == pytest.approx(np.std(list(acc.values())))
    assert m["acc_min"] == 0.1 and m["acc_max"] == 0.9
    assert m["acc_giant"] == pytest.approx(0.75)
    assert m["acc_outside_giant"] == pytest.approx(0.3)
    assert m["acc_mean_relays"] == pytest.approx(0.35)
    assert m["acc_mean_holders"] == pytest.approx((0.9 + 0.8 + 0.7 + 0.5 + 0.3) / 5)
    table = M.component_table(M.components(g), acc, [3, 6], {0: 0.2, 1: 0.1})
    assert table[0] == {"size": 4, "holders": 3, "acc": pytest.approx(0.75), "consensus": 0.2}
    assert table[2] == {"size": 1, "holders": 0, "acc": 0.1, "consensus": 0.0}


def test_no_outside_nodes_gives_nan_not_an_error():
    g = nx.path_graph(3)
    m = M.accuracy_metrics({0: 0.5, 1: 0.5, 2: 0.5}, M.components(g), relays=[])
    assert math.isnan(m["acc_outside_giant"]) and math.isnan(m["acc_mean_relays"])


def test_consensus_distance():
    same = {v: np.array([1.0, 2.0]) for v in range(4)}
    assert M.consensus_distance(same) == 0.0
    two = {0: np.array([0.0, 0.0]), 1: np.array([2.0, 0.0])}
    assert M.consensus_distance(two) == pytest.approx(1.0)
    # the shard-wise (count, sum) route gives the same means
    means, counts = M.consensus_means([{0: (1, np.array([0.0, 0.0]))},
                                       {0: (1, np.array([2.0, 0.0]))}])
    assert counts == {0: 2} and np.allclose(means[0], [1.0, 0.0])

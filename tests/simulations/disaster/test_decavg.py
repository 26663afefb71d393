import networkx as nx
import numpy as np
import pytest
import torch

from simulations.disaster.decavg import mix, mixing_matrix, row_weights

PATH = nx.path_graph(3)  # 0 - 1 - 2


def test_uniform_matrix_hand_computed():
    w, nodes, fb = mixing_matrix(PATH, rule="uniform", sizes=[10, 0, 30])
    expected = np.array([[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])
    assert nodes == [0, 1, 2] and fb == 0
    np.testing.assert_allclose(w, expected)


def test_data_size_matrix_hand_computed_relay_in_the_middle():
    # node 1 is a relay (no data): it gets weight 0 in others' rows, and its own row is the
    # data-weighted average of its neighbours
    w, _, fb = mixing_matrix(PATH, rule="data_size", sizes=[10, 0, 30])
    expected = np.array([[1, 0, 0], [0.25, 0, 0.75], [0, 0, 1]])
    np.testing.assert_allclose(w, expected)
    assert fb == 0


def test_metropolis_hastings_matrix_hand_computed():
    w, _, _ = mixing_matrix(PATH, rule="metropolis_hastings", sizes=[1, 1, 1])
    expected = np.array([[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(w, expected)


@pytest.mark.parametrize("rule", ["uniform", "data_size", "metropolis_hastings"])
def test_rows_sum_to_one_on_random_graphs(rule):
    rng = np.random.default_rng(0)
    for seed in range(5):
        g = nx.barabasi_albert_graph(30, 2, seed=seed)
        g.remove_nodes_from([0, 1])  # some structure loss, maybe isolated nodes
        sizes = {v: int(rng.integers(0, 3)) * 20 for v in range(30)}  # many relays
        w, _, _ = mixing_matrix(g, rule=rule, sizes=sizes)
        np.testing.assert_allclose(w.sum(axis=1), 1.0)
        assert np.isfinite(w).all() and (w >= 0).all()
        if rule == "metropolis_hastings":
            np.testing.assert_allclose(w, w.T)  # symmetric -> doubly stochastic
            np.testing.assert_allclose(w.sum(axis=0), 1.0)


def test_zero_data_neighbourhood_never_divides_by_zero():
    relays = nx.path_graph(3)  # all relays
    w, _, fb = mixing_matrix(relays, rule="data_size", sizes=[0, 0, 0])
    np.testing.assert_allclose(w, mixing_matrix(relays, rule="uniform", sizes=[0, 0, 0])[0])
    assert fb == 3 and np.isfinite(w).all()
    w, _, fb = mixing_matrix(relays, rule="data_size", sizes=[0, 0, 0],
                             fallback="keep_own")
    np.testing.assert_allclose(w, np.eye(3))
    assert fb == 3


def test_relay_between_two_holders_is_their_size_weighted_mean():
    x = {0: torch.tensor([1.0, 0.0]), 1: torch.tensor([50.0, 50.0]), 2: torch.tensor([5.0, 4.0])}
    row = row_weights(1, [0, 2], rule="data_size", sizes=[10, 0, 30])
    out = mix(row, x)
    assert torch.allclose(out, (10 * x[0] + 30 * x[2]) / 40)  # the relay's own model is ignored


@pytest.mark.parametrize("rule", ["uniform", "data_size", "metropolis_hastings"])
def test_isolated_node_keeps_its_model(rule):
    x = {4: torch.tensor([1.5, -2.0])}
    row = row_weights(4, [], rule=rule, sizes={4: 0}, degrees={4: 0})
    assert row.members == (4,) and row.weights.tolist() == [1.0] and not row.fallback
    assert torch.equal(mix(row, x), x[4])


def test_link_weights_multiply_then_renormalise():
    row = row_weights(0, [1, 2], rule="uniform", sizes=[1, 1, 1],
                      link_weights={1: 2.0, 2: 1.0})
    np.testing.assert_allclose(row.weights, [0.25, 0.5, 0.25])


def test_lost_neighbour_is_just_absent_from_the_row():
    full = row_weights(1, [0, 2], rule="metropolis_hastings", sizes=[1, 1, 1],
                       degrees={0: 1, 1: 2, 2: 1})
    lost = row_weights(1, [0], rule="metropolis_hastings", sizes=[1, 1, 1],
                       degrees={0: 1, 1: 2, 2: 1})
    assert lost.members == (1, 0) and abs(lost.weights.sum() - 1) < 1e-12
    assert full.weights[1] == lost.weights[1]  # W_10 unchanged, the rest stays on the node


def test_repeated_mixing_reaches_consensus_per_component():
    g = nx.Graph()
    g.add_edges_from([(0, 1), (1, 2), (2, 3), (4, 5)])  # two components
    x = np.arange(6, dtype=float)[:, None] * np.array([[1.0, -1.0]])
    for rule in ("uniform", "metropolis_hastings"):
        w, _, _ = mixing_matrix(g, rule=rule, sizes=[1] * 6)
        y = np.linalg.matrix_power(w, 200) @ x
        assert np.allclose(y[:4], y[0]) and np.allclose(y[4:], y[4])
        assert not np.allclose(y[0], y[4])
        if rule == "metropolis_hastings":  # doubly stochastic: the component average
            assert np.allclose(y[0], x[:4].mean(axis=0)) and np.allclose(y[4], [4.5, -4.5])

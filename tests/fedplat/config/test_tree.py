"""Where the config tree lives and which options each group offers."""

from fedplat.config import tree as conftree


def test_the_tree_is_found_and_holds_the_groups():
    assert (conftree.CONF_DIR / "config.yaml").is_file()
    assert conftree.CONF_DIR.name == "conf"
    for group in ("strategy", "dataset", "partition", "model", "client", "simulation",
                  "scenario", "experiment"):
        assert (conftree.CONF_DIR / group).is_dir(), group


def test_available_lists_sorted_stems_with_nested_options(tmp_path, monkeypatch):
    (tmp_path / "strategy" / "family").mkdir(parents=True)
    for name in ("zeta.yaml", "alpha.yaml", "family/beta.yaml", "notes.txt"):
        (tmp_path / "strategy" / name).write_text("name: x\n")
    monkeypatch.setattr(conftree, "CONF_DIR", tmp_path)
    assert conftree.available("strategy") == ["alpha", "family/beta", "zeta"]
    assert conftree.available("nowhere") == []


def test_the_real_groups_offer_their_files():
    assert "fedavg" in conftree.available("strategy")
    assert conftree.available("dataset") == sorted(
        p.stem for p in (conftree.CONF_DIR / "dataset").glob("*.yaml"))

"""The config layer's schema view and its one config comparison (dm_ssl.config)."""

import os

import pytest

from dm_ssl import config


def test_the_reference_describes_every_key_validate_accepts():
    algorithms = ("fixmatch_dm", "selftuning_dm", "supervised_mixup")
    rows = {r.name: r for r in config.describe_keys(algorithms)}
    for alg in algorithms:
        assert set(config.known_keys(alg)) <= set(rows)
    for key, spec in config.DM_SSL_SCHEMA.items():
        assert rows[key].help == spec.help and spec.help, key
    assert rows["p_cutoff"].allowed == "(0, 1]"  # RANGES, as check_ranges reads them
    assert rows["augment_on"].allowed.split(" \\| ") == ["loader", "device"]
    assert "cub200" in rows["dataset"].allowed  # the dataset registry's names
    assert rows["st_queue_size"].algorithms == ("selftuning_dm",)
    assert rows["seed"].allowed == "[0, 4294967296)"
    assert (rows["lr"].resume, rows["epoch"].resume, rows["num_workers"].resume) == (
        "identity", "schedule", "operational")
    assert rows["lr"].algorithms == ()  # every algorithm reads it


def test_config_changes_compares_the_named_keys_with_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = {"lr": 0.03, "seed": 0, "data_dir": "data", "num_workers": 4}
    wanted = {"lr": 0.03, "seed": 1, "data_dir": os.path.abspath("data"), "num_workers": 0}
    assert config.config_changes(saved, wanted, ["lr", "data_dir"]) == []
    assert config.config_changes(saved, wanted, ["seed"]) == ["seed: 0 -> 1"]
    # resume refuses a change of an identity key (lr included: issue #27), a sweep compares
    # all but the operational ones
    assert config.resume_keys(wanted) == ["lr", "seed"]
    assert config.sweep_keys(wanted) == ["lr", "seed"]
    assert config.sweep_keys(["num_train_iter", "num_eval_iter"]) == ["num_train_iter"]
    kinds = {k: config.key_kind(k) for k in ("lr", "dm_w_ll", "T", "num_train_iter", "epoch",
                                             "num_workers", "device", "num_eval_iter")}
    assert kinds == {"lr": "identity", "dm_w_ll": "identity", "T": "identity",
                     "num_train_iter": "schedule", "epoch": "schedule",
                     "num_workers": "operational", "device": "operational",
                     "num_eval_iter": "operational"}


def test_read_run_config(tmp_path):
    assert config.read_run_config(tmp_path) is None
    (tmp_path / "config.yaml").write_text("lr: [unclosed")
    assert config.read_run_config(tmp_path) is None
    (tmp_path / "config.yaml").write_text("lr: 0.1\nlabel_list: lists/a.txt\n")
    got = config.read_run_config(tmp_path)
    assert got["lr"] == 0.1 and os.path.isabs(got["label_list"])


@pytest.mark.parametrize("flags, want", [({}, {}), ({"device": "cpu", "verbose": True},
                                                     {"device": "cpu", "verbose": True})])
def test_command_line_config(tmp_path, flags, want):
    path = tmp_path / "c.yaml"
    path.write_text("algorithm: fixmatch\nnum_train_iter: 100\nepoch: 10\nnum_eval_iter: 50\n")
    cfg, note = config.command_line_config(str(path), ["num_train_iter=7"],
                                           data_dir=None, **flags)
    assert (cfg["num_train_iter"], cfg["epoch"], cfg["num_eval_iter"]) == (7, 1, 7)
    assert "num_train_iter=7" in note and "data_dir" not in cfg
    assert {k: cfg[k] for k in want} == want

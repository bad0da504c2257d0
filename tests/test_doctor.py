"""``dm-ssl doctor``: one table, exit 1 exactly when something would stop the run, and it
writes nothing (no data, no run folder, no weights)."""

from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml

from dm_ssl import cli
from dm_ssl.run import doctor as doc

from .data.cifar_files import write_cifar10

TINY = {"net": "small_cnn", "num_train_iter": 2, "epoch": 1, "num_eval_iter": 2,
        "batch_size": 4, "uratio": 2, "eval_batch_size": 16, "num_workers": 0,
        "progress": False, "device": "cpu"}


def _config(tmp_path: Path, **keys) -> Path:
    cfg = {"algorithm": "fixmatch_dm", "save_dir": str(tmp_path / "runs"), "save_name": "r",
           **TINY, **keys}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(capsys, *argv):
    code = cli.main(["doctor", *argv])
    out = capsys.readouterr()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
            for line in out.out.splitlines()[2:]}
    return code, rows, out


def _tree(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_without_a_config_it_lists_versions_and_devices(capsys):
    code, rows, _ = _run(capsys)
    assert code == 0
    assert rows["torch"][1].startswith(torch.__version__.split("+")[0])
    assert rows["semilearn"][0] == "ok" and "python" in rows
    assert ("cuda:0" in rows) == torch.cuda.is_available()


def test_a_config_whose_data_is_there(tmp_path, capsys):
    write_cifar10(tmp_path / "data")
    path = _config(tmp_path, dataset="cifar10", num_labels=10, data_dir=str(tmp_path / "data"))
    before = _tree(tmp_path)
    code, rows, out = _run(capsys, "--config", str(path))
    assert code == 0, out.err
    status, detail = rows["dataset cifar10"][0], rows["dataset cifar10"][1]
    assert status == "ok" and "10 classes" in detail and "train_lb 10" in detail
    assert rows["disk"][0] == "ok" and "small_cnn" in rows["disk"][1]
    assert _tree(tmp_path) == before   # no run folder, no split file


def test_missing_data_fails_with_the_download_command(tmp_path, capsys):
    path = _config(tmp_path, dataset="cifar10", num_labels=10, data_dir=str(tmp_path / "none"))
    before = _tree(tmp_path)
    code, rows, out = _run(capsys, "--config", str(path))
    assert code == 1 and "would stop the run: dataset cifar10" in out.err
    assert rows["dataset cifar10"][0] == "fail"
    assert "dm-ssl data download cifar10" in rows["dataset cifar10"][1]
    assert _tree(tmp_path) == before


def test_weights_missing_offline_fail_and_cached_weights_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _config(tmp_path, algorithm="fixmatch", dataset="digits", num_labels=20,
                   net="resnet18", use_pretrain=True, img_size=32)
    code, rows, _ = _run(capsys, "--config", str(path))
    assert code == 1 and rows["weights"][0] == "fail"
    assert "resnet18-f37072fd.pth" in rows["weights"][1] and "HF_HUB_OFFLINE" in rows["weights"][1]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    code, rows, _ = _run(capsys, "--config", str(path))
    assert code == 0 and rows["weights"][0] == "warn" and "the run downloads" in rows["weights"][1]
    assert not (tmp_path / "hub").exists()  # doctor itself downloads nothing
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"x")
    code, rows, _ = _run(capsys, "--config", str(path))
    assert code == 0 and rows["weights"][0] == "ok"


def test_too_little_disk_fails(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(doc.shutil, "disk_usage", lambda p: usage(10, 10, 1000))
    path = _config(tmp_path, dataset="digits", num_labels=20, in_channels=1)
    code, rows, _ = _run(capsys, "--config", str(path))
    assert code == 1 and rows["disk"][0] == "fail"


def test_a_bad_config_is_one_error_line(tmp_path, capsys):
    path = _config(tmp_path, dataset="digits", num_labels=20, T=0)
    assert cli.main(["doctor", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config key 'T'" in err[0]


@pytest.mark.parametrize("status,code", [("ok", 0), ("warn", 0), ("fail", 1)])
def test_render_and_exit_status_follow_the_rows(monkeypatch, capsys, status, code):
    monkeypatch.setattr(doc, "environment", lambda: [doc.Check("x", status, "a | b")])
    assert cli.main(["doctor"]) == code
    assert f"| x | {status} | a / b |" in capsys.readouterr().out


def test_timm_weights_are_looked_up_in_the_hugging_face_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    row = doc._timm_weights("test_resnet.r160_in1k")
    assert row.status == "fail" and "timm/test_resnet.r160_in1k" in row.detail
    snap = tmp_path / "hf" / "models--timm--test_resnet.r160_in1k"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("0" * 40)
    (snap / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (snap / "snapshots" / ("0" * 40) / "model.safetensors").write_bytes(b"x")
    row = doc._timm_weights("test_resnet.r160_in1k")
    assert row.status == "ok" and row.detail.endswith("model.safetensors")
    assert doc._timm_weights("not_a_model").status == "fail"

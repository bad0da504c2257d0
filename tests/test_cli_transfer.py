"""Fine-grained transfer from the CLI: Self-Tuning (+ DM) and FixMatch on a CUB-layout fixture."""

import json
from pathlib import Path

import pytest
import torch
import torchvision

pytest.importorskip("semilearn")

from dm_ssl import cli  # noqa: E402
from dm_ssl.config import ConfigError, load_config, validate  # noqa: E402

from .data.finegrained_files import write_cub  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "transfer").rglob("*.yaml"))


def _sets(*pairs):
    return [a for p in pairs for a in ("--set", p)]


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("fg")
    write_cub(root / "data")
    weights = root / "r18.pth"  # a random torchvision ResNet-18, saved as ImageNet weights
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), weights)
    return root


def test_every_transfer_config_validates():
    assert len(CONFIGS) == 72
    for path in CONFIGS:
        cfg = validate(load_config(str(path)))
        assert cfg["num_train_iter"] == 27000 and cfg["batch_size"] == 24
        assert cfg["label_percent"] in (15, 30, 50) and cfg["lr"] == 0.001
        assert cfg["ten_crop"]  # the official numbers are 10-crop
        if cfg["algorithm"].startswith("selftuning"):  # the official Self-Tuning run
            assert (cfg["st_lr_schedule"], cfg["st_lr_milestones"], cfg["st_lr_gamma"]) == (
                "multistep", [6000, 12000, 18000, 24000], 0.1)
            assert (cfg["randaugment"], cfg["randaugment_views"], cfg["randaugment_n"],
                    cfg["randaugment_m"]) == (True, "all", 2, 10)
            assert cfg["st_momentum_updates"] == 2 and cfg["st_classifier_init"] == "normal"


def test_finegrained_transform_keys_are_checked():
    base = {"algorithm": "fixmatch", "dataset": "cifar10"}
    with pytest.raises(ConfigError, match="randaugment_views"):
        validate({**base, "randaugment_views": "all"})
    with pytest.raises(ConfigError, match="randaugment_n"):
        validate({**base, "dataset": "cub200", "label_percent": 15, "randaugment_n": -1})
    with pytest.raises(ConfigError, match="randaugment_views"):
        validate({**base, "dataset": "cub200", "label_percent": 15,
                      "randaugment_views": "weak"})


@pytest.mark.slow
@pytest.mark.parametrize("alg,extra", [
    ("selftuning_dm", ["ten_crop=true", "st_queue_size=2", "st_proj_dim=8"]),
    ("fixmatch_dm", []),
])
def test_transfer_runs_from_config(cub, alg, extra, capsys):
    config = CONFIGS[0].parent.parent / "cub200" / f"{alg}_cub200_15_r18.yaml"
    argv = ["train", "--config", str(config), "--data-dir", str(cub / "data"), "--save-dir",
            str(cub / "runs"), "--device", "cpu",
            *_sets(f"pretrained_path={cub / 'r18.pth'}", "num_train_iter=2", "epoch=1",
                   "num_eval_iter=2", "batch_size=4", "eval_batch_size=4", "img_size=32",
                   "resize=36", "num_workers=0", "progress=false", "label_percent=50",
                   *extra)]
    assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
    run = cub / "runs" / f"{alg}_cub200_15_r18_0"
    results = json.loads((run / "results.json").read_text())
    assert results["final_it"] == 2 and 0 <= results["final_acc"] <= 1
    assert (run / "train_50.txt").exists()


def test_missing_weights_is_one_clear_error(cub, capsys):
    config = CONFIGS[0].parent.parent / "cub200" / "selftuning_cub200_15_r18.yaml"
    argv = ["train", "--config", str(config), "--data-dir", str(cub / "data"), "--save-dir",
            str(cub / "runs2"), *_sets("pretrained_path=/nonexistent/r18.pth", "num_workers=0")]
    assert cli.main(argv) == 2
    assert "/nonexistent/r18.pth" in capsys.readouterr().err

"""Supervised / data-efficient datasets on tiny CIFAR, Tiny-ImageNet and image-folder fixtures."""

import json

import numpy as np
import pytest
import torch

from dm_ssl.data.errors import DatasetError
from dm_ssl.data.finegrained_transforms import IMAGENET_MEAN
from dm_ssl.data.supervised import build_supervised_datasets, subset_path
from dm_ssl.data.transforms import MEAN

from .cifar_files import write_cifar10
from .test_tinyimagenet import write_image_folder, write_tinyimagenet


@pytest.fixture
def c10(tmp_path):
    root = tmp_path / "data"
    return root, write_cifar10(root, per_batch=40)  # 200 images, 20 per class


def _check_item(item, size, k):
    assert set(item) == {"idx_lb", "x_lb", "y_lb"}
    assert item["x_lb"].shape == (3, size, size) and item["x_lb"].dtype == torch.float32
    assert isinstance(item["y_lb"], (int, np.integer)) and 0 <= item["y_lb"] < k


def test_cifar_full(c10, tmp_path):
    root, files = c10
    dsets, info = build_supervised_datasets("cifar10", root, tmp_path / "run")
    assert set(dsets) == {"train", "eval"}
    assert len(dsets["train"]) == 200 and len(dsets["eval"]) == 10
    _check_item(dsets["train"][3], 32, 10)
    _check_item(dsets["eval"][0], 32, 10)
    assert info.split_path is None and info.num_train == info.num_lb == 200
    assert info.mean == tuple(MEAN["cifar10"]) and info.num_eval == 10
    np.testing.assert_array_equal(dsets["train"].targets, files["train_labels"])
    assert not (tmp_path / "run").exists()  # nothing written for full runs
    # eval is deterministic and un-augmented
    assert torch.equal(dsets["eval"][1]["x_lb"], dsets["eval"][1]["x_lb"])
    batch = torch.utils.data.default_collate([dsets["train"][i] for i in range(4)])
    assert batch["x_lb"].shape == (4, 3, 32, 32) and batch["y_lb"].dtype == torch.int64


@pytest.mark.parametrize("percent", [15, 30, 50])
def test_cifar_subset_balanced_saved_reused(c10, tmp_path, percent):
    root, files = c10
    run = tmp_path / "run"
    dsets, info = build_supervised_datasets("cifar10", root, run, subset_percent=percent, seed=3)
    per_class = int(np.floor(percent / 100 * 20 + 0.5))
    assert len(dsets["train"]) == 10 * per_class == info.num_lb
    counts = np.bincount(dsets["train"].targets, minlength=10)
    assert (counts == per_class).all()
    assert len(dsets["eval"]) == 10  # test set unchanged
    src = dsets["train"].source_idx
    np.testing.assert_array_equal(dsets["train"].targets, files["train_labels"][src])
    path = subset_path(run, percent)
    assert info.split_path == path == run / f"subset_{percent}.json"
    doc = json.loads(path.read_text())
    assert doc["meta"]["percent"] == percent and doc["meta"]["seed"] == 3
    assert doc["lb_idx"] == src.tolist() and doc["ulb_idx"] == []
    # reused as saved (not rewritten), same subset
    mtime = path.stat().st_mtime_ns
    again, _ = build_supervised_datasets("cifar10", root, run, subset_percent=percent, seed=3)
    np.testing.assert_array_equal(again["train"].source_idx, src)
    assert path.stat().st_mtime_ns == mtime
    # seeded: another run directory with the same seed draws the same subset, another seed not
    same, _ = build_supervised_datasets("cifar10", root, tmp_path / "r2", subset_percent=percent,
                                        seed=3)
    np.testing.assert_array_equal(same["train"].source_idx, src)
    other, _ = build_supervised_datasets("cifar10", root, tmp_path / "r3",
                                         subset_percent=percent, seed=4)
    assert not np.array_equal(other["train"].source_idx, src)


def test_subset_refused_on_mismatch(c10, tmp_path):
    root, _ = c10
    run = tmp_path / "run"
    build_supervised_datasets("cifar10", root, run, subset_percent=30, seed=0)
    with pytest.raises(DatasetError, match="seed: saved 0, now 1") as err:
        build_supervised_datasets("cifar10", root, run, subset_percent=30, seed=1)
    assert err.value.path == str(run / "subset_30.json")
    # other data with the same settings: refused
    other = tmp_path / "other"
    write_cifar10(other, per_batch=50)
    with pytest.raises(DatasetError, match="num_samples"):
        build_supervised_datasets("cifar10", other, run, subset_percent=30, seed=0)
    # a damaged file is refused too
    (run / "subset_30.json").write_text("{")
    with pytest.raises(DatasetError, match="unreadable"):
        build_supervised_datasets("cifar10", root, run, subset_percent=30, seed=0)


def test_bad_arguments(c10, tmp_path):
    root, _ = c10
    with pytest.raises(ValueError, match="run_dir"):
        build_supervised_datasets("cifar10", root, None, subset_percent=30)
    with pytest.raises(ValueError, match="percent"):
        build_supervised_datasets("cifar10", root, tmp_path, subset_percent=0)
    with pytest.raises(ValueError, match="unknown dataset"):
        build_supervised_datasets("svhn", root, tmp_path)


def test_tinyimagenet(tmp_path):
    root = tmp_path / "data"
    files = write_tinyimagenet(root, per_class=10, val_per_class=2)
    dsets, info = build_supervised_datasets("tinyimagenet", root, tmp_path / "run",
                                            subset_percent=30, seed=0)
    assert info.num_classes == 3 and info.img_size == 64 and info.mean == IMAGENET_MEAN
    assert info.class_names[0] == "Egyptian cat" and info.num_train == 30
    assert len(dsets["train"]) == 9 and len(dsets["eval"]) == 6
    assert (np.bincount(dsets["train"].targets, minlength=3) == 3).all()
    assert isinstance(dsets["train"].data[0], str)  # paths, opened when read
    _check_item(dsets["train"][0], 64, 200)
    item = dsets["eval"][2]
    _check_item(item, 64, 200)
    assert item["y_lb"] == files["val"][2][1]
    assert (tmp_path / "run" / "subset_30.json").exists()
    small, info = build_supervised_datasets("tinyimagenet", root, None, img_size=32)
    _check_item(small["train"][0], 32, 200)
    _check_item(small["eval"][0], 32, 200)


def test_imagenet_folder(tmp_path):
    write_image_folder(tmp_path, size=40)
    dsets, info = build_supervised_datasets("imagenet", tmp_path, None, img_size=24)
    assert info.num_classes == 3 and info.class_names == ("ant", "moose", "zebra")
    assert len(dsets["train"]) == 9 and len(dsets["eval"]) == 3
    _check_item(dsets["train"][0], 24, 3)
    _check_item(dsets["eval"][0], 24, 3)


# -- the ImageNet recipes' transforms: timm's RandAugment, random erasing, test size -----------


def _names(compose):
    return [type(t).__name__ for t in compose.transforms]


def test_recipe_transforms_are_timms(c10, tmp_path):
    from dm_ssl.data.supervised import get_supervised_spec, supervised_transforms

    spec = get_supervised_spec("cifar10")
    train, test = supervised_transforms(spec, auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25)
    assert _names(train) == ["RandomCrop", "RandomHorizontalFlip", "RandAugment", "ToTensor",
                             "Normalize", "RandomErasing"]
    assert _names(test) == ["ToTensor", "Normalize"]
    assert train.transforms[2].ops[0].magnitude == 9 and train.transforms[-1].probability == 0.25
    assert _names(supervised_transforms(spec)[0]) == ["RandomCrop", "RandomHorizontalFlip",
                                                      "ToTensor", "Normalize"]
    root, _ = c10                                          # the items still come out right
    dsets, _ = build_supervised_datasets("cifar10", root, None, auto_augment="rand-m6",
                                         reprob=1.0)
    x = dsets["train"][0]["x_lb"]
    _check_item(dsets["train"][0], 32, 10)
    assert x.std() > 0.5                                   # erased with N(0, 1) pixels
    for bad, key in ((dict(auto_augment="bogus"), "auto_augment"),
                     (dict(reprob=1.5), "reprob"), (dict(interpolation="lanczos9"),
                                                    "interpolation"),
                     (dict(crop_pct=0.9), "crop_pct"), (dict(eval_img_size=40), "eval_img_size")):
        with pytest.raises(ValueError, match=key):
            supervised_transforms(spec, **bad)


def test_imagenet_recipe_trains_at_one_size_and_tests_at_another(tmp_path):
    write_image_folder(tmp_path, size=64)
    dsets, info = build_supervised_datasets(
        "imagenet", tmp_path, None, img_size=24, eval_img_size=32, crop_pct=0.95,
        interpolation="bicubic", auto_augment="rand-m6-mstd0.5-inc1")
    _check_item(dsets["train"][0], 24, 3)
    _check_item(dsets["eval"][0], 32, 3)
    assert info.img_size == 24
    test = dsets["eval"].transform.transforms
    assert test[0].size == 33                              # floor(32 / 0.95), then crop 32
    names = _names(dsets["train"].transform)
    assert names[:2] == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip"]
    assert "RandAugment" in names and "ColorJitter" not in names


def test_digits_for_quick_supervised_runs():
    pytest.importorskip("sklearn")
    dsets, info = build_supervised_datasets("digits", None, None)
    assert (info.num_classes, info.channels, info.img_size) == (10, 1, 8)
    assert len(dsets["train"]) == 1198 and len(dsets["eval"]) == 599
    item = dsets["train"][0]
    assert item["x_lb"].shape == (1, 8, 8)
    names = _names(dsets["train"].transform)
    assert names == ["RandomCrop", "ToTensor", "Normalize"]  # no flip: 2 ↔ S, 7 ↔ mirror
    assert dsets["train"].transform.transforms[0].padding == 1

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dm_ssl.data import (
    DATASETS,
    DatasetError,
    build_ssl_datasets,
    dataset_names,
    get_dataset_spec,
    ssl_split,
)


def _check_lb_item(item, idx, shape):
    assert set(item) == {"idx_lb", "x_lb", "y_lb"} and item["idx_lb"] == idx
    assert item["x_lb"].shape == shape and item["x_lb"].dtype == torch.float32
    assert isinstance(item["y_lb"], (int, np.integer))


def test_cifar10_datasets(cifar10, tmp_path, seeded_rngs):
    root, exp = cifar10
    run = tmp_path / "run"
    dsets, info = build_ssl_datasets("cifar10", root, num_labels=20, seed=3, run_dir=run)
    assert set(dsets) == {"train_lb", "train_ulb", "eval", "test"} and dsets["test"] is None
    assert (run / "split.json").is_file() and info.split_path == run / "split.json"
    assert (info.num_classes, info.img_size, info.channels) == (10, 32, 3)
    assert info.class_names[0] == "airplane" and len(info.class_names) == 10
    assert (info.num_train, info.num_lb, info.num_ulb, info.num_eval) == (30, 20, 30, 10)

    lb, ulb, ev = dsets["train_lb"], dsets["train_ulb"], dsets["eval"]
    lb_idx, ulb_idx = ssl_split(exp["train_labels"], 20, 10, seed=3)
    np.testing.assert_array_equal(lb.source_idx, lb_idx)
    np.testing.assert_array_equal(lb.data, exp["train_images"][lb_idx])
    np.testing.assert_array_equal(lb.targets, exp["train_labels"][lb_idx])
    # unlabeled: positions 0..len-1 (what idx_ulb reports), true labels kept
    np.testing.assert_array_equal(ulb.targets, exp["train_labels"][ulb.source_idx])
    np.testing.assert_array_equal(ulb.data, exp["train_images"][ulb_idx])
    assert sorted(ulb.source_idx) == list(range(30))

    for i in (0, len(lb) - 1):
        item = lb[i]
        _check_lb_item(item, i, (3, 32, 32))
        assert item["y_lb"] == exp["train_labels"][lb_idx[i]]
    seeded_rngs(0)
    items = [ulb[i] for i in range(len(ulb))]
    assert [it["idx_ulb"] for it in items] == list(range(len(ulb)))
    for it in items:
        assert set(it) == {"idx_ulb", "x_ulb_w", "x_ulb_s"}
        assert it["x_ulb_w"].shape == it["x_ulb_s"].shape == (3, 32, 32)
        assert it["x_ulb_s"].dtype == torch.float32
        assert not torch.equal(it["x_ulb_w"], it["x_ulb_s"])
    for i in range(len(ev)):
        item = ev[i]
        _check_lb_item(item, i, (3, 32, 32))
        assert torch.equal(item["x_lb"], ev[i]["x_lb"])  # no augmentation
        assert item["y_lb"] == exp["test_labels"][i]

    batch = next(iter(DataLoader(ulb, batch_size=4)))  # semilearn's loaders: default collate
    assert batch["x_ulb_s"].shape == (4, 3, 32, 32) and batch["idx_ulb"].tolist() == [0, 1, 2, 3]


def test_split_reused_on_resume_and_refused_on_change(cifar10, tmp_path):
    root, _ = cifar10
    run = tmp_path / "run"
    first, _ = build_ssl_datasets("cifar10", root, num_labels=10, seed=0, run_dir=run)
    again, _ = build_ssl_datasets("cifar10", root, num_labels=10, seed=0, run_dir=run)
    np.testing.assert_array_equal(first["train_lb"].source_idx, again["train_lb"].source_idx)
    with pytest.raises(DatasetError, match="num_labels") as info:
        build_ssl_datasets("cifar10", root, num_labels=20, seed=0, run_dir=run)
    assert str(run / "split.json") in str(info.value)


def test_cifar100_datasets(cifar100, tmp_path):
    root, exp = cifar100
    dsets, info = build_ssl_datasets("cifar100", exp["folder"], num_labels=100, seed=0,
                                     run_dir=tmp_path, include_lb_to_ulb=False)
    assert (info.num_classes, info.num_lb, info.num_ulb) == (100, 100, 100)
    assert info.mean == get_dataset_spec("cifar100").mean
    assert sorted(dsets["train_lb"].targets.tolist()) == list(range(100))
    assert not set(dsets["train_lb"].source_idx) & set(dsets["train_ulb"].source_idx)
    _check_lb_item(dsets["eval"][5], 5, (3, 32, 32))


def test_same_datasets_as_semilearns_get_cifar(cifar10, tmp_path, monkeypatch, seeded_rngs):
    """semilearn's own CIFAR pipeline on the same files gives the same data and the same items.

    torchvision's CIFAR10 (md5 + download) is replaced by the fixture's arrays, and the
    index files semilearn writes go to tmp_path instead of site-packages.
    """
    import semilearn.datasets.utils as sl_utils
    import torchvision
    from semilearn.datasets.cv_datasets.cifar import get_cifar

    root, exp = cifar10

    def fake_cifar10(data_dir, train=True, download=False):
        s = "train" if train else "test"
        return SimpleNamespace(data=exp[f"{s}_images"], targets=exp[f"{s}_labels"].tolist())

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    monkeypatch.setattr(sl_utils, "base_dir", str(tmp_path / "sl"))
    args = SimpleNamespace(img_size=32, crop_ratio=0.875, ulb_num_labels=None, lb_imb_ratio=1,
                           ulb_imb_ratio=1, dataset="cifar10", num_labels=20, seed=4)
    np.random.seed(4)  # as USB's train.py does before building the algorithm
    ref = dict(zip(("train_lb", "train_ulb", "eval"),
                   get_cifar(args, "fixmatch", "cifar10", 20, 10, data_dir=str(tmp_path))))
    ours, _ = build_ssl_datasets("cifar10", root, num_labels=20, seed=4, run_dir=tmp_path / "r")
    for key, ref_d in ref.items():
        d = ours[key]
        np.testing.assert_array_equal(d.data, ref_d.data)
        np.testing.assert_array_equal(d.targets, ref_d.targets)
        for i in (0, len(d) - 1):
            seeded_rngs(i)
            a = d[i]
            seeded_rngs(i)
            b = ref_d[i]
            assert a.keys() == b.keys()
            for k in a:
                if torch.is_tensor(a[k]):
                    torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
                else:
                    assert a[k] == b[k]


@pytest.mark.parametrize("options, shape", [
    ({}, (1, 8, 8)),
    ({"size": 32, "channels": 3}, (3, 32, 32)),
    ({"size": 16, "interpolation": "bilinear"}, (1, 16, 16)),
])
def test_digits_datasets(tmp_path, options, shape, seeded_rngs):
    dsets, info = build_ssl_datasets("digits", None, num_labels=40, seed=0, run_dir=tmp_path,
                                     **options)
    assert (tmp_path / "split.json").is_file()
    assert (info.num_classes, info.channels, info.img_size) == (10, shape[0], shape[1])
    assert info.mean == (get_dataset_spec("digits").mean * shape[0])
    assert (info.num_lb, info.num_ulb, info.num_eval) == (40, 1198, 599)
    assert np.bincount(dsets["train_lb"].targets).tolist() == [4] * 10
    _check_lb_item(dsets["train_lb"][0], 0, shape)
    _check_lb_item(dsets["eval"][0], 0, shape)
    seeded_rngs(0)
    differ = 0
    for i in range(10):
        item = dsets["train_ulb"][i]
        assert set(item) == {"idx_ulb", "x_ulb_w", "x_ulb_s"} and item["idx_ulb"] == i
        assert item["x_ulb_w"].shape == item["x_ulb_s"].shape == shape
        differ += not torch.equal(item["x_ulb_w"], item["x_ulb_s"])
    assert differ >= 8  # RandAugment can draw near-identity ops on an 8×8 image


def test_digits_are_not_flipped_by_default(tmp_path):
    from torchvision.transforms import RandomHorizontalFlip

    def has_flip(d, attr):
        return any(isinstance(t, RandomHorizontalFlip) for t in getattr(d, attr).transforms)

    dsets, _ = build_ssl_datasets("digits", None, 40, 0, tmp_path / "a")
    assert not has_flip(dsets["train_ulb"], "transform")
    assert not has_flip(dsets["train_ulb"], "strong_transform")
    dsets, _ = build_ssl_datasets("digits", None, 40, 0, tmp_path / "b", hflip=True)
    assert has_flip(dsets["train_ulb"], "transform")


def test_algorithm_decides_unlabeled_keys(tmp_path):
    dsets, _ = build_ssl_datasets("digits", None, 40, 0, tmp_path, algorithm="comatch")
    assert set(dsets["train_ulb"][0]) == {"idx_ulb", "x_ulb_w", "x_ulb_s_0", "x_ulb_s_1"}
    dsets, info = build_ssl_datasets("digits", None, 40, 0, tmp_path,
                                     algorithm="fullysupervised")
    assert len(dsets["train_lb"]) == info.num_train  # as semilearn's get_cifar


def test_unknown_dataset_lists_known_ones(tmp_path):
    with pytest.raises(ValueError, match="dataset='svhn'") as info:
        build_ssl_datasets("svhn", None, 40, 0, tmp_path)
    for name in dataset_names("ssl"):
        assert name in str(info.value)
    assert dataset_names("ssl") == ("cifar10", "cifar100", "digits")


def test_one_registry_serves_every_protocol():
    """Every dataset name is one entry; the protocol tables the builders, config checks and
    experiment grids use are views of it."""
    from dm_ssl.config import validate
    from dm_ssl.data.finegrained import get_finegrained_spec
    from dm_ssl.data.supervised import get_supervised_spec
    from dm_ssl.experiments import grids, tables

    assert dataset_names("transfer") == ("cub200", "stanford_cars", "fgvc_aircraft")
    assert set(dataset_names("supervised")) == {"cifar10", "cifar100", "digits", "tinyimagenet",
                                                "imagenet"}
    for name, entry in DATASETS.items():
        assert entry.readers and set(entry.readers) <= {"ssl", "supervised", "transfer"}
        assert set(entry.device_augment) <= set(entry.readers)
        assert tables.data_name(name) == entry.label
        if entry.transfer is not None:
            spec = get_finegrained_spec(name)
            assert (spec.num_classes, spec.title, spec.mean) == (entry.num_classes, entry.title,
                                                                 entry.mean)
        if entry.supervised is not None:
            assert get_supervised_spec(name).mean == entry.mean
        if entry.ssl is not None:
            assert get_dataset_spec(name).num_classes == entry.num_classes
    # the grids size their runs from the registry: class count and epoch length
    cfg = grids.transfer_config("selftuning", "stanford_cars", 15, "resnet50")
    assert cfg["num_classes"] == DATASETS["stanford_cars"].num_classes == 196
    # the config refuses transfer-only keys outside the registry's transfer sets
    with pytest.raises(ValueError, match="cub200, stanford_cars, fgvc_aircraft"):
        validate({"algorithm": "fixmatch", "dataset": "cifar10", "randaugment_n": 2})


def test_cifar_needs_root(tmp_path):
    with pytest.raises(ValueError, match="root"):
        build_ssl_datasets("cifar10", None, 40, 0, tmp_path)


def test_missing_cifar_files_are_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        build_ssl_datasets("cifar10", tmp_path / "data", 40, 0, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start

"""Datasets for supervised mixup training, full and data-efficient (spec §6.3, §7).

    dsets, info = build_supervised_datasets("cifar100", "data/", "runs/dm_c100_sup_30_s0",
                                            subset_percent=30, seed=0)
    # dsets["train"], dsets["eval"]: semilearn BasicDatasets

Items are semilearn's labeled items, ``{'idx_lb', 'x_lb', 'y_lb'}`` (float tensor
``(3, s, s)``, int64 label), for both sets: semilearn's ``BasicDataset`` makes them, so its
trainer (``train_lb``) and its evaluation (``x_lb`` / ``y_lb`` of the eval loader) consume them
as they are. ``idx_lb`` indexes the (sub)set; ``source_idx`` maps it back to the training set.

=============  ========================  =================================================
dataset        read with                 train / eval transform
=============  ========================  =================================================
cifar10/100    ``load_cifar`` (in RAM)   RandomCrop(32, pad 4) + flip / none
tinyimagenet   ``read_tinyimagenet``     RandomCrop(64, pad 4) + flip / none
digits         ``load_digits_split``     RandomCrop(8, pad 1), no flip / none (8×8 grey)
imagenet       ``read_image_folder``     timm's ``create_transform``: RandomResizedCrop(224)
                                         + flip / Resize(224 / crop_pct) + CenterCrop(224)
=============  ========================  =================================================

Path datasets open each image when its item is read. The crops pad with zeros, the usual
supervised CIFAR recipe (USB's SSL transforms pad by reflection instead). ``img_size`` other
than the native size (32 / 64) resizes first and then crops with the same padding of 4; for
ImageNet it is the crop, tested from ``floor(img_size / crop_pct)``. Normalisation: CIFAR as in
:mod:`dm_ssl.data.transforms` (semilearn's constants), ImageNet statistics otherwise.

With ``augment_on: device`` the "pad" crop sets at their own size (cifar10/100, tinyimagenet,
digits; no ``auto_augment`` / ``reprob``) record a
:class:`~dm_ssl.data.device_data.DeviceAugmentSpec` (black padding, as ``RandomCrop``) on the
training set, and the run crops and flips them on the device
(:func:`device_augment_refusal` says why any other config cannot).

Data-efficient runs keep a class-balanced, seeded ``subset_percent`` % of every class of the
training set (:func:`~dm_ssl.data.split.class_balanced_subset`); the indices are saved as
``run_dir/subset_<percent>.json`` in ``split.json``'s format (:func:`~dm_ssl.data.save_split`:
``lb_idx`` the subset, ``ulb_idx`` empty; meta: dataset, num_samples, num_classes, percent,
seed, the labels' sha256, num_labels) and reused on resume; a saved subset whose settings or
data differ is refused with a :class:`~dm_ssl.data.errors.DatasetError`. The test set is
never subset.

This module imports semilearn (seconds); ``dm_ssl.data`` imports it on first use of one of its
names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from torch.utils.data import Dataset
from torchvision import transforms

from .datasets import IndexedDataset
from .device_data import DeviceAugmentSpec
from .finegrained import FineGrainedDataset, _check_percent
from .info import DatasetInfo
from .registry import SupervisedSpec, get_dataset
from .split import class_balanced_subset, labels_fingerprint, load_split, save_split

PathLike = Union[str, "os.PathLike[str]"]

SUBSET_FORMAT = "subset_{percent:g}.json"
IMAGENET_RESIZE_RATIO = 0.875  # 224 / 256


def get_supervised_spec(dataset: str) -> SupervisedSpec:
    """The supervised reader of ``dataset`` (:data:`~dm_ssl.data.registry.DATASETS`)."""
    return get_dataset(dataset, "supervised").supervised


def _normalise(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [transforms.ToTensor(), transforms.Normalize(list(mean), list(std))]


INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "random")


def _auto_augment(policy: str, size: int, mean: Sequence[float], interpolation: str) -> Any:
    """timm's AutoAugment / RandAugment / AugMix for a timm policy string (e.g.
    ``rand-m9-mstd0.5-inc1``), with the hyper-parameters timm's ``create_transform`` uses."""
    from timm.data.auto_augment import (
        augment_and_mix_transform,
        auto_augment_transform,
        rand_augment_transform,
    )
    from timm.data.transforms import str_to_pil_interp

    params: dict[str, Any] = dict(translate_const=int(size * 0.45),
                                  img_mean=tuple(min(255, round(255 * m)) for m in mean))
    if interpolation != "random":
        params["interpolation"] = str_to_pil_interp(interpolation)
    if policy.startswith("rand"):
        return rand_augment_transform(policy, params)
    if policy.startswith("augmix"):
        params["translate_pct"] = 0.3
        return augment_and_mix_transform(policy, params)
    return auto_augment_transform(policy, params)


def supervised_transforms(spec: SupervisedSpec, img_size: Optional[int] = None, *,
                          auto_augment: Optional[str] = None, reprob: float = 0.0,
                          interpolation: str = "bilinear", crop_pct: Optional[float] = None,
                          eval_img_size: Optional[int] = None,
                          ) -> tuple[transforms.Compose, transforms.Compose]:
    """``(train, eval)`` transforms of spec §7 for ``spec`` at side ``img_size``.

    The ImageNet recipes' extras (spec §7, Table A1) are timm's own transforms:
    ``auto_augment`` a timm policy string (``rand-m9-mstd0.5-inc1`` for DeiT,
    ``rand-m6-mstd0.5-inc1`` for RSB A3), ``reprob`` timm's per-pixel random erasing after
    normalisation, ``interpolation`` of the resizes (DeiT and RSB: bicubic). For ``imagenet``
    the pipelines are timm's ``create_transform`` (RandomResizedCrop + flip, no colour jitter /
    Resize(size / crop_pct) + CenterCrop); ``eval_img_size`` tests at another side than the
    training crop (RSB A3: train 160, test 224 with ``crop_pct`` 0.95).
    """
    size = _check_size(spec.img_size if img_size is None else img_size, "img_size")
    if auto_augment is not None and (not isinstance(auto_augment, str) or not auto_augment):
        raise ValueError(f"auto_augment must be a timm policy string such as "
                         f"'rand-m9-mstd0.5-inc1', got {auto_augment!r}")
    if isinstance(reprob, bool) or not isinstance(reprob, (int, float)) or not 0 <= reprob <= 1:
        raise ValueError(f"reprob must be in [0, 1], got {reprob!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                         f"got {interpolation!r}")
    if crop_pct is not None and (isinstance(crop_pct, bool) or not isinstance(
            crop_pct, (int, float)) or not 0 < crop_pct <= 1):
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    norm = _normalise(spec.mean, spec.std)
    flip = [transforms.RandomHorizontalFlip()] if spec.hflip else []
    if spec.crop == "resized":
        from timm.data import create_transform

        eval_size = size if eval_img_size is None else _check_size(eval_img_size,
                                                                   "eval_img_size")
        try:
            train = create_transform(size, is_training=True, auto_augment=auto_augment,
                                     interpolation=interpolation, color_jitter=None,
                                     re_prob=float(reprob), re_mode="pixel",
                                     mean=spec.mean, std=spec.std)
        except (AssertionError, KeyError, ValueError) as err:  # a bad policy string
            raise ValueError(f"auto_augment {auto_augment!r}: timm refused it ({err})") from None
        evaluation = create_transform(
            eval_size, is_training=False,
            interpolation="bilinear" if interpolation == "random" else interpolation,
            crop_pct=IMAGENET_RESIZE_RATIO if crop_pct is None else float(crop_pct),
            mean=spec.mean, std=spec.std)
        return train, evaluation
    for key, value in (("eval_img_size", eval_img_size), ("crop_pct", crop_pct)):
        if value is not None:
            raise ValueError(f"{key} applies to resized-crop datasets (imagenet), not "
                             f"{spec.name}")
    extra = []
    if auto_augment:
        try:
            extra = [_auto_augment(auto_augment, size, spec.mean, interpolation)]
        except (AssertionError, KeyError, ValueError) as err:
            raise ValueError(f"auto_augment {auto_augment!r}: timm refused it ({err})") from None
    erase = []
    if reprob > 0:
        from timm.data.random_erasing import RandomErasing

        erase = [RandomErasing(float(reprob), mode="pixel", device="cpu")]
    head = [] if size == spec.img_size else [transforms.Resize((size, size))]
    return (transforms.Compose(head + [transforms.RandomCrop(size, padding=spec.pad)] + flip
                               + extra + norm + erase),
            transforms.Compose(head + norm))


def device_augment_refusal(dataset: str, img_size: Optional[int] = None, *,
                           auto_augment: Optional[str] = None, reprob: float = 0.0,
                           **_: Any) -> Optional[str]:
    """Why ``augment_on: device`` cannot do this supervised training transform, or None when
    it can: the "pad" crop (RandomCrop with black padding + flip) at the images' own size is
    done on the device; resized crops, resizing and timm's policies are done in the loader."""
    spec = get_supervised_spec(dataset)
    if spec.crop != "pad":
        return f"{dataset} trains on RandomResizedCrop (timm's create_transform)"
    if img_size is not None and int(img_size) != spec.img_size:
        return f"img_size {img_size} resizes {dataset}'s {spec.img_size}-pixel images"
    if auto_augment:
        return f"auto_augment {auto_augment!r} is timm's policy, applied per image"
    if reprob:
        return "reprob (timm's random erasing) is applied per image"
    return None


def _check_size(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value \
            or value < 1:
        raise ValueError(f"{key} must be a positive int, got {value!r}")
    return int(value)


def subset_path(run_dir: PathLike, percent: float) -> Path:
    """``run_dir/subset_<percent>.json``: the run's training subset."""
    return Path(run_dir) / SUBSET_FORMAT.format(percent=_check_percent(percent))


def get_or_create_subset(run_dir: PathLike, labels: Any, dataset: str, percent: float,
                         num_classes: int, seed: int) -> tuple[np.ndarray, Path]:
    """The run's data-efficient subset: sorted indices into ``labels`` and its file.

    Read from :func:`subset_path` when present (its meta must match this call, else
    :class:`DatasetError`), else ``percent`` % of every class drawn with ``seed`` and saved.
    """
    percent = _check_percent(percent)
    labels = np.asarray(labels)
    path = subset_path(run_dir, percent)
    meta = {"dataset": str(dataset), "num_samples": int(len(labels)),
            "num_classes": int(num_classes), "percent": percent, "seed": int(seed),
            "labels_sha256": labels_fingerprint(labels)}
    if path.exists():
        lb_idx, _ = load_split(path, meta)
        return np.sort(lb_idx), path
    lb_idx = class_balanced_subset(labels, percent / 100.0, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_split(path, lb_idx, np.zeros(0, dtype=np.int64), {**meta, "num_labels": len(lb_idx)})
    return lb_idx, path


def build_supervised_datasets(
        dataset: str, root: PathLike, run_dir: Optional[PathLike] = None, *,
        subset_percent: Optional[float] = None, seed: int = 0, img_size: Optional[int] = None,
        algorithm: str = "fullysupervised", **augment: Any,
) -> tuple[dict[str, Dataset], DatasetInfo]:
    """Datasets for one supervised (or data-efficient) mixup run.

    Args:
        dataset: ``"cifar10"``, ``"cifar100"``, ``"tinyimagenet"``, ``"imagenet"`` or
            ``"digits"`` (scikit-learn's, offline; ``root`` unused).
        root: where the dataset lives (see the readers); for ``imagenet`` the folder holding
            ``train/`` and ``val/``.
        run_dir: the run directory; needed with ``subset_percent`` (the subset is saved there).
        subset_percent: keep this % of every class of the training set (15/30/50 in the
            paper); None: the whole training set.
        seed: the subset's seed.
        img_size: side of the tensors; default 32 (CIFAR), 64 (Tiny-ImageNet), 224 (ImageNet).
        algorithm: semilearn algorithm name given to ``BasicDataset`` (labeled items have the
            same keys for all but defixmatch).
        augment: the recipe extras of :func:`supervised_transforms` (``auto_augment``,
            ``reprob``, ``interpolation``, ``crop_pct``, ``eval_img_size``).

    Returns:
        ``({'train', 'eval'}, DatasetInfo)``; ``info.split_path`` is the subset file (None for
        full runs), ``info.num_lb`` the training set's length, ``info.num_ulb`` 0.
    """
    spec = get_supervised_spec(dataset)
    if subset_percent is not None:
        _check_percent(subset_percent)
        if run_dir is None:
            raise ValueError("subset_percent needs run_dir (the subset is saved there)")
    train_tf, eval_tf = supervised_transforms(spec, img_size, **augment)  # checked first
    data, labels = spec.read(root, "train")
    test_data, test_labels = spec.read(root, "test")
    class_names = tuple(spec.class_names(root))
    k = spec.num_classes if spec.num_classes is not None else len(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    test_labels = np.asarray(test_labels, dtype=np.int64)

    split_path: Optional[Path] = None
    idx = np.arange(len(labels), dtype=np.int64)
    if subset_percent is not None:
        idx, split_path = get_or_create_subset(run_dir, labels, dataset, subset_percent, k, seed)

    cls = FineGrainedDataset if spec.lazy else IndexedDataset
    dsets: dict[str, Dataset] = {
        "train": cls(algorithm, data[idx], labels[idx], k, train_tf, False, None,
                     source_idx=idx),
        "eval": cls(algorithm, test_data, test_labels, k, eval_tf, False, None),
    }
    size = spec.img_size if img_size is None else int(img_size)
    why = device_augment_refusal(dataset, img_size, **augment)
    if why is None:  # augment_on=device can do this training transform (dm_ssl.data.device_data)
        dsets["train"].device_augment = DeviceAugmentSpec(  # type: ignore[attr-defined]
            pad=spec.pad, hflip=spec.hflip, mean=tuple(spec.mean), std=tuple(spec.std),
            padding_mode="constant", size=size)
    info = DatasetInfo(
        name=dataset, num_classes=k, class_names=class_names, img_size=size,
        channels=len(spec.mean),
        mean=tuple(spec.mean), std=tuple(spec.std), num_labels=len(idx), seed=int(seed),
        num_train=len(labels), num_lb=len(idx), num_ulb=0, num_eval=len(test_labels),
        split_path=split_path)
    return dsets, info

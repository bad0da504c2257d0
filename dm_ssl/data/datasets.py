"""The labeled / unlabeled / evaluation datasets semilearn's algorithms consume, on CPU.

Mirrors ``semilearn.datasets.cv_datasets.cifar.get_cifar`` (0.3.2) with dm_ssl's readers and
split: items come from semilearn's own :class:`BasicDataset`, so they are the dicts its
algorithms expect — ``{'idx_lb', 'x_lb', 'y_lb'}`` for the labeled and evaluation sets and,
for the unlabeled set, ``{'idx_ulb', 'x_ulb_w', 'x_ulb_s'}`` (or what ``algorithm`` asks for,
e.g. two strong views for comatch). ``idx_ulb`` runs over 0..len-1 of the unlabeled set, as
FlexMatch's per-sample thresholds (sized ``ulb_dest_len``) require; ``source_idx`` maps it back
to the training set and ``targets`` keeps the true labels (for pseudo-label accuracy).

This module imports semilearn (seconds, ~1 GB); ``dm_ssl.data`` imports it only on first use of
:func:`build_ssl_datasets`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from semilearn.datasets.cv_datasets.datasetbase import BasicDataset
from torch.utils.data import Dataset

from .device_data import DeviceAugmentSpec
from .info import DatasetInfo
from .registry import get_dataset_spec, is_supervised
from .split import SPLIT_FILENAME, get_or_create_split
from .transforms import USB_CROP_RATIO, eval_transform, strong_transform, weak_transform

PathLike = Union[str, "os.PathLike[str]"]

# semilearn's cifar.py trains these on the whole training set (labels and all).


class IndexedDataset(BasicDataset):
    """semilearn's :class:`BasicDataset` plus ``source_idx``: the training-set row of each item.

    Grey images are stored as ``(N, H, W)``: BasicDataset hands each item to
    ``PIL.Image.fromarray``, which rejects a trailing channel axis of 1.
    """

    def __init__(self, alg: str, data: np.ndarray, targets: np.ndarray, num_classes: int,
                 transform: Any, is_ulb: bool = False, strong_transform: Any = None,
                 source_idx: Optional[np.ndarray] = None) -> None:
        if data.ndim == 4 and data.shape[-1] == 1:
            data = data[..., 0]
        super().__init__(alg, data, targets, num_classes, transform, is_ulb, strong_transform,
                         False)
        self.source_idx = np.arange(len(data)) if source_idx is None else source_idx
        #: set by build_ssl_datasets where the device path can do the loader's transforms
        self.device_augment: Optional[DeviceAugmentSpec] = None


def build_ssl_datasets(dataset: str, root: Optional[PathLike], num_labels: int, seed: int,
                       run_dir: PathLike, *, algorithm: str = "fixmatch",
                       include_lb_to_ulb: bool = True, img_size: Optional[int] = None,
                       crop_ratio: float = USB_CROP_RATIO, hflip: Optional[bool] = None,
                       split_filename: str = SPLIT_FILENAME,
                       **options: Any) -> tuple[dict[str, Optional[Dataset]], DatasetInfo]:
    """Datasets for one SSL run, with the split saved to (and reused from) ``run_dir``.

    Args:
        dataset: ``"cifar10"``, ``"cifar100"`` or ``"digits"``.
        root: where the dataset lives (see :func:`~dm_ssl.data.load_cifar`); unused (may be
            None) for digits.
        num_labels: labeled samples in all, ``num_labels / num_classes`` per class.
        seed: the split's seed (USB's ``args.seed``).
        run_dir: the run directory; the split is written to ``run_dir/split_filename`` and
            reused when the run is resumed.
        algorithm: semilearn algorithm name; it decides the keys of the unlabeled items.
        include_lb_to_ulb: the labeled samples are also unlabeled ones (USB's default).
        img_size: side of the tensors; default the images' own size (USB resizes to it).
        crop_ratio: USB's crop ratio; the random crop pads by ``int(img_size·(1−crop_ratio))``.
        hflip: horizontal flip in weak/strong views; default per dataset (off for digits).
        **options: passed to the reader (digits: ``size``, ``channels``, ``test_size``,
            ``split_seed``, ``interpolation``).

    Returns:
        ``({'train_lb', 'train_ulb', 'eval', 'test'}, DatasetInfo)``. As in semilearn's CIFAR
        pipeline, ``'eval'`` is the test split and ``'test'`` is None (so the evaluation hook
        does not evaluate the same images twice).
    """
    spec = get_dataset_spec(dataset)
    if spec.needs_root and root is None:
        raise ValueError(f"dataset {dataset!r} needs root (the directory holding its files)")
    images, labels = spec.load(root, "train", **options)
    test_images, test_labels = spec.load(root, "test", **options)
    class_names = tuple(spec.class_names(root, **options))

    lb_idx, ulb_idx = get_or_create_split(run_dir, labels, dataset, num_labels,
                                          spec.num_classes, seed,
                                          include_lb_to_ulb=include_lb_to_ulb,
                                          filename=split_filename)
    if is_supervised(algorithm):  # every training label is used
        lb_idx = np.arange(len(labels))

    channels = images.shape[-1]
    size = int(img_size) if img_size is not None else images.shape[1]
    mean, std = spec.stats(channels)
    flip = spec.hflip if hflip is None else bool(hflip)
    weak = weak_transform(size, mean, std, crop_ratio=crop_ratio, hflip=flip)
    strong = strong_transform(size, mean, std, crop_ratio=crop_ratio, hflip=flip)
    plain = eval_transform(size, mean, std)

    k = spec.num_classes
    dsets: dict[str, Optional[Dataset]] = {
        "train_lb": IndexedDataset(algorithm, images[lb_idx], labels[lb_idx], k, weak, False,
                                   strong, source_idx=lb_idx),
        "train_ulb": IndexedDataset(algorithm, images[ulb_idx], labels[ulb_idx], k, weak, True,
                                    strong, source_idx=ulb_idx),
        "eval": IndexedDataset(algorithm, test_images, test_labels, k, plain, False, None),
        "test": None,
    }
    if size == images.shape[1]:  # the device path has no Resize: native sizes only
        spec_device = DeviceAugmentSpec(pad=int(size * (1 - crop_ratio)), hflip=flip,
                                        mean=tuple(mean), std=tuple(std))
        for name in ("train_lb", "train_ulb"):
            dsets[name].device_augment = spec_device  # type: ignore[union-attr]
    info = DatasetInfo(
        name=dataset, num_classes=k, class_names=class_names, img_size=size, channels=channels,
        mean=tuple(mean), std=tuple(std), num_labels=int(num_labels), seed=int(seed),
        num_train=len(labels), num_lb=len(lb_idx), num_ulb=len(ulb_idx),
        num_eval=len(test_labels), split_path=Path(run_dir) / split_filename)
    return dsets, info

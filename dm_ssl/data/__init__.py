"""Datasets, USB's labeled/unlabeled split and USB's transforms for dm_ssl.

    dsets, info = build_ssl_datasets("cifar10", "data/", num_labels=40, seed=0,
                                     run_dir="runs/fixmatch_dm_c10_40_s0")
    # dsets["train_lb"], dsets["train_ulb"], dsets["eval"]: semilearn BasicDatasets

- readers: :func:`load_cifar` / :func:`cifar_class_names` (official pickles, no torchvision
  download coupling), :func:`load_digits_split` (scikit-learn's digits, offline);
- split: :func:`ssl_split` (index-identical to semilearn 0.3.2), :func:`get_or_create_split`
  (saved in the run directory, checked on reuse), :func:`class_balanced_subset`;
- transforms: :func:`weak_transform`, :func:`strong_transform`, :func:`eval_transform`;
- the dataset registry :data:`DATASETS` (``dm_ssl.data.registry``: one entry per dataset,
  its protocols, readers and statistics; :func:`get_dataset`, :func:`dataset_names`);
- :func:`build_ssl_datasets`;
- fine-grained SSL transfer (CUB-200-2011, Stanford Cars, FGVC-Aircraft at 15/30/50 % labels):
  :func:`build_finegrained_ssl_datasets`, the readers :func:`read_finegrained` /
  :func:`read_cub200` / :func:`read_stanford_cars` / :func:`read_fgvc_aircraft`, the labeled
  lists :func:`get_or_create_labeled_subset` (``dm_ssl.data.finegrained``), and Self-Tuning's
  transforms :func:`finegrained_train_transform` / :func:`finegrained_eval_transform`.

- supervised / data-efficient mixup training (CIFAR, Tiny-ImageNet-200, ImageNet folders):
  :func:`build_supervised_datasets` (``dm_ssl.data.supervised``) and the readers
  :func:`read_tinyimagenet` / :func:`read_image_folder`.

Bad files raise :class:`DatasetError`. Importing this package does not import semilearn;
:func:`build_ssl_datasets`, :class:`IndexedDataset` and the names from
``dm_ssl.data.finegrained`` / ``dm_ssl.data.supervised`` import it on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from .cifar import CIFAR_URLS, cifar_class_names, cifar_dir, load_cifar
from .digits import DIGITS_MEAN, DIGITS_STD, digits_class_names, load_digits_split
from .errors import DatasetError
from .finegrained_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    StackCrops,
    finegrained_eval_transform,
    finegrained_train_transform,
)
from .images import load_rgb
from .info import DatasetInfo
from .registry import (
    DATASETS,
    SUPERVISED_ALGORITHMS,
    Dataset,
    DatasetSpec,
    FineGrainedSpec,
    SupervisedSpec,
    get_dataset,
    get_dataset_spec,
    is_supervised,
)
from .registry import names as dataset_names
from .split import (
    SPLIT_FILENAME,
    class_balanced_subset,
    get_or_create_split,
    labels_fingerprint,
    load_split,
    save_split,
    split_meta,
    ssl_split,
)
from .tinyimagenet import (
    TINYIMAGENET_URL,
    image_folder_classes,
    read_image_folder,
    read_tinyimagenet,
    tinyimagenet_class_names,
    tinyimagenet_dir,
    tinyimagenet_wnids,
)
from .transforms import (
    MEAN,
    STD,
    ModeSafeRandAugment,
    eval_transform,
    strong_transform,
    weak_transform,
)

_LAZY = {"build_ssl_datasets": "datasets", "IndexedDataset": "datasets"}
_LAZY.update(dict.fromkeys((
    "FineGrainedDataset",
    "build_finegrained_ssl_datasets", "finegrained_class_names", "finegrained_dir",
    "get_finegrained_spec", "get_or_create_labeled_subset", "labeled_list_path",
    "read_cub200", "read_fgvc_aircraft", "read_finegrained", "read_image_list",
    "read_stanford_cars"), "finegrained"))
_LAZY.update(dict.fromkeys((
    "build_supervised_datasets",
    "get_or_create_subset", "get_supervised_spec", "subset_path", "supervised_transforms"),
    "supervised"))


def __getattr__(name: str) -> Any:
    # datasets.py subclasses semilearn's BasicDataset: import it (and semilearn) on first use.
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CIFAR_URLS", "DATASETS", "SUPERVISED_ALGORITHMS", "Dataset", "SupervisedSpec",
    "dataset_names", "get_dataset", "is_supervised", "DIGITS_MEAN", "DIGITS_STD", "MEAN",
    "SPLIT_FILENAME", "STD",
    "DatasetError", "DatasetInfo", "DatasetSpec", "IndexedDataset", "ModeSafeRandAugment",
    "build_ssl_datasets", "cifar_class_names", "cifar_dir", "class_balanced_subset",
    "digits_class_names", "eval_transform", "get_dataset_spec", "get_or_create_split",
    "labels_fingerprint", "load_cifar", "load_digits_split", "load_split", "save_split",
    "split_meta", "ssl_split", "strong_transform", "weak_transform",
    # fine-grained SSL transfer
    "IMAGENET_MEAN", "IMAGENET_STD", "FineGrainedDataset",
    "FineGrainedSpec", "StackCrops", "build_finegrained_ssl_datasets", "finegrained_class_names",
    "finegrained_dir", "finegrained_eval_transform", "finegrained_train_transform",
    "get_finegrained_spec", "get_or_create_labeled_subset", "labeled_list_path", "load_rgb",
    "read_cub200", "read_fgvc_aircraft", "read_finegrained", "read_image_list",
    "read_stanford_cars",
    # supervised / data-efficient training
    "TINYIMAGENET_URL", "build_supervised_datasets",
    "get_or_create_subset", "get_supervised_spec", "image_folder_classes", "read_image_folder",
    "read_tinyimagenet", "subset_path", "supervised_transforms", "tinyimagenet_class_names",
    "tinyimagenet_dir", "tinyimagenet_wnids",
]

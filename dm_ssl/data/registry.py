"""Dataset name → how to read it, its classes, statistics and augmentation defaults."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .cifar import cifar_class_names, load_cifar
from .digits import (
    DIGITS_MEAN,
    DIGITS_NUM_CLASSES,
    DIGITS_STD,
    digits_class_names,
    load_digits_split,
)
from .transforms import MEAN, STD


@dataclass(frozen=True)
class DatasetSpec:
    """What the builders need to know about one dataset.

    ``load(root, split, **options)`` returns ``(uint8 images (N, H, W, C), int64 labels (N,))``;
    ``class_names(root, **options)`` the names in label order. ``mean``/``std`` hold one value
    per channel or a single value repeated over the channels. ``hflip`` is the default of the
    horizontal flip in the weak/strong augmentations.
    """

    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool
    needs_root: bool
    load: Callable[..., tuple[np.ndarray, np.ndarray]]
    class_names: Callable[..., list[str]]

    def stats(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` for images with ``channels`` channels."""
        if len(self.mean) == channels:
            return self.mean, self.std
        if len(self.mean) == 1:
            return self.mean * channels, self.std * channels
        raise ValueError(f"dataset {self.name!r} has statistics for {len(self.mean)} channels, "
                         f"not {channels}")


def _load_cifar(name: str, root: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    return load_cifar(name, root, split)


def _cifar_names(name: str, root: Any) -> list[str]:
    return cifar_class_names(name, root)


def _load_digits(root: Any, split: str, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    return load_digits_split(split, **options)  # shipped with scikit-learn: root is unused


def _digits_names(root: Any, **options: Any) -> list[str]:
    return digits_class_names()


DATASETS: dict[str, DatasetSpec] = {
    name: DatasetSpec(name=name, num_classes=k, mean=MEAN[name], std=STD[name], hflip=True,
                      needs_root=True, load=partial(_load_cifar, name),
                      class_names=partial(_cifar_names, name))
    for name, k in (("cifar10", 10), ("cifar100", 100))
}
DATASETS["digits"] = DatasetSpec(
    name="digits", num_classes=DIGITS_NUM_CLASSES, mean=(DIGITS_MEAN,), std=(DIGITS_STD,),
    hflip=False,  # a mirrored digit is not the same digit (and 2 / 5 get confusable)
    needs_root=False, load=_load_digits, class_names=_digits_names)


def get_dataset_spec(dataset: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered as ``dataset``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset={dataset!r}; known datasets: "
                         f"{', '.join(sorted(DATASETS))}")
    return DATASETS[dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of the datasets :func:`~dm_ssl.data.build_ssl_datasets` built.

    ``img_size`` and ``channels`` describe the tensors the transforms produce; ``num_lb`` and
    ``num_ulb`` are the lengths of the labeled and unlabeled sets (``num_ulb`` is USB's
    ``ulb_dest_len``); ``split_path`` is the split file in the run directory.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    img_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_labels: int
    seed: int
    num_train: int
    num_lb: int
    num_ulb: int
    num_eval: int
    split_path: Optional[Path]

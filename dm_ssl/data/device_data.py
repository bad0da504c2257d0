"""Device-resident training streams, augmented on the device (``augment_on: device``, #12).

For the sets that fit in device memory (CIFAR-10/100 and digits for the SSL algorithms and
supervised mixup, Tiny-ImageNet for supervised mixup; 150 MB of uint8 for CIFAR's 50,000
images, 1.2 GB for Tiny-ImageNet's 100,000), the training images live on the device as one
``(N, C, H, W)`` uint8 tensor, made once per dataset and device (image files are decoded
once, at the start of the run: :func:`decode_images`). :class:`DeviceBatches` replaces a
training stream's DataLoader: it draws the same positions from the same
:class:`~dm_ssl.data.sampling.ResumableSampler` (semilearn's sampling semantics: labeled and
unlabeled streams, ``uratio``, seeded, sharded over processes, resumable mid-epoch), gathers
the batch by an index tensor and builds each view with
:class:`~dm_ssl.data.batch_augment.BatchAugment` (USB's weak and strong augmentation, per
sample; for supervised sets the recipe's zero-padded crop and flip). The item keys are the
dataset's own (``idx_lb, x_lb, y_lb``; ``idx_ulb, x_ulb_w, x_ulb_s``; ``x_ulb_s_0,
x_ulb_s_1`` for two strong views), so every semilearn algorithm whose views are weak / strong
reads them unchanged.

A batch's augmentation draws come from a generator seeded from its first sample's seed (the
sampler's per-position 63-bit seed): a batch is a function of its position in the run, so a
resumed run repeats it, and no two processes share draws.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .batch_augment import BatchAugment
from .errors import DatasetError
from .sampling import ResumableSampler, SeededDataset, derive_seed

#: the item keys of semilearn's classic-CV datasets -> what the device stream puts there
VIEW_OF_KEY = {"x_lb": "weak", "x_ulb_w": "weak", "x_ulb_s": "strong",
               "x_ulb_s_0": "strong", "x_ulb_s_1": "strong"}


@dataclass(frozen=True)
class DeviceAugmentSpec:
    """What a dataset's loader transforms do, for the device path: a random crop padded by
    ``pad`` (``reflect``: USB's SSL views; ``constant``: the supervised recipe's black
    padding), ``hflip``, then normalisation by ``mean`` / ``std`` (RandAugment(3, ·) for
    strong views). ``size``: the side every image must have (None: the arrays' own)."""

    pad: int
    hflip: bool
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    padding_mode: str = "reflect"
    size: Optional[int] = None


class DeviceBatches:
    """A training stream on the device: an iterable of batches like a DataLoader's.

    Args:
        images: the stream's images, ``(N, H, W)`` or ``(N, H, W, C)`` uint8 (numpy or torch;
            a torch tensor already on ``device`` is used without a copy where its layout
            allows).
        targets: their labels (N,).
        keys: the item keys to produce (from the dataset's ``__getitem__``: ``idx_*``,
            ``y_*`` and the views of :data:`VIEW_OF_KEY`).
        sampler: the stream's resumable sampler (positions and per-sample seeds).
        batch_size: per process; ``drop_last`` as the loader it replaces.
        spec: the augmentation.
        device: where images, views and indices live.
    """

    def __init__(self, images: Any, targets: Any, keys: Sequence[str],
                 sampler: ResumableSampler, batch_size: int, spec: DeviceAugmentSpec,
                 device: torch.device, drop_last: bool = True) -> None:
        unknown = [k for k in keys if k.startswith("x_") and k not in VIEW_OF_KEY]
        if unknown:
            raise ValueError(f"augment_on=device: no device view for the item keys {unknown} "
                             f"(it builds {', '.join(VIEW_OF_KEY)}); use augment_on=loader")
        x = images if isinstance(images, Tensor) else torch.as_tensor(np.asarray(images))
        if x.dtype != torch.uint8:
            raise ValueError(f"augment_on=device needs uint8 images, got {x.dtype}")
        if x.dim() == 3:
            x = x.unsqueeze(-1)
        self.images = x.permute(0, 3, 1, 2).contiguous().to(device)
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long).to(device)
        self.keys, self.sampler, self.batch_size = list(keys), sampler, int(batch_size)
        self.drop_last, self.device = drop_last, torch.device(device)
        self.weak, self.strong = (BatchAugment(strong=strong, pad=spec.pad, hflip=spec.hflip,
                                               mean=spec.mean, std=spec.std,
                                               padding_mode=spec.padding_mode)
                                  for strong in (False, True))
        self._generator = torch.Generator(device=self.device)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Dict[str, Tensor]]:
        buffer: List[Tuple[int, int]] = []
        for index, seed in self.sampler:
            buffer.append((int(index), int(seed)))
            if len(buffer) == self.batch_size:
                yield self.batch(buffer)
                buffer = []
        if buffer and not self.drop_last:
            yield self.batch(buffer)

    def batch(self, items: Sequence[Tuple[int, int]]) -> Dict[str, Tensor]:
        """The batch of ``(index, sample_seed)`` items, every view drawn on the device."""
        index = torch.tensor([i for i, _ in items], dtype=torch.long)
        if self.device.type == "cuda":  # from pinned memory: queued, no wait for the GPU
            index = index.pin_memory().to(self.device, non_blocking=True)
        else:
            index = index.to(self.device)
        x = self.images.index_select(0, index)
        g = self._generator.manual_seed(derive_seed(items[0][1], 0xA06))
        out: Dict[str, Tensor] = {}
        for key in self.keys:  # in the dataset's key order: the draws' order is fixed
            if key.startswith("idx_"):
                out[key] = index
            elif key.startswith("y_"):
                out[key] = self.targets.index_select(0, index)
            else:
                aug = self.weak if VIEW_OF_KEY[key] == "weak" else self.strong
                out[key] = aug(x, g)
        return out


def decode_images(paths: Sequence[str], size: int, workers: Optional[int] = None
                  ) -> np.ndarray:
    """Image files as one ``(N, size, size, 3)`` uint8 array (RGB, as the loader opens them:
    grey and CMYK files are converted), decoded by ``workers`` threads (default: the CPUs, at
    most 16). A file of another size is refused naming it: the device path crops without
    resizing."""
    from .images import load_rgb  # PIL; opens with the loader's own error messages

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def read(i: int) -> None:
        img = np.asarray(load_rgb(paths[i]))
        if img.shape != out.shape[1:]:
            raise DatasetError(
                f"augment_on=device: image {paths[i]} is {img.shape[1]}x{img.shape[0]}, "
                f"not {size}x{size}; the device path crops without resizing (every training "
                "image must have the dataset's side): use augment_on=loader", paths[i])
        out[i] = img

    workers = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # PIL decodes without the GIL
        list(pool.map(read, range(len(paths))))
    return out


def device_images(dataset: Any, device: torch.device) -> Tensor:
    """The dataset's training images on ``device`` as ``(N, C, H, W)`` uint8, made once per
    dataset and device and kept on the dataset (a supervised run hands the same set to both of
    semilearn's streams; a path dataset is decoded once)."""
    cache: Dict[str, Tensor] = dataset.__dict__.setdefault("_device_images", {})
    key = str(torch.device(device))
    if key not in cache:
        spec: DeviceAugmentSpec = dataset.device_augment
        data = np.asarray(dataset.data)
        if data.dtype.kind in "USO":  # image paths (Tiny-ImageNet): decode them all now
            data = decode_images([str(p) for p in data], int(spec.size))
        x = torch.as_tensor(data)
        x = (x.unsqueeze(-1) if x.dim() == 3 else x).permute(0, 3, 1, 2)
        cache[key] = x.contiguous().to(device)
    return cache[key]


def device_stream(dataset: Any, sampler: ResumableSampler, batch_size: int,
                  device: torch.device, drop_last: bool = True) -> DeviceBatches:
    """The device stream of a dm_ssl training set: an SSL set built by
    ``build_ssl_datasets`` or a supervised one built by ``build_supervised_datasets``, which
    record their :class:`DeviceAugmentSpec` as ``dataset.device_augment`` where the device
    path can do the loader's transforms (a :class:`SeededDataset` wrapper is looked through)."""
    if isinstance(dataset, SeededDataset):
        dataset = dataset.dataset
    spec: Optional[DeviceAugmentSpec] = getattr(dataset, "device_augment", None)
    if spec is None:
        raise ValueError("augment_on=device: this dataset has no device augmentation (the "
                         "classic-CV SSL sets cifar10, cifar100 and digits and the supervised "
                         "sets cifar10, cifar100, tinyimagenet and digits at their own size, "
                         "without auto_augment / reprob, do); use augment_on=loader")
    item = dataset[0]
    keys = [k for k in item if k.startswith(("idx_", "x_", "y_"))]
    images = device_images(dataset, device).permute(0, 2, 3, 1)  # a view: no copy
    return DeviceBatches(images, dataset.targets, keys, sampler, batch_size, spec, device,
                         drop_last)

"""Self-Tuning's transforms for the fine-grained transfer datasets (spec §6.2).

train = Resize(resize) → RandomResizedCrop(crop) → RandomHorizontalFlip [→ RandAugment]
        → ToTensor → Normalize(ImageNet)
eval  = Resize(resize) → CenterCrop(crop) → ToTensor → Normalize(ImageNet)
        or, with ``ten_crop``: Resize(resize) → TenCrop(crop) → each crop ToTensor → Normalize,
        stacked into one ``(10, 3, crop, crop)`` tensor (the evaluation loop averages over dim 1)

``Resize(resize)`` is Self-Tuning's ``ResizeImage``: a ``resize × resize`` square (the aspect
ratio is not kept), which its published numbers used; ``square_resize=False`` gives torchvision's
``Resize(resize)`` (shorter side to ``resize``) instead. The strong view's RandAugment is
semilearn's, at USB's setting for its 224-pixel datasets (ImageNet, Semi-Aves): ``(3, 10)``;
Self-Tuning's own RandAugmentMC(2, 10) is the FixMatch variant of the same operation set.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torchvision import transforms

from .transforms import ModeSafeRandAugment

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Self-Tuning's sizes: resize to 256 × 256, crop 224 × 224.
RESIZE = 256
CROP = 224
RANDAUGMENT = (3, 10)  # semilearn's RandAugment(n, m) for 224-pixel images (imagenet.py, aves.py)


def _check_sizes(resize: int, crop: int) -> None:
    if int(resize) != resize or int(crop) != crop or crop < 1 or resize < crop:
        raise ValueError(f"need integer sizes with 1 <= crop <= resize, got resize={resize!r}, "
                         f"crop={crop!r}")


def _resize(resize: int, square: bool) -> transforms.Resize:
    return transforms.Resize((resize, resize) if square else resize)


def _normalise(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [transforms.ToTensor(), transforms.Normalize(list(mean), list(std))]


class StackCrops:
    """Turn the crops of ``TenCrop``/``FiveCrop`` into one ``(num_crops, C, H, W)`` tensor.

    A class rather than a lambda so that DataLoader workers can pickle it.
    """

    def __init__(self, per_crop: Any) -> None:
        self.per_crop = per_crop

    def __call__(self, crops: Sequence[Any]) -> torch.Tensor:
        return torch.stack([self.per_crop(c) for c in crops])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.per_crop!r})"


def finegrained_train_transform(resize: int = RESIZE, crop: int = CROP, *,
                                mean: Sequence[float] = IMAGENET_MEAN,
                                std: Sequence[float] = IMAGENET_STD, randaugment: bool = False,
                                ra_n: int = RANDAUGMENT[0], ra_m: int = RANDAUGMENT[1],
                                square_resize: bool = True) -> transforms.Compose:
    """Self-Tuning's training view; ``randaugment`` adds semilearn's RandAugment(ra_n, ra_m)
    after the flip (the strong view of the FixMatch family)."""
    _check_sizes(resize, crop)
    ops: list[Any] = [_resize(resize, square_resize), transforms.RandomResizedCrop(crop),
                      transforms.RandomHorizontalFlip()]
    if randaugment:
        ops.append(ModeSafeRandAugment(ra_n, ra_m))
    return transforms.Compose(ops + _normalise(mean, std))


def finegrained_eval_transform(resize: int = RESIZE, crop: int = CROP, *,
                               mean: Sequence[float] = IMAGENET_MEAN,
                               std: Sequence[float] = IMAGENET_STD, ten_crop: bool = False,
                               square_resize: bool = True) -> transforms.Compose:
    """Centre crop (one ``(3, crop, crop)`` tensor) or ten crops (``(10, 3, crop, crop)``:
    the four corners and the centre, then the same five of the mirrored image)."""
    _check_sizes(resize, crop)
    if ten_crop:
        return transforms.Compose([_resize(resize, square_resize), transforms.TenCrop(crop),
                                   StackCrops(transforms.Compose(_normalise(mean, std)))])
    return transforms.Compose([_resize(resize, square_resize), transforms.CenterCrop(crop)]
                              + _normalise(mean, std))

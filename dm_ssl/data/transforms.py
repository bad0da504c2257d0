"""USB's classic-CV transforms (``semilearn/datasets/cv_datasets/cifar.py``, 0.3.2).

weak   = Resize(s) → RandomCrop(s, pad int(s·(1−crop_ratio)), reflect) → [HFlip] → ToTensor → Norm
strong = weak's geometry → semilearn's RandAugment(3, 5) (which ends with its own Cutout)
         → ToTensor → Normalize
eval   = Resize(s) → ToTensor → Normalize

With USB's crop_ratio 0.875 and s = 32 the padding is 4. ``Resize(s)`` is a no-op for images
already s × s (PIL returns a copy) and is kept so other sizes behave as in USB. The flip is
optional because flipping changes the meaning of some classes (digits).

semilearn is imported only when a strong transform is built: ``import semilearn`` takes
seconds and ~1 GB (it pulls in transformers).
"""

from __future__ import annotations

from typing import Any, Sequence

from torchvision import transforms

# Copied from semilearn/datasets/cv_datasets/cifar.py (0.3.2): CIFAR-10 is normalised with the
# ImageNet statistics there, CIFAR-100 with its own (tests/data/test_transforms.py compares).
MEAN = {
    "cifar10": (0.485, 0.456, 0.406),
    "cifar100": tuple(x / 255 for x in (129.3, 124.1, 112.4)),
}
STD = {
    "cifar10": (0.229, 0.224, 0.225),
    "cifar100": tuple(x / 255 for x in (68.2, 65.4, 70.4)),
}

USB_CROP_RATIO = 0.875


class ModeSafeRandAugment:
    """semilearn's ``RandAugment(n, m)`` for PIL images of any mode.

    Its final Cutout fills with an RGB colour, which PIL rejects on grey ("L") images; those
    go through RGB and back (exact for grey: R = G = B), RGB images are passed straight through.
    """

    def __init__(self, n: int = 3, m: int = 5) -> None:
        from semilearn.datasets.augmentation.randaugment import RandAugment

        self.op = RandAugment(n, m)

    def __call__(self, img: Any) -> Any:
        if img.mode == "RGB":
            return self.op(img)
        return self.op(img.convert("RGB")).convert(img.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.op.n}, m={self.op.m})"


def _geometry(img_size: int, crop_ratio: float, hflip: bool) -> list[Any]:
    if not 0.0 < crop_ratio <= 1.0:
        raise ValueError(f"crop_ratio must lie in (0, 1], got {crop_ratio!r}")
    ops: list[Any] = [
        transforms.Resize(img_size),
        transforms.RandomCrop(img_size, padding=int(img_size * (1 - crop_ratio)),
                              padding_mode="reflect"),
    ]
    if hflip:
        ops.append(transforms.RandomHorizontalFlip())
    return ops


def _to_normalised_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [transforms.ToTensor(), transforms.Normalize(list(mean), list(std))]


def weak_transform(img_size: int, mean: Sequence[float], std: Sequence[float], *,
                   crop_ratio: float = USB_CROP_RATIO, hflip: bool = True) -> transforms.Compose:
    """USB's weak augmentation: random crop with reflect padding (+ horizontal flip)."""
    return transforms.Compose(_geometry(img_size, crop_ratio, hflip)
                              + _to_normalised_tensor(mean, std))


def strong_transform(img_size: int, mean: Sequence[float], std: Sequence[float], *,
                     crop_ratio: float = USB_CROP_RATIO, hflip: bool = True, n: int = 3,
                     m: int = 5) -> transforms.Compose:
    """USB's strong augmentation: the weak geometry, then RandAugment(n, m) with Cutout."""
    return transforms.Compose(_geometry(img_size, crop_ratio, hflip)
                              + [ModeSafeRandAugment(n, m)]
                              + _to_normalised_tensor(mean, std))


def eval_transform(img_size: int, mean: Sequence[float],
                   std: Sequence[float]) -> transforms.Compose:
    """USB's evaluation transform: no augmentation."""
    return transforms.Compose([transforms.Resize(img_size)] + _to_normalised_tensor(mean, std))

"""scikit-learn's handwritten digits as a small offline SSL benchmark.

``sklearn.datasets.load_digits`` ships 1,797 real 8×8 grey images of the digits 0-9 (about 180
per class) inside scikit-learn, so a full pipeline can be exercised without any download. The
train/test split is stratified and seeded by ``split_seed``, independently of the SSL seed, so
every SSL seed is evaluated on the same test images.
"""

from __future__ import annotations

import numpy as np

DIGITS_NUM_CLASSES = 10
DIGITS_CLASS_NAMES = tuple(str(d) for d in range(DIGITS_NUM_CLASSES))
# Per-channel statistics of all 1,797 images at 8×8 after the 0..16 -> 0..255 rescale
# (in ToTensor's [0, 1] scale); see tests/data/test_digits.py.
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3759

_INTERPOLATIONS = ("nearest", "bilinear")


def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # only this module needs scikit-learn

    bunch = load_digits()
    grey = np.rint(bunch.images).astype(np.int64)  # float64 holding the integers 0..16
    images = ((grey * 255 + 8) // 16).astype(np.uint8)  # 0..16 -> 0..255, rounded
    return images, np.asarray(bunch.target, dtype=np.int64)


def _resize(images: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    from PIL import Image

    resample = Image.Resampling.NEAREST if interpolation == "nearest" else \
        Image.Resampling.BILINEAR
    return np.stack([np.asarray(Image.fromarray(img).resize((size, size), resample))
                     for img in images])


def load_digits_split(split: str = "train", *, test_size: float = 1 / 3, split_seed: int = 0,
                      size: int = 8, channels: int = 1,
                      interpolation: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """One side of a seeded, stratified train/test split of scikit-learn's digits.

    Args:
        split: ``"train"`` or ``"test"``.
        test_size: fraction of each class that goes to the test side (0 < test_size < 1).
        split_seed: seed of the train/test split (not of the labeled/unlabeled split).
        size: image side in pixels; 8 keeps the originals, larger upsamples.
        channels: 1 (grey) or 3 (grey replicated, for nets that expect RGB).
        interpolation: ``"nearest"`` or ``"bilinear"`` (used when ``size != 8``).

    Returns:
        ``(images, labels)``: uint8 ``(N, size, size, channels)`` with values 0..255 and int64
        ``(N,)``, in the order of the original dataset.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    from sklearn.model_selection import train_test_split

    images, labels = _all_digits()
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_size,
                                           stratify=labels, random_state=split_seed)
    idx = np.sort(train_idx if split == "train" else test_idx)
    images, labels = images[idx], labels[idx]
    if size != images.shape[1]:
        images = _resize(images, int(size), interpolation)
    images = np.repeat(images[..., None], channels, axis=-1)
    return np.ascontiguousarray(images), labels


def digits_class_names() -> list[str]:
    """``["0", ..., "9"]``."""
    return list(DIGITS_CLASS_NAMES)

"""Write tiny CIFAR-10/100 datasets in the official python-pickle layouts.

Two encodings of the same content:

- ``"py2"``: byte-for-byte the kind of stream Python 2's cPickle (protocol 2) wrote for the
  official release — every str as a BINSTRING, numpy arrays via
  ``numpy.core.multiarray._reconstruct`` — so keys and strings load as ``bytes``;
- ``"py3"``: ``pickle.dump(..., protocol=2)`` of dicts with bytes keys, as a Python 3 user
  re-pickling the originals would produce.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
CIFAR100_NAMES = [f"fine{i:02d}" for i in range(100)]
STYLES = ("py2", "py3")


class _Py2Pickler(pickle._Pickler):
    """Pure-python pickler writing str and bytes as Python 2 ``str`` (BINSTRING opcodes)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str8(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_str8
    dispatch[str] = _save_str8


def _to_bytes_keys(obj):
    if isinstance(obj, dict):
        return {k.encode(): _to_bytes_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [x.encode() if isinstance(x, str) else x for x in obj]
    return obj.encode() if isinstance(obj, str) else obj


def dump(obj: dict, path: Path, style: str) -> None:
    """Pickle ``obj`` (str keys/strings) to ``path`` in the given ``style``."""
    if style == "py2":
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(obj)
        # numpy 2 names its module numpy._core; the originals (numpy 1, Python 2) numpy.core.
        data = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        path.write_bytes(data)
    elif style == "py3":
        with path.open("wb") as f:
            pickle.dump(_to_bytes_keys(obj), f, protocol=2)
    else:
        raise ValueError(style)


def to_rows(images: np.ndarray) -> np.ndarray:
    """HWC uint8 images -> the official (N, 3072) rows: R plane, G plane, B plane."""
    n = len(images)
    rows = np.empty((n, 3072), dtype=np.uint8)
    for c in range(3):
        rows[:, c * 1024:(c + 1) * 1024] = images[..., c].reshape(n, 1024)
    return rows


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def write_cifar10(root: Path, style: str = "py2", per_batch: int = 6, n_test: int = 10,
                  seed: int = 0) -> dict:
    """``root/cifar-10-batches-py`` with 5 × ``per_batch`` train and ``n_test`` test images.

    Returns the expected arrays: ``train_images``/``train_labels``/``test_images``/
    ``test_labels`` (labels cycle through the 10 classes) and ``names``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        x = _images(rng, per_batch)
        y = [int(v) for v in (np.arange(per_batch) + (b - 1) * per_batch) % 10]
        dump({"batch_label": f"training batch {b} of 5", "labels": y, "data": to_rows(x),
              "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)]},
             folder / f"data_batch_{b}", style)
        train_x.append(x)
        train_y += y
    test_x = _images(rng, n_test)
    test_y = [int(v) for v in np.arange(n_test)[::-1] % 10]
    dump({"batch_label": "testing batch 1 of 1", "labels": test_y, "data": to_rows(test_x),
          "filenames": [f"test_{i}.png" for i in range(n_test)]}, folder / "test_batch", style)
    dump({"num_cases_per_batch": per_batch, "label_names": CIFAR10_NAMES, "num_vis": 3072},
         folder / "batches.meta", style)
    return {"train_images": np.concatenate(train_x), "train_labels": np.array(train_y),
            "test_images": test_x, "test_labels": np.array(test_y), "names": CIFAR10_NAMES,
            "folder": folder}


def write_cifar100(root: Path, style: str = "py2", per_class: int = 2, n_test: int = 100,
                   seed: int = 1) -> dict:
    """``root/cifar-100-python`` with ``per_class`` train images per fine class."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"names": CIFAR100_NAMES, "folder": folder}
    for split, n in (("train", 100 * per_class), ("test", n_test)):
        x = _images(rng, n)
        fine = [int(v) for v in rng.permutation(np.arange(n) % 100)]
        dump({"filenames": [f"{split}_{i}.png" for i in range(n)], "batch_label": f"{split}",
              "fine_labels": fine, "coarse_labels": [v // 5 for v in fine], "data": to_rows(x)},
             folder / split, style)
        out[f"{split}_images"], out[f"{split}_labels"] = x, np.array(fine)
    dump({"fine_label_names": CIFAR100_NAMES,
          "coarse_label_names": [f"coarse{i:02d}" for i in range(20)]}, folder / "meta", style)
    return out

#!/usr/bin/env python
"""A harder offline 10-class set in the CIFAR-10 layout: digits on random-colour backgrounds.

scikit-learn's 8×8 digits (the same seeded train/test split as ``dataset: digits``), each
rendered at 32×32 RGB: upsampled to a random size (22–30 px), placed at a random offset, drawn
in a random colour on a random-colour background with a linear gradient and pixel noise. Colour
and position carry no class information, so a mixed image of two such samples is hard in the
sense of spec §3: both components keep their strokes but the colours and backgrounds clash.
Training images are rendered from the digits' train side only and test images from the test
side, so no test digit is a re-rendering of a training digit.

The files are written exactly as the official release lays them out
(``<out>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``), so the set is read
by dm_ssl's CIFAR-10 reader like a user's own copy:

    .venv/bin/python scripts/make_colour_digits.py --out data/colour_digits
    dm-ssl train --config ... --set dataset=cifar10 --data-dir data/colour_digits
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Tuple

import numpy as np

FOLDER = "cifar-10-batches-py"
CLASS_NAMES = [str(d) for d in range(10)]


STYLES = ("hard", "plain")


def render(digits: np.ndarray, rng: np.random.Generator, size: int = 32,
           style: str = "hard") -> np.ndarray:
    """Render grey 8×8 digits (uint8, 0..255) as ``(N, size, size, 3)`` uint8 colour images.

    ``hard``: 22–30 px at a random offset, random colours on a two-colour gradient (either
    polarity); ``plain``: 26–30 px, a bright random-colour digit on one dark random colour (a
    set a small CNN learns in a few hundred steps; mixed samples still clash in colour).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    lo = 22 if style == "hard" else 26
    import torch
    import torch.nn.functional as F

    n = len(digits)
    out = np.empty((n, size, size, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    for i in range(n):
        side = int(rng.integers(lo, 31))
        glyph = torch.from_numpy(digits[i].astype(np.float32) / 255.0)[None, None]
        glyph = F.interpolate(glyph, size=(side, side), mode="bilinear",
                              align_corners=False)[0, 0].clamp(0, 1).numpy()
        alpha = np.zeros((size, size), dtype=np.float32)
        top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        alpha[top:top + side, left:left + side] = glyph
        if style == "plain":  # a dark background, a bright digit: colour but fixed polarity
            bg0 = bg1 = rng.uniform(0, 110, size=3).astype(np.float32)
            fg = rng.uniform(150, 255, size=3).astype(np.float32)
        else:
            bg0, bg1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
            fg = rng.uniform(0, 255, size=3).astype(np.float32)
            while np.abs(fg - (bg0 + bg1) / 2).max() < 80:  # keep the digit visible
                fg = rng.uniform(0, 255, size=3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        bg = bg0 + (bg1 - bg0) * ramp[..., None]
        img = bg * (1 - alpha[..., None]) + fg * alpha[..., None]
        out[i] = img + rng.normal(0, 4, size=img.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def make_colour_digits(
        n_train: int = 5000, n_test: int = 1000, seed: int = 0, style: str = "hard",
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: class-balanced renders, seeded."""
    from dm_ssl.data.digits import load_digits_split

    rng = np.random.default_rng(seed)
    sets = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = load_digits_split(split, size=8, channels=1)
        images = images[..., 0]
        # the same number of renders per class, sources drawn from that class's digits
        per_class = np.full(10, n // 10)
        per_class[: n % 10] += 1
        idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=k, replace=True)
                              for c, k in enumerate(per_class)])
        idx = idx[rng.permutation(len(idx))]
        sets += [render(images[idx], rng, style=style), labels[idx].astype(np.int64)]
    return tuple(sets)  # type: ignore[return-value]


def _rows(images: np.ndarray) -> np.ndarray:
    """HWC uint8 -> the official (N, 3072) rows (R plane, G plane, B plane)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def write_cifar10_layout(root: Path, x_train: np.ndarray, y_train: np.ndarray,
                         x_test: np.ndarray, y_test: np.ndarray) -> Path:
    """Write the five train batches, the test batch and the meta file; returns the folder."""
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)

    def dump(obj: dict, name: str) -> None:
        with (folder / name).open("wb") as f:  # bytes keys, as the official pickles load
            pickle.dump({k.encode(): v for k, v in obj.items()}, f, protocol=2)

    for b, part in enumerate(np.array_split(np.arange(len(y_train)), 5), start=1):
        dump({"batch_label": f"training batch {b} of 5".encode(), "labels":
              y_train[part].tolist(), "data": _rows(x_train[part]),
              "filenames": [f"train_{i}.png".encode() for i in part]}, f"data_batch_{b}")
    dump({"batch_label": b"testing batch 1 of 1", "labels": y_test.tolist(),
          "data": _rows(x_test), "filenames": [f"test_{i}.png".encode()
                                               for i in range(len(y_test))]}, "test_batch")
    dump({"label_names": [n.encode() for n in CLASS_NAMES], "num_cases_per_batch":
          int(np.ceil(len(y_train) / 5)), "num_vis": 3072}, "batches.meta")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to hold cifar-10-batches-py/")
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--style", choices=STYLES, default="hard")
    args = ap.parse_args()
    folder = write_cifar10_layout(Path(args.out), *make_colour_digits(args.train, args.test,
                                                                      args.seed, args.style))
    print(f"wrote {args.train} train and {args.test} test images to {folder}")


if __name__ == "__main__":
    main()

"""Your own images (``dataset: folder``, issue #28): the listing of a user's image tree.

    data_dir/train/<class>/**   labeled images; class names are the folder names, sorted
                                (torchvision's ImageFolder order): label i is the i-th
    data_dir/unlabeled/**       optional: images without a class, in any sub-folders
    data_dir/val/<class>/**     the evaluation images (or test/<class>/**; val/ wins)

Images are the files torchvision's ImageFolder reads (:data:`~dm_ssl.data.images.
IMG_EXTENSIONS`, any case), found recursively and sorted, so the listing and hence the labels
and the seeded splits drawn from them do not depend on the file system's order. Nothing here
imports semilearn. Every problem is one
:class:`~dm_ssl.data.errors.DatasetError` naming the folder or file.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from .errors import DatasetError
from .images import image_files, is_image_file, load_rgb

PathLike = Union[str, "os.PathLike[str]"]

#: the evaluation folders, in the order they are looked for
EVAL_SPLITS = ("val", "test")
LAYOUT = ("data_dir/train/<class>/*.jpg (labeled), optional data_dir/unlabeled/** (no class) "
          "and data_dir/val/<class>/*.jpg (or test/) for evaluation")


@dataclass(frozen=True)
class FolderListing:
    """The images of one image tree: paths relative to ``root`` (POSIX separators) with
    their labels; ``eval_split`` is the folder the evaluation images come from."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    unlabeled: tuple[str, ...]
    eval_split: str
    eval: tuple[tuple[str, int], ...]

    def fingerprint(self) -> str:
        """sha256 of every listed file's split, path, label and size: a resume compares it
        to refuse a tree that changed under the run."""
        h = hashlib.sha256()
        rows = ([("train", r, c) for r, c in self.train] + [("unlabeled", r, -1) for r in
                self.unlabeled] + [(self.eval_split, r, c) for r, c in self.eval])
        for split, rel, label in rows:
            size = (self.root / rel).stat().st_size
            h.update(f"{split}\t{rel}\t{label}\t{size}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()


def _error(root: Path, path: Path, problem: str) -> DatasetError:
    return DatasetError(f"image folder {os.fspath(root)}: {problem}. Expected {LAYOUT}.", path)


def _rel(root: Path, path: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _class_dirs(root: Path, base: Path) -> list[str]:
    """The class folders of ``base``, sorted; an image lying beside them is refused (it has
    no class)."""
    classes, loose = [], []
    for entry in os.scandir(base):
        if entry.is_dir():
            if not entry.name.startswith("."):  # .git, .ipynb_checkpoints, ...
                classes.append(entry.name)
        elif is_image_file(entry.name):
            loose.append(entry.name)
    if loose:
        first = base / sorted(loose)[0]
        raise _error(root, first, f"{first} lies in {base} itself, outside a class folder "
                                  f"({len(loose)} such image(s)); move it into "
                                  f"{base}/<class>/ (or into unlabeled/ if it has no class)")
    return sorted(classes)


def list_folder(root: PathLike) -> FolderListing:
    """The :class:`FolderListing` of the image tree at ``root`` (see the module docstring).

    Raises:
        DatasetError: ``root`` or ``train/`` missing, no class folders, a training class
            folder without images, an image outside a class folder, no ``val/`` or ``test/``,
            or an evaluation class that ``train/`` does not have.
    """
    root = Path(root)
    if not root.is_dir():
        raise _error(root, root, f"{root} is not a folder" if root.exists() else
                     f"{root} does not exist")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise _error(root, train_dir, f"missing folder {train_dir}")
    classes = _class_dirs(root, train_dir)
    if not classes:
        raise _error(root, train_dir, f"no class folders in {train_dir}")
    train: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        found = image_files(train_dir / name)
        if not found:
            raise _error(root, train_dir / name, f"class folder {train_dir / name} holds no "
                                                 "images: add some, or remove the folder")
        train += [(_rel(root, p), label) for p in found]
    unlabeled = tuple(_rel(root, p) for p in image_files(root / "unlabeled")) \
        if (root / "unlabeled").is_dir() else ()
    split = next((s for s in EVAL_SPLITS if (root / s).is_dir()), None)
    if split is None:
        raise _error(root, root / "val", f"no evaluation images: missing folder {root / 'val'}"
                                         f" (or {root / 'test'})")
    eval_dir, label_of = root / split, {c: i for i, c in enumerate(classes)}
    evaluation: list[tuple[str, int]] = []
    for name in _class_dirs(root, eval_dir):
        if name not in label_of:
            raise _error(root, eval_dir / name, f"class folder {eval_dir / name} has no "
                                                f"counterpart in {train_dir}")
        evaluation += [(_rel(root, p), label_of[name]) for p in image_files(eval_dir / name)]
    if not evaluation:
        raise _error(root, eval_dir, f"no images in {eval_dir}")
    return FolderListing(root, tuple(classes), tuple(train), unlabeled, split,
                         tuple(evaluation))


def decode_image(path: PathLike, size: int) -> np.ndarray:
    """One image file as uint8 ``(size, size, 3)``: RGB (grey, palette, CMYK, alpha
    converted as torchvision's ImageFolder does), squashed to ``size × size`` (Self-Tuning's
    square resize). JPEGs decode at the smallest scale still ≥ ``size`` (PIL's draft)."""
    img = load_rgb(path, draft=(size, size))
    return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def decode_all(root: Path, rels: Sequence[str], size: int, workers: int = 0
               ) -> tuple[np.ndarray, dict[int, str]]:
    """Every listed image decoded (:func:`decode_image`) into one uint8 array
    ``(N, size, size, 3)``, in threads (PIL releases the GIL while decoding); ``errors``
    maps the index of each file PIL could not read to why (its row stays zero)."""
    out = np.zeros((len(rels), size, size, 3), dtype=np.uint8)
    errors: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            out[i] = decode_image(root / rels[i], size)
        except Exception as err:  # any failure to decode makes the file unreadable
            cause = err.__cause__ if isinstance(err, DatasetError) and err.__cause__ else err
            errors[i] = f"{type(cause).__name__}: {cause}"  # PIL's reason, not load_rgb's advice

    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(rels))))
    return out, errors


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 ``(N, H, W, C)`` images over every
    pixel, in [0, 1], accumulated in float64 (CIFAR's published statistics are so made)."""
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(x.mean(0).tolist()), tuple(x.std(0).tolist())

"""Readers for Tiny-ImageNet-200 and ImageNet-style image folders (supervised runs, spec §6.3).

    pairs = read_tinyimagenet("data/", "val")   # [(image path, label 0..199), ...]

Both return ``(image path, label)`` lists; the images are opened only when an item is read
(:class:`~dm_ssl.data.finegrained.FineGrainedDataset`). Nothing here imports semilearn.

- Tiny-ImageNet-200, the official zip as extracted: ``<root>/tiny-imagenet-200/{wnids.txt,
  words.txt, train/<wnid>/images/*.JPEG, train/<wnid>/<wnid>_boxes.txt, val/images/*.JPEG,
  val/val_annotations.txt}``. The label of a class is the line of its wnid in ``wnids.txt``
  (0..199); training images are listed per class in that order, sorted by file name; the
  validation labels come from ``val_annotations.txt`` (``file<TAB>wnid<TAB>x0 y0 x1 y1``), in
  its order (images in ``val/images/``, or already sorted into ``val/<wnid>/[images/]``).
  The official ``test/`` split has no labels and is not read. The boxes are not used.
- Image folders (ImageNet-1k as ``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``, as after the
  usual ``valprep.sh``): classes are the sorted folder names of ``train/`` (torchvision's
  ``ImageFolder`` order), used for both splits; images are found recursively, sorted.

``root`` may also be the dataset's own folder. Every problem raises one
:class:`~dm_ssl.data.errors.DatasetError` naming the file and saying how to get the dataset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from .errors import DatasetError
from .images import image_files, is_image_file

PathLike = Union[str, "os.PathLike[str]"]

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_FOLDER = "tiny-imagenet-200"
TINYIMAGENET_NUM_CLASSES = 200
TINYIMAGENET_SPLITS = ("train", "val")
IMAGE_FOLDER_SPLITS = ("train", "val")


def _check_split(split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}")


# -- Tiny-ImageNet-200 -----------------------------------------------------------------------

def tinyimagenet_dir(root: PathLike) -> Path:
    """``root/tiny-imagenet-200``, or ``root`` itself when it is that folder (named so, or
    holding ``wnids.txt``). A missing folder is returned as ``root/tiny-imagenet-200``."""
    root = Path(root)
    nested = root / TINYIMAGENET_FOLDER
    if nested.is_dir():
        return nested
    if root.name == TINYIMAGENET_FOLDER or (root / "wnids.txt").is_file():
        return root
    return nested


def _tiny_error(root: PathLike, path: Path, problem: str) -> DatasetError:
    root = Path(root)
    target = root.parent if root.name == TINYIMAGENET_FOLDER else root
    return DatasetError(
        f"Tiny-ImageNet-200: {problem}. Get {TINYIMAGENET_URL} and extract it into "
        f"{os.fspath(target)!r} (giving {TINYIMAGENET_FOLDER}/), then pass that directory (or "
        f"the {TINYIMAGENET_FOLDER} folder itself) as root.", path)


def _read_lines(root: PathLike, path: Path) -> list[tuple[int, str]]:
    """``(line number, line without its end)`` of the non-blank lines of a text file."""
    if not path.is_file():
        raise _tiny_error(root, path, f"missing file {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _tiny_error(root, path, f"cannot read {path} ({type(err).__name__}: {err})") \
            from err
    return [(n, line.rstrip("\r\n")) for n, line in enumerate(text.splitlines(), 1)
            if line.strip()]


def _damaged(root: PathLike, path: Path, lineno: int, problem: str) -> DatasetError:
    return _tiny_error(root, path, f"{path}, line {lineno}: {problem}; the file is damaged or "
                                   "not from the official release")


def tinyimagenet_wnids(root: PathLike) -> list[str]:
    """The 200 WordNet ids of ``wnids.txt``, in label order."""
    path = tinyimagenet_dir(root) / "wnids.txt"
    wnids: list[str] = []
    for lineno, line in _read_lines(root, path):
        wnid = line.strip()
        if len(wnid.split()) != 1:
            raise _damaged(root, path, lineno, f"expected one wnid, got {line!r}")
        if wnid in wnids:
            raise _damaged(root, path, lineno, f"wnid {wnid} appears twice")
        wnids.append(wnid)
    if not wnids:
        raise _tiny_error(root, path, f"{path} lists no classes")
    return wnids


def tinyimagenet_class_names(root: PathLike) -> list[str]:
    """The words of each class (``words.txt``: ``wnid<TAB>words``), in label order."""
    wnids = tinyimagenet_wnids(root)
    path = tinyimagenet_dir(root) / "words.txt"
    words: dict[str, str] = {}
    for lineno, line in _read_lines(root, path):
        parts = line.split("\t", 1)
        if len(parts) != 2:
            raise _damaged(root, path, lineno, f"expected 'wnid<TAB>words', got {line!r}")
        words[parts[0].strip()] = parts[1].strip()
    missing = [w for w in wnids if w not in words]
    if missing:
        raise _tiny_error(root, path, f"{path} has no words for wnid {missing[0]} "
                                      f"({len(missing)} of the {len(wnids)} classes lack them)")
    return [words[w] for w in wnids]


def _tiny_train(root: PathLike, folder: Path, wnids: list[str]) -> list[tuple[str, int]]:
    pairs: list[tuple[str, int]] = []
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise _tiny_error(root, images, f"missing folder {images} (class {wnid} of "
                                            "wnids.txt)")
        names = sorted(n for n in os.listdir(images) if is_image_file(n))
        if not names:
            raise _tiny_error(root, images, f"no images in {images}")
        pairs += [(os.fspath(images / n), label) for n in names]
    return pairs


def _val_image(folder: Path, official: Path, wnid: str) -> Optional[Path]:
    """Where a validation image is: ``val/images/`` as released, or in its class folder
    (``val/<wnid>/images/`` or ``val/<wnid>/``), where common preparation scripts move it;
    None when it is in none of them."""
    for place in (official, folder / "val" / wnid / "images" / official.name,
                  folder / "val" / wnid / official.name):
        if place.is_file():
            return place
    return None


def _tiny_val(root: PathLike, folder: Path, wnids: list[str]) -> list[tuple[str, int]]:
    path = folder / "val" / "val_annotations.txt"
    label_of = {w: i for i, w in enumerate(wnids)}
    images = folder / "val" / "images"
    pairs: list[tuple[str, int]] = []
    missing: list[str] = []
    seen: set[str] = set()
    for lineno, line in _read_lines(root, path):
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise _damaged(root, path, lineno, "expected 'file<TAB>wnid<TAB>box', got "
                                               f"{line!r}")
        name, wnid = parts[0].strip(), parts[1].strip()
        if wnid not in label_of:
            raise _damaged(root, path, lineno, f"wnid {wnid} is not in wnids.txt")
        if name in seen:
            raise _damaged(root, path, lineno, f"{name} is annotated twice")
        seen.add(name)
        found = _val_image(folder, images / name, wnid)
        if found is None:
            missing.append(os.fspath(images / name))
        pairs.append((os.fspath(found or images / name), label_of[wnid]))
    if not pairs:
        raise _tiny_error(root, path, f"{path} lists no images")
    if missing:
        raise _tiny_error(root, Path(missing[0]), f"missing image {missing[0]} (listed in "
                                                  f"{path}; {len(missing)} of the {len(pairs)} "
                                                  "listed images are missing)")
    return pairs


def read_tinyimagenet(root: PathLike, split: str = "train") -> list[tuple[str, int]]:
    """``(image path, label)`` of every image of ``split`` (``"train"`` or ``"val"``).

    Labels are the line of the image's wnid in ``wnids.txt`` (0-based).

    Raises:
        DatasetError: a file or folder is missing or does not hold what the official release
            does; the message names it and says where to get the dataset.
        ValueError: unknown ``split``.
    """
    _check_split(split, TINYIMAGENET_SPLITS)
    folder = tinyimagenet_dir(root)
    wnids = tinyimagenet_wnids(root)
    if split == "train":
        return _tiny_train(root, folder, wnids)
    return _tiny_val(root, folder, wnids)


# -- ImageNet-style image folders ------------------------------------------------------------

def _folder_error(root: PathLike, path: Path, problem: str) -> DatasetError:
    return DatasetError(
        f"image folder: {problem}. Expected {os.fspath(root)!r} to hold train/<class>/*.JPEG and "
        "val/<class>/*.JPEG (for ImageNet-1k: get ILSVRC2012 from https://image-net.org/, "
        "extract the training archives per class and sort the validation images into class "
        "folders, e.g. with valprep.sh).", path)


def image_folder_classes(root: PathLike) -> list[str]:
    """The class folder names of ``root/train``, sorted: label ``i`` is the ``i``-th."""
    train = Path(root) / "train"
    if not train.is_dir():
        raise _folder_error(root, train, f"missing folder {train}")
    classes = sorted(e.name for e in os.scandir(train) if e.is_dir())
    if not classes:
        raise _folder_error(root, train, f"no class folders in {train}")
    return classes


def read_image_folder(root: PathLike, split: str = "train") -> list[tuple[str, int]]:
    """``(image path, label)`` of every image of ``root/<split>/<class>/``, classes in
    :func:`image_folder_classes` order, images sorted (as torchvision's ``ImageFolder``).

    Raises:
        DatasetError: a missing split folder, a class folder without images, or (for ``val``)
            a class folder that ``train`` does not have.
        ValueError: unknown ``split``.
    """
    _check_split(split, IMAGE_FOLDER_SPLITS)
    classes = image_folder_classes(root)
    base = Path(root) / split
    if not base.is_dir():
        raise _folder_error(root, base, f"missing folder {base}")
    present = sorted(e.name for e in os.scandir(base) if e.is_dir())
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise _folder_error(root, base / unknown[0], f"class folder {base / unknown[0]} is not "
                                                     f"in {Path(root) / 'train'}")
    pairs: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        if name not in present:  # only in val: a class without validation images
            continue
        images = image_files(base / name)
        if not images:
            raise _folder_error(root, base / name, f"no images in {base / name}")
        pairs += [(p, label) for p in images]
    if not pairs:
        raise _folder_error(root, base, f"no images in {base}")
    return pairs

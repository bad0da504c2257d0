"""CUB-200-2011, Stanford Cars and FGVC-Aircraft for the SSL-transfer protocol (spec §6.2, §7).

    dsets, info = build_finegrained_ssl_datasets("cub200", "data/", percent=15, seed=0,
                                                 run_dir="runs/selftuning_cub_15_s0")

Readers take the official on-disk layouts as they are (no download, no md5) and return
``(image path, label)`` lists, labels 0-based; the images are opened only when an item is read:

- ``cub200``: ``<root>/CUB_200_2011/{images/, images.txt, image_class_labels.txt,
  train_test_split.txt, classes.txt}`` (1-based ids and labels in the files);
- ``stanford_cars``: torchvision's ``StanfordCars`` layout, ``<root>/stanford_cars/{cars_train/,
  cars_test/, devkit/cars_train_annos.mat, devkit/cars_meta.mat,
  cars_test_annos_withlabels.mat}`` (1-based ``class`` in the ``annotations`` struct); also
  as the Kaggle copy nests it (``cars_train/cars_train/``, ``car_devkit/devkit/``), and the
  original full download, ``{car_ims/, cars_annos.mat}`` (one ``annotations`` struct with
  ``relative_im_path``, ``class`` and the ``test`` flag of the same split, and
  ``class_names``);
- ``fgvc_aircraft``: torchvision's ``FGVCAircraft`` layout, ``<root>/fgvc-aircraft-2013b/data/
  {images/, variants.txt, images_variant_trainval.txt, images_variant_test.txt}``: the 100
  variants, ``trainval`` for training.

``root`` may also be the dataset's own folder. The files are parsed here rather than through
torchvision's classes, whose errors ("Dataset not found.", a bare ``KeyError``) do not name the
file; the parsing follows theirs (``tests/data/test_finegrained.py`` compares on the same files).
Every problem raises one :class:`~dm_ssl.data.errors.DatasetError` naming the file and saying
where to get the dataset.

Labeled subsets follow Self-Tuning: ``percent`` % of every class of the training set
(:func:`~dm_ssl.data.split.class_balanced_subset`, seeded), the rest of the training set being
the unlabeled set. The subset is saved in the run directory as ``train_<percent>.txt`` in
Self-Tuning's ``image_list`` format (``relative/path.jpg label`` per line, paths relative to the
dataset folder), with the settings it was drawn with in ``train_<percent>.meta.json``, and reused
when the run is resumed. A user's own Self-Tuning list (``label_list=``) can replace the draw.
For ``selftuning``/``selftuning_dm`` the labeled items also carry a strong view ``x_lb_s``
(Self-Tuning's key view of a labeled image is a second augmentation of it).

This module subclasses semilearn's ``BasicDataset`` and so imports semilearn (seconds);
``dm_ssl.data`` imports it on first use of one of its names.
"""

from __future__ import annotations

import json
import numbers
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .datasets import IndexedDataset
from .errors import DatasetError
from .finegrained_transforms import (
    CROP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDAUGMENT,
    RESIZE,
    finegrained_eval_transform,
    finegrained_train_transform,
)
from .registry import DatasetInfo
from .split import _atomic_write_text, class_balanced_subset, labels_fingerprint

PathLike = Union[str, "os.PathLike[str]"]

SPLITS = ("train", "test")
RA_VIEWS = ("strong", "all")  # which training views get RandAugment
LIST_FORMAT = "dm_ssl.labeled_list/1"
_META_SUFFIX = ".meta.json"

# Algorithms whose labeled items also carry a strongly augmented view ``x_lb_s``: Self-Tuning
# draws its labeled key from a second augmentation of the image (semilearn's BasicDataset
# already does so for defixmatch).
_LB_STRONG_VIEW = ("selftuning", "selftuning_dm")


# -- the three datasets ----------------------------------------------------------------------

@dataclass(frozen=True)
class FineGrainedSpec:
    """One fine-grained dataset: its official folder, number of classes and where to get it.

    ``locate(root)`` finds the dataset's ``folder``; ``read(folder, split)`` returns
    ``(relative paths, 0-based labels, the listing file)`` with paths relative to ``folder``;
    ``class_names(folder)`` the names in label order; ``train_images`` is the folder (relative
    to ``folder``) holding the training images.
    """

    name: str
    title: str
    num_classes: int
    folder: str
    train_images: str
    source: str
    locate: Callable[[Path], Path]
    read: Callable[[Path, str], tuple[list[str], list[int], Path]]
    class_names: Callable[[Path], list[str]]
    mean: tuple[float, ...] = IMAGENET_MEAN  # ImageNet-pretrained backbones (spec §6.2)
    std: tuple[float, ...] = IMAGENET_STD

    def how_to_get(self, root: PathLike) -> str:
        root = Path(root)
        target = root.parent if root.name == self.folder else root
        return (f"{self.source} Extract it into {os.fspath(target)!r} (giving {self.folder}/), "
                f"then pass that directory (or the {self.folder} folder itself) as root.")


class _Bad(Exception):
    """A problem found while parsing; turned into a DatasetError naming the dataset's source."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(problem)
        self.path, self.problem = path, problem


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped line)`` of the non-blank lines of a text file."""
    if not path.is_file():
        raise _Bad(path, f"missing file {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _Bad(path, f"cannot read {path} ({type(err).__name__}: {err})") from err
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _bad_line(path: Path, lineno: int, problem: str) -> _Bad:
    return _Bad(path, f"{path}, line {lineno}: {problem}; the file is damaged or not from the "
                      "official release")


def _check_class_count(path: Path, names: list[str], num_classes: int) -> list[str]:
    if len(names) != num_classes:
        raise _Bad(path, f"{path} lists {len(names)} classes, the official release has "
                         f"{num_classes}")
    return names


def _check_images(folder: Path, rels: list[str], listing: Path) -> None:
    """Every listed image must exist and be non-empty: they are opened lazily (an empty file
    would stop the run at the first evaluation that reads it), so find those now."""
    missing, empty = [], []
    for r in rels:  # one stat per file (CUB lists 11,788)
        path = folder / r
        try:
            st = path.stat()
        except OSError:
            missing.append(r)
            continue
        if not stat.S_ISREG(st.st_mode):
            missing.append(r)
        elif st.st_size == 0:
            empty.append(r)
    if missing:
        path = folder / missing[0]
        raise _Bad(path, f"missing image {path} (listed in {listing}; {len(missing)} of the "
                         f"{len(rels)} listed images are missing)")
    if empty:
        path = folder / empty[0]
        raise _Bad(path, f"empty image file {path} (0 bytes; listed in {listing}; {len(empty)} "
                         f"of the {len(rels)} listed images are empty)")


# CUB-200-2011 ----------------------------------------------------------------------------------

def _cub_folder(root: Path) -> Path:
    nested = root / "CUB_200_2011"
    if nested.is_dir():
        twice = nested / "CUB_200_2011"  # the archive extracted into a folder of its name
        return twice if twice.is_dir() and not (nested / "images.txt").is_file() else nested
    if root.name == "CUB_200_2011" or (root / "images.txt").is_file():
        return root
    return nested


def _cub_table(path: Path, value: Callable[[str], Any]) -> dict[int, Any]:
    """``<id> <value>`` lines → {id: value(rest)}, ids unique."""
    table: dict[int, Any] = {}
    for lineno, line in _read_lines(path):
        parts = line.split(None, 1)
        try:
            key, val = int(parts[0]), value(parts[1])
        except (IndexError, ValueError) as err:
            raise _bad_line(path, lineno, f"expected '<image id> <value>', got {line!r}") from err
        if key in table:
            raise _bad_line(path, lineno, f"id {key} appears twice")
        table[key] = val
    return table


def _cub_class_names(folder: Path) -> list[str]:
    path = folder / "classes.txt"
    table = _cub_table(path, str)
    if sorted(table) != list(range(1, len(table) + 1)):
        raise _Bad(path, f"{path}: class ids must run 1..{len(table)}")
    return _check_class_count(path, [table[i] for i in range(1, len(table) + 1)], 200)


def _cub_read(folder: Path, split: str) -> tuple[list[str], list[int], Path]:
    num_classes = len(_cub_class_names(folder))
    images_txt = folder / "images.txt"
    images = _cub_table(images_txt, str)
    labels_txt, split_txt = folder / "image_class_labels.txt", folder / "train_test_split.txt"
    labels, is_train = _cub_table(labels_txt, int), _cub_table(split_txt, int)
    for path, table in ((labels_txt, labels), (split_txt, is_train)):
        if set(table) != set(images):
            only = sorted(set(images) ^ set(table))
            raise _Bad(path, f"{path} and {images_txt} list different image ids (e.g. {only[0]})")
    bad = [i for i, c in labels.items() if not 1 <= c <= num_classes]
    if bad:
        raise _Bad(labels_txt, f"{labels_txt}: image {bad[0]} has class {labels[bad[0]]}, "
                               f"outside 1..{num_classes}")
    if not set(is_train.values()) <= {0, 1}:
        raise _Bad(split_txt, f"{split_txt}: the second column must be 1 (train) or 0 (test)")
    want = 1 if split == "train" else 0
    ids = [i for i in images if is_train[i] == want]  # images.txt order (ascending ids)
    rels = [f"images/{images[i]}" for i in ids]
    _check_images(folder, rels, images_txt)
    return rels, [labels[i] - 1 for i in ids], images_txt  # 1-based in the files


# Stanford Cars (torchvision's StanfordCars layout) ----------------------------------------------

def _cars_folder(root: Path) -> Path:
    nested = root / "stanford_cars"
    if nested.is_dir():
        return nested
    if root.name == "stanford_cars" or any((root / p).exists() for p in (
            "devkit", "car_devkit", CARS_ANNOS)):
        return root
    return nested


#: the original full download's one annotation file (images under car_ims/)
CARS_ANNOS = "cars_annos.mat"


def _cars_sub(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name/name`` as the Kaggle copy nests its image folders."""
    twice = folder / name / name
    return twice if twice.is_dir() else folder / name


def _cars_devkit(folder: Path) -> Path:
    """``devkit/``, or ``car_devkit/devkit/`` (car_devkit.tgz extracted into its own folder)."""
    kaggle = folder / "car_devkit" / "devkit"
    return kaggle if not (folder / "devkit").is_dir() and kaggle.is_dir() else folder / "devkit"


def _cars_full(folder: Path) -> bool:
    """The original full download (``cars_annos.mat`` + ``car_ims/``), without a devkit."""
    return (folder / CARS_ANNOS).is_file() and not _cars_devkit(folder).is_dir()


def _loadmat(path: Path, key: str) -> np.ndarray:
    import scipy.io

    if not path.is_file():
        raise _Bad(path, f"missing file {path}")
    try:
        mat = scipy.io.loadmat(os.fspath(path), squeeze_me=True)  # as torchvision reads it
    except Exception as err:  # scipy raises many types for damaged files; report all alike
        raise _Bad(path, f"cannot read {path} as a MATLAB file ({type(err).__name__}: {err})") \
            from err
    if key not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise _Bad(path, f"{path} has no {key!r} variable (has {keys})")
    return np.atleast_1d(mat[key])  # squeeze_me turns a single entry into a scalar


def _cars_class_names(folder: Path) -> list[str]:
    path = folder / CARS_ANNOS if _cars_full(folder) else _cars_devkit(folder) / "cars_meta.mat"
    names = _loadmat(path, "class_names")
    if names.dtype.names is not None or not all(isinstance(n, str) for n in names.tolist()):
        raise _Bad(path, f"{path}: 'class_names' must be a cell array of strings")
    return _check_class_count(path, [str(n) for n in names.tolist()], 196)


def _cars_read(folder: Path, split: str) -> tuple[list[str], list[int], Path]:
    num_classes = len(_cars_class_names(folder))
    if _cars_full(folder):  # one file, both splits: its 'test' flag is the devkit's split
        annos, name, images = folder / CARS_ANNOS, "relative_im_path", ""
    elif split == "train":
        annos, name = _cars_devkit(folder) / "cars_train_annos.mat", "fname"
        images = _cars_sub(folder, "cars_train").relative_to(folder).as_posix()
    else:
        annos, name = folder / "cars_test_annos_withlabels.mat", "fname"
        if not annos.is_file() and (_cars_devkit(folder) / annos.name).is_file():
            annos = _cars_devkit(folder) / annos.name  # where some copies of the devkit keep it
        images = _cars_sub(folder, "cars_test").relative_to(folder).as_posix()
    if images and not (folder / images).is_dir():
        raise _Bad(folder / images, f"missing folder {folder / images}")
    table = _loadmat(annos, "annotations")
    fields = table.dtype.names or ()
    needed = [name, "class"] + (["test"] if name == "relative_im_path" else [])
    if any(f not in fields for f in needed):
        hint = (" (cars_test_annos.mat has no labels: the test labels are in "
                "cars_test_annos_withlabels.mat)" if split == "test" else "")
        names = ", ".join(repr(f) for f in needed[:-1]) + f" and {needed[-1]!r}"
        raise _Bad(annos, f"{annos}: 'annotations' must be a struct array with fields {names}, "
                          f"got fields {list(fields)}{hint}")
    rels, labels = [], []
    for n, row in enumerate(table):
        fname, cls = row[name], row["class"]
        if not (isinstance(fname, str) and fname and np.ndim(cls) == 0
                and np.issubdtype(np.asarray(cls).dtype, np.number)
                and float(cls).is_integer() and 1 <= int(cls) <= num_classes):
            raise _Bad(annos, f"{annos}: annotation {n} has {name}={fname!r}, class={cls!r}; "
                              f"expected a file name and a class in 1..{num_classes}")
        if not images and bool(row["test"]) != (split == "test"):
            continue
        rels.append(f"{images}/{fname}" if images else fname)
        labels.append(int(cls) - 1)  # 1-based in the devkit, as torchvision subtracts
    _check_images(folder, rels, annos)
    return rels, labels, annos


# FGVC-Aircraft (torchvision's FGVCAircraft layout, variant level) -----------------------------

def _aircraft_folder(root: Path) -> Path:
    nested = root / "fgvc-aircraft-2013b"
    if nested.is_dir():
        return nested
    if root.name == "fgvc-aircraft-2013b" or (root / "data" / "variants.txt").is_file():
        return root
    if root.name == "data" and (root / "variants.txt").is_file():
        return root.parent
    return nested


def _aircraft_class_names(folder: Path) -> list[str]:
    path = folder / "data" / "variants.txt"
    names = [line for _, line in _read_lines(path)]
    if len(set(names)) != len(names):
        raise _Bad(path, f"{path} lists a variant twice")
    return _check_class_count(path, names, 100)


def _aircraft_read(folder: Path, split: str) -> tuple[list[str], list[int], Path]:
    index = {name: i for i, name in enumerate(_aircraft_class_names(folder))}
    listing = folder / "data" / f"images_variant_{'trainval' if split == 'train' else 'test'}.txt"
    rels, labels = [], []
    for lineno, line in _read_lines(listing):
        image_id, _, variant = line.partition(" ")  # torchvision: line.strip().split(" ", 1)
        if variant not in index:
            raise _bad_line(listing, lineno, f"variant {variant!r} is not in variants.txt")
        rels.append(f"data/images/{image_id}.jpg")
        labels.append(index[variant])
    _check_images(folder, rels, listing)
    return rels, labels, listing


FINEGRAINED_DATASETS: dict[str, FineGrainedSpec] = {
    "cub200": FineGrainedSpec(
        name="cub200", title="CUB-200-2011", num_classes=200, folder="CUB_200_2011",
        train_images="images",
        source="Get CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158 (see "
               "https://www.vision.caltech.edu/datasets/cub_200_2011/).",
        locate=_cub_folder, read=_cub_read, class_names=_cub_class_names),
    "stanford_cars": FineGrainedSpec(
        name="stanford_cars", title="Stanford Cars", num_classes=196, folder="stanford_cars",
        train_images="cars_train",
        source="The official page https://ai.stanford.edu/~jkrause/cars/car_dataset.html no "
               "longer serves the files; https://github.com/pytorch/vision/issues/7545 lists "
               "mirrors of cars_train/, cars_test/, the devkit (car_devkit.tgz) and "
               "cars_test_annos_withlabels.mat. Arrange them as torchvision's StanfordCars "
               "reads them: stanford_cars/{cars_train/, cars_test/, devkit/cars_train_annos.mat, "
               "devkit/cars_meta.mat, cars_test_annos_withlabels.mat} (the Kaggle copy's "
               "cars_train/cars_train/ and car_devkit/devkit/ are read as they come), or "
               "stanford_cars/{car_ims/, cars_annos.mat} (the original full download). "
               "Class-named folders (car_data/train/<class>/) are not read: their order is "
               "not the devkit's class numbering.",
        locate=_cars_folder, read=_cars_read, class_names=_cars_class_names),
    "fgvc_aircraft": FineGrainedSpec(
        name="fgvc_aircraft", title="FGVC-Aircraft", num_classes=100,
        folder="fgvc-aircraft-2013b", train_images="data/images",
        source="Get https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
               "fgvc-aircraft-2013b.tar.gz (see https://www.robots.ox.ac.uk/~vgg/data/"
               "fgvc-aircraft/).",
        locate=_aircraft_folder, read=_aircraft_read, class_names=_aircraft_class_names),
}


def get_finegrained_spec(dataset: str) -> FineGrainedSpec:
    """The :class:`FineGrainedSpec` registered as ``dataset``."""
    if dataset not in FINEGRAINED_DATASETS:
        raise ValueError(f"unknown fine-grained dataset={dataset!r}; known: "
                         f"{', '.join(sorted(FINEGRAINED_DATASETS))}")
    return FINEGRAINED_DATASETS[dataset]


def finegrained_dir(dataset: str, root: PathLike) -> Path:
    """The dataset's own folder (``CUB_200_2011``, ``stanford_cars``, ``fgvc-aircraft-2013b``)
    under ``root``, or ``root`` itself when it is that folder. Saved lists' paths are relative
    to it. A missing folder is returned as ``root/<folder>`` (the errors then name it)."""
    return get_finegrained_spec(dataset).locate(Path(root))


def _call(spec: FineGrainedSpec, root: PathLike, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except _Bad as bad:
        raise DatasetError(f"{spec.title}: {bad.problem}. {spec.how_to_get(root)}",
                           bad.path) from None


def _read(spec: FineGrainedSpec, root: PathLike, split: str) -> tuple[Path, list[str], list[int]]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = spec.locate(Path(root))
    rels, labels, _ = _call(spec, root, spec.read, folder, split)
    return folder, rels, labels


def read_finegrained(dataset: str, root: PathLike, split: str = "train") -> list[tuple[str, int]]:
    """``(image path, 0-based label)`` of every image of ``split`` (``"train"``, which is
    ``trainval`` for FGVC-Aircraft, or ``"test"``), in the official files' order.

    Raises:
        DatasetError: a file is missing or does not hold what the official release does.
        ValueError: unknown ``dataset`` or ``split``.
    """
    folder, rels, labels = _read(get_finegrained_spec(dataset), root, split)
    return [(os.fspath(folder / r), c) for r, c in zip(rels, labels)]


def read_cub200(root: PathLike, split: str = "train") -> list[tuple[str, int]]:
    """CUB-200-2011's ``(image path, label)`` list (see :func:`read_finegrained`)."""
    return read_finegrained("cub200", root, split)


def read_stanford_cars(root: PathLike, split: str = "train") -> list[tuple[str, int]]:
    """Stanford Cars' ``(image path, label)`` list (see :func:`read_finegrained`)."""
    return read_finegrained("stanford_cars", root, split)


def read_fgvc_aircraft(root: PathLike, split: str = "train") -> list[tuple[str, int]]:
    """FGVC-Aircraft's ``(image path, variant label)`` list; ``"train"`` is ``trainval``."""
    return read_finegrained("fgvc_aircraft", root, split)


def finegrained_class_names(dataset: str, root: PathLike) -> list[str]:
    """The class names in label order (``classes.txt``, ``cars_meta.mat``, ``variants.txt``)."""
    spec = get_finegrained_spec(dataset)
    return _call(spec, root, spec.class_names, spec.locate(Path(root)))


def load_rgb(path: PathLike) -> Image.Image:
    """Open an image file as an RGB PIL image (CUB holds a few grey and CMYK JPEGs)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read image {os.fspath(path)} ({type(err).__name__}: "
                           f"{err}); the file is missing or damaged: restore it from the "
                           "dataset's archive", path) from err


# -- labeled subsets: Self-Tuning's image lists --------------------------------------------

def _check_percent(percent: float) -> Union[int, float]:
    """``percent`` as a plain int (15) or float (12.5), checked to lie in (0, 100]."""
    if isinstance(percent, bool) or not isinstance(percent, numbers.Real) \
            or not 0 < percent <= 100:
        raise ValueError(f"percent must be a number in (0, 100], got {percent!r}")
    return int(percent) if float(percent).is_integer() else float(percent)


def labeled_list_path(run_dir: PathLike, percent: float) -> Path:
    """``run_dir/train_<percent>.txt``: the run's labeled subset."""
    return Path(run_dir) / f"train_{_check_percent(percent):g}.txt"


def read_image_list(path: PathLike) -> list[tuple[str, int]]:
    """Self-Tuning's ``image_list`` format: ``<path> <label>`` per line (the label is the last
    field, so paths may hold spaces; blank lines are skipped).

    Raises:
        DatasetError: missing/unreadable file, a line without an integer label, or no entries.
    """
    path = Path(path)
    try:
        lines = _read_lines(path)
    except _Bad as bad:
        raise DatasetError(f"image list: {bad.problem}", path) from None
    entries = []
    for lineno, line in lines:
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetError(f"image list {path}, line {lineno}: expected '<image path> "
                               f"<integer label>', got {line!r}", path)
        entries.append((parts[0], int(parts[1])))
    if not entries:
        raise DatasetError(f"image list {path} holds no images", path)
    return entries


def _write_image_list(path: Path, rels: list[str], labels: list[int]) -> None:
    _atomic_write_text(path, "".join(f"{r} {c}\n" for r, c in zip(rels, labels)))


@dataclass
class _TrainSet:
    """The training split being subset: paths relative to ``folder`` and labels."""

    spec: FineGrainedSpec
    folder: Path
    rels: list[str]
    labels: np.ndarray

    def index_of_rel(self) -> dict[str, int]:
        return {r: i for i, r in enumerate(self.rels)}


def _lb_from_saved(path: Path, train: _TrainSet, remedy: str) -> np.ndarray:
    """Indices of a list written by this module (paths relative to the dataset folder)."""
    index = train.index_of_rel()
    seen: dict[int, int] = {}
    for lineno, (rel, label) in enumerate(read_image_list(path), 1):
        i = index.get(rel)
        if i is None:
            raise DatasetError(f"labeled list {path}, entry {lineno}: {rel!r} is not an image of "
                               f"the {train.spec.title} training set in {train.folder}. "
                               + remedy, path)
        if label != train.labels[i]:
            raise DatasetError(f"labeled list {path}, entry {lineno}: {rel!r} has label {label} "
                               f"but the dataset says {train.labels[i]}. " + remedy, path)
        if i in seen:
            raise DatasetError(f"labeled list {path}: {rel!r} is listed twice (entries "
                               f"{seen[i]} and {lineno}). " + remedy, path)
        seen[i] = lineno
    return np.sort(np.fromiter(seen, dtype=np.int64, count=len(seen)))


def _lb_from_user_list(path: Path, train: _TrainSet) -> np.ndarray:
    """Indices of a user's Self-Tuning list.

    A relative path is looked up under the dataset folder, then under the folder of its
    training images (``spec.train_images``), then under the list's own root (the folder holding
    ``image_list/``, against which Self-Tuning resolves it); it must exist. The image is then
    matched to the training set: the same file, or else the one training image with that file
    name (Self-Tuning's copies keep the official names in their own folders), and the list's
    label must be in range and equal the dataset's own label for it.
    """
    k = train.spec.num_classes
    list_root = path.parent.parent if path.parent.name == "image_list" else path.parent
    bases = [train.folder, train.folder / train.spec.train_images, list_root]
    real = {os.path.realpath(train.folder / r): i for i, r in enumerate(train.rels)}
    by_name: dict[str, int] = {}
    for i, r in enumerate(train.rels):
        name = Path(r).name
        by_name[name] = -1 if name in by_name else i  # -1: the name is not unique
    remedy = "Fix the list, or leave label_list unset to draw the labeled subset."
    seen: dict[int, int] = {}
    for lineno, (given, label) in enumerate(read_image_list(path), 1):
        where = f"label list {path}, entry {lineno} ({given!r})"
        candidates = [Path(given)] if os.path.isabs(given) else [b / given for b in bases]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DatasetError(f"{where}: no such image (looked for "
                               f"{', '.join(os.fspath(c) for c in candidates)}). {remedy}", path)
        if not 0 <= label < k:
            raise DatasetError(f"{where}: label {label} is outside [0, {k}) for "
                               f"{train.spec.title}. {remedy}", path)
        i = real.get(os.path.realpath(found), by_name.get(found.name, -2))
        if i < 0:
            why = "several training images have" if i == -1 else "no training image has"
            raise DatasetError(f"{where}: {found} is not an image of the {train.spec.title} "
                               f"training set in {train.folder} ({why} the name "
                               f"{found.name!r}). {remedy}", path)
        if label != train.labels[i]:
            raise DatasetError(f"{where}: label {label}, but the dataset labels "
                               f"{train.rels[i]} {train.labels[i]} (the list numbers the "
                               f"classes differently?). {remedy}", path)
        if i in seen:
            raise DatasetError(f"{where}: the image of entry {seen[i]} again. {remedy}", path)
        seen[i] = lineno
    return np.sort(np.fromiter(seen, dtype=np.int64, count=len(seen)))


def _subset(train: _TrainSet, percent: float, seed: int, run_dir: PathLike,
            label_list: Optional[PathLike]) -> tuple[np.ndarray, Path]:
    percent = _check_percent(percent)
    path = labeled_list_path(run_dir, percent)
    meta_path = path.with_name(path.stem + _META_SUFFIX)
    user = None if label_list is None else Path(label_list)
    meta = {
        "format": LIST_FORMAT,
        "dataset": train.spec.name,
        "percent": percent,
        "seed": None if user is not None else int(seed),
        "label_list": None if user is None else os.path.abspath(user),
        "num_train": len(train.labels),
        "labels_sha256": labels_fingerprint(train.labels),
    }
    remedy = (f"Use another run directory for a new experiment, or delete {path} and "
              f"{meta_path.name} to draw the labeled subset again.")
    if path.exists():
        if meta_path.exists():
            try:
                saved = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise DatasetError(f"labeled list {path}: its settings file {meta_path} is "
                                   f"unreadable ({err}). {remedy}", path) from err
            if not isinstance(saved, dict):
                saved = {}
            diffs = [f"{key}: saved {saved.get(key, '<missing>')!r}, now {value!r}"
                     for key, value in meta.items() if saved.get(key) != value]
            if diffs:
                raise DatasetError(f"labeled list {path} was made for other data or settings ("
                                   + "; ".join(diffs) + f"). {remedy}", path)
        lb_idx = _lb_from_saved(path, train, remedy)
        if user is not None and not np.array_equal(lb_idx, _lb_from_user_list(user, train)):
            raise DatasetError(f"labeled list {path} holds another labeled set than label_list "
                               f"{user}. {remedy}", path)
        return lb_idx, path
    if user is not None:
        lb_idx = _lb_from_user_list(user, train)
    else:
        lb_idx = class_balanced_subset(train.labels, percent / 100.0, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    # settings first: a run killed in between leaves no list, so the next one draws again
    _atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    _write_image_list(path, [train.rels[i] for i in lb_idx], [int(train.labels[i])
                                                              for i in lb_idx])
    return lb_idx, path


def get_or_create_labeled_subset(dataset: str, root: PathLike, percent: float, seed: int,
                                 run_dir: PathLike, *, label_list: Optional[PathLike] = None
                                 ) -> tuple[np.ndarray, Path]:
    """The run's labeled subset of the training set, as sorted indices into
    :func:`read_finegrained` ``(dataset, root, "train")``, and the list file holding it.

    ``run_dir/train_<percent>.txt`` is reused when present: its entries must be training images
    with their own labels, and its settings (``train_<percent>.meta.json``: dataset, percent,
    seed, label_list, the training labels' sha256) must match this call. Otherwise the subset
    is ``percent`` % of every class drawn with ``seed``
    (:func:`~dm_ssl.data.split.class_balanced_subset`), or the entries of ``label_list`` (a
    Self-Tuning ``image_list/train_<percent>.txt``; see :func:`_lb_from_user_list`), and is
    saved there.

    Raises:
        DatasetError: dataset files, a saved list or ``label_list`` that do not fit; the message
            names the file.
    """
    spec = get_finegrained_spec(dataset)
    folder, rels, labels = _read(spec, root, "train")
    return _subset(_TrainSet(spec, folder, rels, np.asarray(labels, dtype=np.int64)), percent,
                   seed, run_dir, label_list)


# -- datasets ------------------------------------------------------------------------------

class FineGrainedDataset(IndexedDataset):
    """semilearn's :class:`BasicDataset` over image files: ``data`` holds paths and each item
    opens its file as RGB (:func:`load_rgb`), so nothing is held in memory.

    BasicDataset's ``__getitem__`` makes the items (keys per algorithm) from what
    ``__sample__`` returns; only ``__sample__`` changes, plus the labeled strong view
    ``x_lb_s`` for Self-Tuning.
    """

    def __sample__(self, idx):
        path, target = super().__sample__(idx)
        return load_rgb(str(path)), target

    def __getitem__(self, idx):
        if (self.alg in _LB_STRONG_VIEW and not self.is_ulb and self.transform is not None
                and self.strong_transform is not None):
            img, target = self.__sample__(idx)
            return {"idx_lb": idx, "x_lb": self.transform(img),
                    "x_lb_s": self.strong_transform(img), "y_lb": target}
        return super().__getitem__(idx)


def build_finegrained_ssl_datasets(
        dataset: str, root: PathLike, percent: float, seed: int, run_dir: PathLike, *,
        algorithm: str = "fixmatch", label_list: Optional[PathLike] = None,
        resize: int = RESIZE, crop: int = CROP, ten_crop: bool = False,
        randaugment: bool = True, include_lb_to_ulb: bool = False, square_resize: bool = True,
        randaugment_views: str = "strong", randaugment_n: int = RANDAUGMENT[0],
        randaugment_m: int = RANDAUGMENT[1],
) -> tuple[dict[str, Optional[Dataset]], DatasetInfo]:
    """Datasets for one SSL-transfer run (Self-Tuning's protocol, spec §7).

    Args:
        dataset: ``"cub200"``, ``"stanford_cars"`` or ``"fgvc_aircraft"``.
        root: the directory holding the dataset's folder, or that folder.
        percent: labeled share of every class of the training set (15, 30 or 50 in the paper).
        seed: the subset's seed.
        run_dir: the run directory; the subset is saved there as ``train_<percent>.txt`` and
            reused on resume (:func:`get_or_create_labeled_subset`).
        algorithm: semilearn algorithm name; it decides the keys of the items. For
            ``selftuning``/``selftuning_dm`` labeled items also carry ``x_lb_s``.
        label_list: a Self-Tuning ``image_list/train_<percent>.txt`` to use as the labeled set.
        resize, crop: Resize then (RandomResized/Center) crop sizes (256 / 224).
        ten_crop: evaluation items are ``(10, 3, crop, crop)`` (TenCrop): the evaluation loop
            must average the ten predictions.
        randaugment: RandAugment(randaugment_n, randaugment_m) (semilearn's) in the views of
            ``randaugment_views``; without it the strong view is a second draw of the weak
            geometry.
        randaugment_views: ``"strong"`` (the strong views: FixMatch's, Self-Tuning's key
            views) or ``"all"`` (every training view, as the official Self-Tuning's
            ``TransformTrain``, with (2, 10)).
        include_lb_to_ulb: the labeled images are also unlabeled ones (USB's habit; Self-Tuning
            uses the rest of the training set only, the default).
        square_resize: Self-Tuning's ``resize × resize`` resize; False: shorter side to
            ``resize``.

    Returns:
        ``({'train_lb', 'train_ulb', 'eval', 'test'}, DatasetInfo)``: ``'eval'`` is the test
        split and ``'test'`` is None, as in :func:`~dm_ssl.data.build_ssl_datasets`.
        ``info.split_path`` is the labeled list; ``info.num_labels`` its length.
    """
    spec = get_finegrained_spec(dataset)
    _check_percent(percent)
    folder, rels, labels = _read(spec, root, "train")
    _, test_rels, test_labels = _read(spec, root, "test")
    class_names = tuple(finegrained_class_names(dataset, root))
    labels = np.asarray(labels, dtype=np.int64)
    train = _TrainSet(spec, folder, rels, labels)
    # the transforms are checked before anything is written to run_dir
    if randaugment_views not in RA_VIEWS:
        raise ValueError(f"randaugment_views must be one of {', '.join(RA_VIEWS)}, "
                         f"got {randaugment_views!r}")
    ra = dict(ra_n=randaugment_n, ra_m=randaugment_m)
    weak = finegrained_train_transform(resize, crop, mean=spec.mean, std=spec.std,
                                       randaugment=randaugment and randaugment_views == "all",
                                       square_resize=square_resize, **ra)
    strong = finegrained_train_transform(resize, crop, mean=spec.mean, std=spec.std,
                                         randaugment=randaugment, square_resize=square_resize,
                                         **ra)
    plain = finegrained_eval_transform(resize, crop, mean=spec.mean, std=spec.std,
                                       ten_crop=ten_crop, square_resize=square_resize)
    lb_idx, list_path = _subset(train, percent, seed, run_dir, label_list)
    ulb_idx = np.setdiff1d(np.arange(len(labels)), lb_idx).astype(np.int64)
    if include_lb_to_ulb:
        ulb_idx = np.concatenate([lb_idx, ulb_idx])

    # numpy str arrays rather than lists of str: DataLoader workers do not copy them page by
    # page through reference counting
    paths = np.array([os.fspath(folder / r) for r in rels])
    test_paths = np.array([os.fspath(folder / r) for r in test_rels])
    test_labels = np.asarray(test_labels, dtype=np.int64)
    k = spec.num_classes
    dsets: dict[str, Optional[Dataset]] = {
        "train_lb": FineGrainedDataset(algorithm, paths[lb_idx], labels[lb_idx], k, weak, False,
                                       strong, source_idx=lb_idx),
        "train_ulb": FineGrainedDataset(algorithm, paths[ulb_idx], labels[ulb_idx], k, weak,
                                        True, strong, source_idx=ulb_idx),
        "eval": FineGrainedDataset(algorithm, test_paths, test_labels, k, plain, False, None),
        "test": None,
    }
    info = DatasetInfo(
        name=dataset, num_classes=k, class_names=class_names, img_size=int(crop), channels=3,
        mean=tuple(spec.mean), std=tuple(spec.std), num_labels=len(lb_idx), seed=int(seed),
        num_train=len(labels), num_lb=len(lb_idx), num_ulb=len(ulb_idx),
        num_eval=len(test_labels), split_path=list_path)
    return dsets, info

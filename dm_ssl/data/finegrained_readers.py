"""The official on-disk layouts of CUB-200-2011, Stanford Cars and FGVC-Aircraft: where each
dataset's folder is, its split listings and class names (:class:`FineGrainedSpec`; the
registry, :mod:`dm_ssl.data.registry`, holds one per dataset). Builders are in
:mod:`dm_ssl.data.finegrained`, whose docstring describes the layouts."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from .errors import DatasetError
from .finegrained_transforms import IMAGENET_MEAN, IMAGENET_STD

PathLike = Union[str, "os.PathLike[str]"]

SPLITS = ("train", "test")


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


class BadFile(Exception):
    """A problem found while parsing; turned into a DatasetError naming the dataset's source."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(problem)
        self.path, self.problem = path, problem


def read_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped line)`` of the non-blank lines of a text file."""
    if not path.is_file():
        raise BadFile(path, f"missing file {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BadFile(path, f"cannot read {path} ({type(err).__name__}: {err})") from err
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _bad_line(path: Path, lineno: int, problem: str) -> BadFile:
    return BadFile(path, f"{path}, line {lineno}: {problem}; the file is damaged or not from the "
                      "official release")


def _check_class_count(path: Path, names: list[str], num_classes: int) -> list[str]:
    if len(names) != num_classes:
        raise BadFile(path, f"{path} lists {len(names)} classes, the official release has "
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
        raise BadFile(path, f"missing image {path} (listed in {listing}; {len(missing)} of the "
                         f"{len(rels)} listed images are missing)")
    if empty:
        path = folder / empty[0]
        raise BadFile(path, f"empty image file {path} (0 bytes; listed in {listing}; {len(empty)} "
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
    for lineno, line in read_lines(path):
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
        raise BadFile(path, f"{path}: class ids must run 1..{len(table)}")
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
            raise BadFile(path, f"{path} and {images_txt} list different image ids "
                                f"(e.g. {only[0]})")
    bad = [i for i, c in labels.items() if not 1 <= c <= num_classes]
    if bad:
        raise BadFile(labels_txt, f"{labels_txt}: image {bad[0]} has class {labels[bad[0]]}, "
                               f"outside 1..{num_classes}")
    if not set(is_train.values()) <= {0, 1}:
        raise BadFile(split_txt, f"{split_txt}: the second column must be 1 (train) or 0 (test)")
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
        raise BadFile(path, f"missing file {path}")
    try:
        mat = scipy.io.loadmat(os.fspath(path), squeeze_me=True)  # as torchvision reads it
    except Exception as err:  # scipy raises many types for damaged files; report all alike
        raise BadFile(path, f"cannot read {path} as a MATLAB file ({type(err).__name__}: {err})") \
            from err
    if key not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise BadFile(path, f"{path} has no {key!r} variable (has {keys})")
    return np.atleast_1d(mat[key])  # squeeze_me turns a single entry into a scalar


def _cars_class_names(folder: Path) -> list[str]:
    path = folder / CARS_ANNOS if _cars_full(folder) else _cars_devkit(folder) / "cars_meta.mat"
    names = _loadmat(path, "class_names")
    if names.dtype.names is not None or not all(isinstance(n, str) for n in names.tolist()):
        raise BadFile(path, f"{path}: 'class_names' must be a cell array of strings")
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
        raise BadFile(folder / images, f"missing folder {folder / images}")
    table = _loadmat(annos, "annotations")
    fields = table.dtype.names or ()
    needed = [name, "class"] + (["test"] if name == "relative_im_path" else [])
    if any(f not in fields for f in needed):
        hint = (" (cars_test_annos.mat has no labels: the test labels are in "
                "cars_test_annos_withlabels.mat)" if split == "test" else "")
        names = ", ".join(repr(f) for f in needed[:-1]) + f" and {needed[-1]!r}"
        raise BadFile(annos, f"{annos}: 'annotations' must be a struct array with fields {names}, "
                          f"got fields {list(fields)}{hint}")
    rels, labels = [], []
    for n, row in enumerate(table):
        fname, cls = row[name], row["class"]
        if not (isinstance(fname, str) and fname and np.ndim(cls) == 0
                and np.issubdtype(np.asarray(cls).dtype, np.number)
                and float(cls).is_integer() and 1 <= int(cls) <= num_classes):
            raise BadFile(annos, f"{annos}: annotation {n} has {name}={fname!r}, class={cls!r}; "
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
    names = [line for _, line in read_lines(path)]
    if len(set(names)) != len(names):
        raise BadFile(path, f"{path} lists a variant twice")
    return _check_class_count(path, names, 100)


def _aircraft_read(folder: Path, split: str) -> tuple[list[str], list[int], Path]:
    index = {name: i for i, name in enumerate(_aircraft_class_names(folder))}
    listing = folder / "data" / f"images_variant_{'trainval' if split == 'train' else 'test'}.txt"
    rels, labels = [], []
    for lineno, line in read_lines(listing):
        image_id, _, variant = line.partition(" ")  # torchvision: line.strip().split(" ", 1)
        if variant not in index:
            raise _bad_line(listing, lineno, f"variant {variant!r} is not in variants.txt")
        rels.append(f"data/images/{image_id}.jpg")
        labels.append(index[variant])
    _check_images(folder, rels, listing)
    return rels, labels, listing


#: cub200's layout (the registry adds its name, title and class count)
CUB200_LAYOUT: dict[str, Any] = dict(
    folder="CUB_200_2011", train_images="images",
    source="Get CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158 (see "
           "https://www.vision.caltech.edu/datasets/cub_200_2011/).",
    locate=_cub_folder, read=_cub_read, class_names=_cub_class_names)

#: stanford_cars's layout (the registry adds its name, title and class count)
STANFORD_CARS_LAYOUT: dict[str, Any] = dict(
    folder="stanford_cars",
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
    locate=_cars_folder, read=_cars_read, class_names=_cars_class_names)

#: fgvc_aircraft's layout (the registry adds its name, title and class count)
FGVC_AIRCRAFT_LAYOUT: dict[str, Any] = dict(
    folder="fgvc-aircraft-2013b", train_images="data/images",
    source="Get https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
           "fgvc-aircraft-2013b.tar.gz (see https://www.robots.ox.ac.uk/~vgg/data/"
           "fgvc-aircraft/).",
    locate=_aircraft_folder, read=_aircraft_read, class_names=_aircraft_class_names)


def call_reader(spec: FineGrainedSpec, root: PathLike, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with a :class:`BadFile` turned into the dataset's DatasetError."""
    try:
        return fn(*args)
    except BadFile as bad:
        raise DatasetError(f"{spec.title}: {bad.problem}. {spec.how_to_get(root)}",
                           bad.path) from None


def read_split(spec: FineGrainedSpec, root: PathLike, split: str
               ) -> tuple[Path, list[str], list[int]]:
    """``(the dataset's folder, relative image paths, labels)`` of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = spec.locate(Path(root))
    rels, labels, _ = call_reader(spec, root, spec.read, folder, split)
    return folder, rels, labels

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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from torch.utils.data import Dataset

from .datasets import IndexedDataset
from .errors import DatasetError
from .finegrained_readers import (
    BadFile,
    FineGrainedSpec,
    call_reader,
    read_lines,
    read_split,
)
from .finegrained_transforms import (
    CROP,
    RANDAUGMENT,
    RESIZE,
    finegrained_eval_transform,
    finegrained_train_transform,
)
from .images import load_rgb
from .info import DatasetInfo
from .registry import get_dataset
from .split import _atomic_write_text, class_balanced_subset, labels_fingerprint

PathLike = Union[str, "os.PathLike[str]"]

RA_VIEWS = ("strong", "all")  # which training views get RandAugment
LIST_FORMAT = "dm_ssl.labeled_list/1"
_META_SUFFIX = ".meta.json"

# Algorithms whose labeled items also carry a strongly augmented view ``x_lb_s``: Self-Tuning
# draws its labeled key from a second augmentation of the image (semilearn's BasicDataset
# already does so for defixmatch).
_LB_STRONG_VIEW = ("selftuning", "selftuning_dm")


def get_finegrained_spec(dataset: str) -> FineGrainedSpec:
    """The :class:`~dm_ssl.data.finegrained_readers.FineGrainedSpec` of ``dataset`` (a
    transfer dataset of :data:`~dm_ssl.data.registry.DATASETS`)."""
    return get_dataset(dataset, "transfer").transfer


def finegrained_dir(dataset: str, root: PathLike) -> Path:
    """The dataset's own folder (``CUB_200_2011``, ``stanford_cars``, ``fgvc-aircraft-2013b``)
    under ``root``, or ``root`` itself when it is that folder. Saved lists' paths are relative
    to it. A missing folder is returned as ``root/<folder>`` (the errors then name it)."""
    return get_finegrained_spec(dataset).locate(Path(root))


def read_finegrained(dataset: str, root: PathLike, split: str = "train") -> list[tuple[str, int]]:
    """``(image path, 0-based label)`` of every image of ``split`` (``"train"``, which is
    ``trainval`` for FGVC-Aircraft, or ``"test"``), in the official files' order.

    Raises:
        DatasetError: a file is missing or does not hold what the official release does.
        ValueError: unknown ``dataset`` or ``split``.
    """
    folder, rels, labels = read_split(get_finegrained_spec(dataset), root, split)
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
    return call_reader(spec, root, spec.class_names, spec.locate(Path(root)))


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
        lines = read_lines(path)
    except BadFile as bad:
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
    folder, rels, labels = read_split(spec, root, "train")
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
    folder, rels, labels = read_split(spec, root, "train")
    _, test_rels, test_labels = read_split(spec, root, "test")
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

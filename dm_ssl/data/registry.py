"""The dataset registry: one entry per dataset name, with what it supports and how to read it.

Every fact about a dataset lives in its :class:`Dataset` entry of :data:`DATASETS`: its display
names, class count, official training-set size, statistics, the protocols it serves and the
reader of each (``ssl``: the classic-CV SSL builder, :func:`~dm_ssl.data.build_ssl_datasets`;
``supervised``: :func:`~dm_ssl.data.build_supervised_datasets`; ``transfer``: fine-grained SSL
transfer, :func:`~dm_ssl.data.build_finegrained_ssl_datasets`), and where the training images
and their augmentation can live on the device (``augment_on: device``). Everything else (the
config checks, the experiment grids, the tables' names) is derived from it. Adding a dataset
is one entry here plus its reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from .cifar import cifar_class_names, load_cifar
from .digits import (
    DIGITS_MEAN,
    DIGITS_NUM_CLASSES,
    DIGITS_STD,
    digits_class_names,
    load_digits_split,
)
from .download import Source
from .finegrained_readers import (
    CUB200_LAYOUT,
    FGVC_AIRCRAFT_LAYOUT,
    STANFORD_CARS_LAYOUT,
    FineGrainedSpec,
)
from .finegrained_transforms import IMAGENET_MEAN, IMAGENET_STD
from .tinyimagenet import (
    TINYIMAGENET_NUM_CLASSES,
    TINYIMAGENET_URL,
    image_folder_classes,
    read_image_folder,
    read_tinyimagenet,
    tinyimagenet_class_names,
)
from .transforms import MEAN, STD

PathLike = Union[str, "Path"]

#: the protocols a dataset can serve (the keys of :attr:`Dataset.readers`)
PROTOCOLS = ("ssl", "supervised", "transfer")
#: algorithms that train on labels only (``supervised_mixup`` and semilearn's two baselines):
#: the data builders give them no unlabeled set, the config refuses SSL-only keys
SUPERVISED_ALGORITHMS = ("supervised_mixup", "fullysupervised", "supervised")
PAD = 4  # spec §7: RandomCrop with padding 4


def is_supervised(algorithm: str) -> bool:
    """Whether ``algorithm`` trains on labels only (:data:`SUPERVISED_ALGORITHMS`)."""
    return algorithm in SUPERVISED_ALGORITHMS


@dataclass(frozen=True)
class DatasetSpec:
    """The classic-CV SSL reader of one dataset (the ``ssl`` protocol).

    ``load(root, split, **options)`` returns ``(uint8 images (N, H, W, C), int64 labels (N,))``;
    ``class_names(root, **options)`` the names in label order. ``mean``/``std`` hold one value
    per channel or a single value repeated over the channels. ``hflip`` is the default of the
    horizontal flip in the weak/strong augmentations.
    """

    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool
    needs_root: bool
    load: Callable[..., tuple[np.ndarray, np.ndarray]]
    class_names: Callable[..., list[str]]

    def stats(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` for images with ``channels`` channels."""
        if len(self.mean) == channels:
            return self.mean, self.std
        if len(self.mean) == 1:
            return self.mean * channels, self.std * channels
        raise ValueError(f"dataset {self.name!r} has statistics for {len(self.mean)} channels, "
                         f"not {channels}")


@dataclass(frozen=True)
class SupervisedSpec:
    """The supervised-protocol reader of one dataset.

    ``read(root, split)`` returns ``(images, labels)``: uint8 ``(N, H, W, 3)`` arrays, or image
    paths (opened lazily) when ``lazy``; ``split`` is ``"train"`` or ``"test"``.
    ``crop`` is ``"pad"`` (RandomCrop with padding) or ``"resized"`` (RandomResizedCrop).
    """

    name: str
    num_classes: Optional[int]  # None: as many as the folders hold
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: str
    lazy: bool
    read: Callable[[PathLike, str], tuple[np.ndarray, np.ndarray]]
    class_names: Callable[[PathLike], list[str]]
    pad: int = PAD      # RandomCrop padding of the "pad" crop
    hflip: bool = True  # digits: a flipped digit is another glyph


@dataclass(frozen=True)
class Dataset:
    """One dataset of the registry.

    ``title`` is its official name (messages), ``label`` the short name the paper's tables use;
    ``num_classes`` the official class count (a reader whose ``classes_from_files`` is true
    counts the classes of the copy on disk instead: a subset of Tiny-ImageNet's wnids works);
    ``train_size`` the official number of training images (the experiment grids size their
    epochs by it; None where no grid uses it). ``readers`` maps each protocol the dataset
    serves to its reader; ``device_augment`` names the protocols for which ``augment_on:
    device`` is implemented."""

    name: str
    title: str
    label: str
    num_classes: int
    train_size: Optional[int]
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    readers: dict[str, Any] = field(default_factory=dict)
    device_augment: tuple[str, ...] = ()
    classes_from_files: bool = False
    #: the official archives ``dm-ssl data download`` fetches (empty: none to fetch) and,
    #: where there is none, where to get the files
    sources: tuple[Source, ...] = ()
    no_source: Optional[str] = None

    @property
    def ssl(self) -> Optional[DatasetSpec]:
        return self.readers.get("ssl")

    @property
    def supervised(self) -> Optional[SupervisedSpec]:
        return self.readers.get("supervised")

    @property
    def transfer(self) -> Optional[FineGrainedSpec]:
        return self.readers.get("transfer")


# -- readers ------------------------------------------------------------------------------------
def _load_cifar(name: str, root: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    return load_cifar(name, root, split)


def _cifar_names(name: str, root: Any) -> list[str]:
    return cifar_class_names(name, root)


def _load_digits(root: Any, split: str, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    return load_digits_split(split, **options)  # shipped with scikit-learn: root is unused


def _digits_names(root: Any, **options: Any) -> list[str]:
    return digits_class_names()


def _paths(reader: Callable[[PathLike, str], list[tuple[str, int]]],
           test_split: str) -> Callable[[PathLike, str], tuple[np.ndarray, np.ndarray]]:
    """A ``(path, label)`` list reader as a supervised ``read(root, split)``."""
    def read(root: PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = reader(root, test_split if split == "test" else split)
        # a numpy str array: DataLoader workers do not copy it page by page (refcounts)
        return (np.array([p for p, _ in pairs]),
                np.array([c for _, c in pairs], dtype=np.int64))
    return read


def _torchvision_source(dataset: Any) -> Source:
    """A torchvision dataset class's official archive (its ``url``, ``filename``,
    ``base_folder``, ``tgz_md5``)."""
    return Source(dataset.url, dataset.filename, dataset.base_folder, dataset.tgz_md5)


def _cifar(name: str, title: str, k: int, source: Source) -> Dataset:
    mean, std = tuple(MEAN[name]), tuple(STD[name])
    return Dataset(
        name, title, title, k, 50000, 32, mean, std, readers={
            "ssl": DatasetSpec(name, k, mean, std, hflip=True, needs_root=True,
                               load=partial(_load_cifar, name),
                               class_names=partial(_cifar_names, name)),
            "supervised": SupervisedSpec(name, k, 32, mean, std, "pad", False,
                                         partial(_load_cifar, name),
                                         partial(_cifar_names, name))},
        device_augment=("ssl", "supervised"), sources=(source,))


def _transfer(name: str, title: str, label: str, k: int, train_size: int,
              layout: dict[str, Any], source: Optional[Source] = None) -> Dataset:
    spec = FineGrainedSpec(name=name, title=title, num_classes=k, **layout)
    return Dataset(name, title, label, k, train_size, 224, IMAGENET_MEAN, IMAGENET_STD,
                   readers={"transfer": spec}, sources=(source,) if source else (),
                   no_source=None if source else layout["source"])


DIGITS = Dataset(
    "digits", "scikit-learn digits", "Digits", DIGITS_NUM_CLASSES, None, 8,
    (DIGITS_MEAN,), (DIGITS_STD,),
    readers={
        # a mirrored digit is not the same digit (and 2 / 5 get confusable): no flip
        "ssl": DatasetSpec("digits", DIGITS_NUM_CLASSES, (DIGITS_MEAN,), (DIGITS_STD,),
                           hflip=False, needs_root=False, load=_load_digits,
                           class_names=_digits_names),
        # offline, for demos and quick experiments; root unused
        "supervised": SupervisedSpec("digits", DIGITS_NUM_CLASSES, 8, (DIGITS_MEAN,),
                                     (DIGITS_STD,), "pad", False,
                                     lambda root, split: load_digits_split(split),
                                     lambda root: digits_class_names(), pad=1, hflip=False)},
    device_augment=("ssl", "supervised"))

#: every dataset dm_ssl reads, by config name
DATASETS: dict[str, Dataset] = {d.name: d for d in (
    # the archives as torchvision's CIFAR10 / CIFAR100 know them (URL, file, folder, MD5)
    _cifar("cifar10", "CIFAR-10", 10, _torchvision_source(CIFAR10)),
    _cifar("cifar100", "CIFAR-100", 100, _torchvision_source(CIFAR100)),
    DIGITS,
    # as many classes as wnids.txt lists (200 in the official set; a subset of it works too)
    Dataset("tinyimagenet", "Tiny-ImageNet-200", "Tiny-ImageNet", TINYIMAGENET_NUM_CLASSES,
            100000, 64, IMAGENET_MEAN, IMAGENET_STD, classes_from_files=True,
            readers={"supervised": SupervisedSpec(
                "tinyimagenet", None, 64, IMAGENET_MEAN, IMAGENET_STD, "pad", True,
                _paths(read_tinyimagenet, "val"), tinyimagenet_class_names)},
            device_augment=("supervised",), sources=(Source(
                TINYIMAGENET_URL, "tiny-imagenet-200.zip", "tiny-imagenet-200",
                "90528d7ca1a48142e341f4ef8d21d0de"),)),
    Dataset("imagenet", "ImageNet-1k", "ImageNet", 1000, 1281167, 224, IMAGENET_MEAN,
            IMAGENET_STD, classes_from_files=True,
            readers={"supervised": SupervisedSpec(
                "imagenet", None, 224, IMAGENET_MEAN, IMAGENET_STD, "resized", True,
                _paths(read_image_folder, "val"), image_folder_classes)},
            no_source="ImageNet-1k is not downloaded by dm_ssl (it needs an account at "
                      "https://image-net.org/): get ILSVRC2012, then arrange it as "
                      "data_dir/train/<class>/*.JPEG and data_dir/val/<class>/*.JPEG"),
    # CUB: CaltechDATA's record, the official home since the vision.caltech.edu links died
    _transfer("cub200", "CUB-200-2011", "CUB-200", 200, 5994, CUB200_LAYOUT, Source(
        "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
        "CUB_200_2011.tgz", "CUB_200_2011", "97eceeb196236b17998738112f37df78")),
    _transfer("stanford_cars", "Stanford Cars", "Stanford-Cars", 196, 8144,
              STANFORD_CARS_LAYOUT),
    # trainval: FGVC-Aircraft's training split in the transfer and supervised protocols
    _transfer("fgvc_aircraft", "FGVC-Aircraft", "FGVC-Aircraft", 100, 6667,
              FGVC_AIRCRAFT_LAYOUT, Source(  # the publisher gives no checksum
                  "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
                  "fgvc-aircraft-2013b.tar.gz", "fgvc-aircraft-2013b.tar.gz",
                  "fgvc-aircraft-2013b")),
)}


def names(protocol: str) -> tuple[str, ...]:
    """The datasets that serve ``protocol`` (``ssl``, ``supervised``, ``transfer``), in
    registry order."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    return tuple(n for n, d in DATASETS.items() if protocol in d.readers)


def get_dataset(dataset: str, protocol: Optional[str] = None) -> Dataset:
    """The :class:`Dataset` registered as ``dataset`` (serving ``protocol`` when given); an
    unknown name raises ValueError listing the names that would do."""
    known = names(protocol) if protocol else tuple(DATASETS)
    if dataset not in known:
        listed = ", ".join(sorted(known))
        raise ValueError({
            "ssl": f"unknown dataset={dataset!r}; known datasets: {listed}",
            "supervised": f"unknown dataset={dataset!r} for supervised training; known: {listed}",
            "transfer": f"unknown fine-grained dataset={dataset!r}; known: {listed}",
        }.get(protocol or "", f"unknown dataset={dataset!r}; known: {listed}"))
    return DATASETS[dataset]


def get_dataset_spec(dataset: str) -> DatasetSpec:
    """The SSL reader (:class:`DatasetSpec`) of ``dataset``."""
    return get_dataset(dataset, "ssl").ssl

"""Readers of the official CIFAR-10/100 python-pickle releases, without torchvision.

torchvision's ``CIFAR10``/``CIFAR100`` insist on md5-exact archives and otherwise try to
download (impossible offline, and a confusing failure); these readers take the extracted
folders as they are and check their *content* instead:

- CIFAR-10:  ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
- CIFAR-100: ``<root>/cifar-100-python/{train, test, meta}`` (the 100 fine labels)

``root`` may also be the ``cifar-10-batches-py`` / ``cifar-100-python`` folder itself. Every
problem (missing file, corrupt pickle, wrong keys, shapes or labels) raises one
:class:`~dm_ssl.data.errors.DatasetError` naming the file and saying how to get the dataset.

The pickles are read with an allow-list unpickler: the official files hold only dicts, lists,
strings, ints and numpy arrays, so nothing else is ever constructed from them.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import DatasetError

PathLike = Union[str, "os.PathLike[str]"]

CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}

_IMAGE_SHAPE = (32, 32, 3)
_ROW = 32 * 32 * 3  # one image per row: the R plane, then G, then B, each row-major


@dataclass(frozen=True)
class _Layout:
    folder: str
    files: dict[str, tuple[str, ...]]  # split -> batch files, in order
    meta: str
    label_key: str
    names_key: str
    num_classes: int


_LAYOUTS = {
    "cifar10": _Layout(
        folder="cifar-10-batches-py",
        files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        meta="batches.meta", label_key="labels", names_key="label_names", num_classes=10),
    "cifar100": _Layout(
        folder="cifar-100-python", files={"train": ("train",), "test": ("test",)},
        meta="meta", label_key="fine_labels", names_key="fine_label_names", num_classes=100),
}

# (module, name) of every global the official pickles (written by Python 2) and pickles of
# numpy arrays written by Python 3 (protocols 2-5, numpy 1.x and 2.x) refer to.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    *((mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to construct {module}.{name}: the official "
                                         "files contain only dicts, lists and numpy arrays")
        return super().find_class(module, name)


def _layout(name: str) -> _Layout:
    if name not in _LAYOUTS:
        raise ValueError(f"unknown CIFAR dataset {name!r}; expected one of {sorted(_LAYOUTS)}")
    return _LAYOUTS[name]


def _how_to_get(name: str, root: PathLike) -> str:
    folder = _layout(name).folder
    root = Path(root)
    target = root.parent if root.name == folder else root  # root given as the folder itself
    archive = target / CIFAR_URLS[name].rsplit("/", 1)[1]
    if archive.is_file():  # downloaded, not extracted yet
        return (f"The archive {os.fspath(archive)} is there but not extracted: run "
                f"`tar xzf {os.fspath(archive)} -C {os.fspath(target)}` (giving {folder}/), "
                "then pass that directory as root.")
    return (f"Get the official python version from {CIFAR_URLS[name]} and extract it into "
            f"{os.fspath(target)!r} (giving {folder}/), then pass that directory (or the "
            f"{folder} folder itself) as root.")


def cifar_dir(name: str, root: PathLike) -> Path:
    """The folder holding the pickles: ``root/<official folder>``, or ``root`` itself.

    ``root`` counts as the folder itself when it is named like it or holds the meta file;
    otherwise ``root/<official folder>`` is returned even when missing, so that the error for
    the first missing file names the path the user is expected to create.
    """
    layout = _layout(name)
    root = Path(root)
    nested = root / layout.folder
    if nested.is_dir():
        return nested
    if root.name == layout.folder or (root / layout.meta).is_file():
        return root
    return nested


def _read_pickle(name: str, root: PathLike, path: Path) -> dict[str, Any]:
    """Unpickle one official file into a dict with ``str`` keys."""
    if not path.is_file():
        raise DatasetError(f"{name}: missing file {path}. {_how_to_get(name, root)}", path)
    try:
        with path.open("rb") as f:
            # encoding="bytes", as the dataset's page says: Python 2 str -> bytes.
            obj = _AllowListUnpickler(f, encoding="bytes").load()
    except Exception as err:  # corrupt/truncated pickles raise many types; report all alike
        raise DatasetError(f"{name}: cannot read {path} as a CIFAR pickle "
                           f"({type(err).__name__}: {err}); the file is corrupt or not from "
                           f"the official release. {_how_to_get(name, root)}", path) from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{name}: {path} holds a {type(obj).__name__}, not the dict of the "
                           f"official release. {_how_to_get(name, root)}", path)
    # Keys are bytes in the originals and str in some re-pickled copies: accept both.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _bad(name: str, root: PathLike, path: Path, problem: str) -> DatasetError:
    return DatasetError(f"{name}: {path}: {problem}. The file is not from the official release "
                        f"or is damaged. {_how_to_get(name, root)}", path)


def _read_batch(name: str, root: PathLike, path: Path) -> tuple[np.ndarray, np.ndarray]:
    layout = _layout(name)
    batch = _read_pickle(name, root, path)
    for key in ("data", layout.label_key):
        if key not in batch:
            raise _bad(name, root, path, f"missing key {key!r} (has {sorted(batch)})")
    data, labels = batch["data"], batch[layout.label_key]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _ROW):
        desc = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise _bad(name, root, path, f"'data' must be a uint8 array of shape (N, {_ROW}), "
                                     f"got a {desc}")
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError) as err:
        raise _bad(name, root, path, f"{layout.label_key!r} is not a list of ints ({err})") \
            from err
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise _bad(name, root, path, f"{layout.label_key!r} must be a flat list of ints, got "
                                     f"{labels.dtype} of shape {labels.shape}")
    if len(labels) != len(data):
        raise _bad(name, root, path, f"{len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise _bad(name, root, path, f"labels must lie in [0, {layout.num_classes}), got "
                                     f"[{labels.min()}, {labels.max()}]")
    # (N, 3072) = N × 3 planes × 32 × 32 -> HWC, contiguous so per-item indexing is cheap.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def load_cifar(name: str, root: PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``, fine labels).

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: the directory the archive was extracted into, or the extracted folder itself.
        split: ``"train"`` (the five ``data_batch_*`` / ``train``) or ``"test"``.

    Returns:
        ``(images, labels)``: uint8 ``(N, 32, 32, 3)`` RGB in HWC order (batches concatenated
        in their official order) and int64 ``(N,)``.

    Raises:
        DatasetError: a file is missing, unreadable, or has the wrong content.
        ValueError: unknown ``name`` or ``split``.
    """
    layout = _layout(name)
    if split not in layout.files:
        raise ValueError(f"split must be one of {sorted(layout.files)}, got {split!r}")
    folder = cifar_dir(name, root)
    parts = [_read_batch(name, root, folder / fname) for fname in layout.files[split]]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return images, labels


def cifar_class_names(name: str, root: PathLike) -> list[str]:
    """Class names from the meta file (``label_names`` / ``fine_label_names``), in label order."""
    layout = _layout(name)
    path = cifar_dir(name, root) / layout.meta
    meta = _read_pickle(name, root, path)
    names = meta.get(layout.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != layout.num_classes:
        got = f"{len(names)} entries" if isinstance(names, (list, tuple)) else repr(type(names))
        raise _bad(name, root, path, f"{layout.names_key!r} must list {layout.num_classes} "
                                     f"class names, got {got}")
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except UnicodeDecodeError as err:
        raise _bad(name, root, path, f"undecodable class name ({err})") from err

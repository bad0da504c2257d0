"""USB's labeled/unlabeled split, saved with the run so that it is reused on resume.

:func:`ssl_split` reproduces ``semilearn.datasets.utils.sample_labeled_unlabeled_data`` (0.3.2,
balanced setting) index for index: for each class ``c = 0..K-1`` in turn it shuffles
``np.where(labels == c)[0]`` with ``np.random.shuffle`` and takes the first ``num_labels / K``
as labeled, the rest as unlabeled; ``split_ssl_data`` then prepends the labeled indices to the
unlabeled ones when ``include_lb_to_ulb``. USB's ``train.py`` calls ``np.random.seed(seed)``
just before (nothing draws from numpy's global RNG in between), so the same stream comes from a
local ``np.random.RandomState(seed)`` (the legacy global RNG *is* a RandomState) — without
touching global state and without semilearn's index files in site-packages.

Unlike semilearn, a class with fewer than ``num_labels / K`` samples is an error instead of a
silently smaller labeled set (the reference toolbox's splits were not reproducible at all:
spec §8 defect 5).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from .errors import DatasetError

PathLike = Union[str, "os.PathLike[str]"]

SPLIT_FILENAME = "split.json"
_FORMAT = "dm_ssl.split/1"


def _check_labels(labels: Any, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} of shape "
                         f"{labels.shape}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, num_classes={num_classes}), got "
                         f"[{labels.min()}, {labels.max()}]")
    return labels


def ssl_split(labels: Any, num_labels: int, num_classes: int, seed: int,
              include_lb_to_ulb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """USB's class-balanced labeled/unlabeled split (see the module docstring).

    Args:
        labels: int array (N,) of the training set's labels in ``[0, num_classes)``.
        num_labels: total number of labeled samples; ``num_labels / num_classes`` per class.
        num_classes: number of classes K.
        seed: the run's seed (USB's ``args.seed``).
        include_lb_to_ulb: also put the labeled samples (first) into the unlabeled set.

    Returns:
        ``(lb_idx, ulb_idx)``: int64 indices into ``labels``, in semilearn's order.

    Raises:
        ValueError: ``num_labels`` is not a positive multiple of ``num_classes``, or a class has
            fewer samples than ``num_labels / num_classes``.
    """
    labels = _check_labels(labels, num_classes)
    if int(num_labels) != num_labels or num_labels < 1 or num_labels % num_classes:
        raise ValueError(f"num_labels={num_labels!r} must be a positive multiple of "
                         f"num_classes={num_classes} (USB takes num_labels / num_classes "
                         "labeled samples per class)")
    per_class = int(num_labels) // int(num_classes)
    rng = np.random.RandomState(seed)  # same stream as np.random.seed(seed) + np.random.*
    lb, ulb = [], []
    for c in range(int(num_classes)):
        idx = np.where(labels == c)[0]
        if len(idx) < per_class:
            raise ValueError(f"num_labels={num_labels} asks for {per_class} labeled samples per "
                             f"class but class {c} has only {len(idx)}")
        rng.shuffle(idx)
        lb.append(idx[:per_class])
        ulb.append(idx[per_class:])
    lb_idx = np.concatenate(lb).astype(np.int64)
    ulb_idx = np.concatenate(ulb).astype(np.int64)
    if include_lb_to_ulb:
        ulb_idx = np.concatenate([lb_idx, ulb_idx])
    return lb_idx, ulb_idx


def labels_fingerprint(labels: Any) -> str:
    """sha256 of the labels as little-endian int64: identifies the data a split belongs to."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def split_meta(labels: Any, dataset: str, num_labels: int, num_classes: int, seed: int,
               include_lb_to_ulb: bool = True) -> dict[str, Any]:
    """The metadata a saved split must match to be reused."""
    return {
        "dataset": str(dataset),
        "num_samples": int(len(labels)),
        "num_classes": int(num_classes),
        "num_labels": int(num_labels),
        "seed": int(seed),
        "include_lb_to_ulb": bool(include_lb_to_ulb),
        "labels_sha256": labels_fingerprint(labels),
    }


def _atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory + ``os.replace``: readers (and a run
    killed mid-write) see either the old file or the complete new one, never a partial one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_split(path: PathLike, lb_idx: Any, ulb_idx: Any, meta: Mapping[str, Any]) -> None:
    """Write a split and its metadata as JSON, atomically."""
    path = Path(path)
    doc = {
        "format": _FORMAT,
        "meta": dict(meta),
        "lb_idx": [int(i) for i in np.asarray(lb_idx).ravel()],
        "ulb_idx": [int(i) for i in np.asarray(ulb_idx).ravel()],
    }
    _atomic_write_text(path, json.dumps(doc, separators=(",", ":")) + "\n")


def _index_array(path: Path, doc: Mapping[str, Any], key: str, num_samples: int) -> np.ndarray:
    values = doc.get(key)
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise DatasetError(f"split file {path}: {key!r} must be a list of ints. Delete the file "
                           "(or use another run directory) to draw the split again.", path)
    arr = np.asarray(values, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_samples):
        raise DatasetError(f"split file {path}: {key!r} holds indices outside [0, {num_samples})"
                           ". Delete the file (or use another run directory) to draw the split "
                           "again.", path)
    if len(np.unique(arr)) != len(arr):
        raise DatasetError(f"split file {path}: {key!r} repeats indices. Delete the file (or use "
                           "another run directory) to draw the split again.", path)
    return arr


def load_split(path: PathLike,
               expected_meta: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a split written by :func:`save_split` and check it against ``expected_meta``.

    Every key of ``expected_meta`` must equal the saved value; the indices must lie in
    ``[0, num_samples)`` without repeats and the labeled set must hold ``num_labels`` indices.

    Raises:
        DatasetError: missing/unreadable file, or a split that does not match; the message
            names the file and every differing field.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DatasetError(f"split file {path} does not exist", path) from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"split file {path} is unreadable ({err}). Delete it (or use another "
                           "run directory) to draw the split again.", path) from err
    meta = doc.get("meta") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or not isinstance(meta, dict):
        raise DatasetError(f"split file {path} is not a {_FORMAT} file. Delete it (or use another "
                           "run directory) to draw the split again.", path)
    diffs = [f"{key}: saved {meta.get(key, '<missing>')!r}, now {value!r}"
             for key, value in (expected_meta or {}).items() if meta.get(key) != value]
    if diffs:
        raise DatasetError(f"split file {path} was made for other data or settings ("
                           + "; ".join(diffs) + "). Use another run directory for a new "
                           "experiment, or delete the file to draw the split again.", path)
    num_samples = meta.get("num_samples")
    if type(num_samples) is not int or num_samples < 0:
        raise DatasetError(f"split file {path}: meta 'num_samples' must be an int", path)
    lb_idx = _index_array(path, doc, "lb_idx", num_samples)
    ulb_idx = _index_array(path, doc, "ulb_idx", num_samples)
    if "num_labels" in meta and len(lb_idx) != meta["num_labels"]:
        raise DatasetError(f"split file {path}: {len(lb_idx)} labeled indices but num_labels="
                           f"{meta['num_labels']!r}. Delete the file (or use another run "
                           "directory) to draw the split again.", path)
    return lb_idx, ulb_idx


def get_or_create_split(run_dir: PathLike, labels: Any, dataset: str, num_labels: int,
                        num_classes: int, seed: int, *, include_lb_to_ulb: bool = True,
                        filename: str = SPLIT_FILENAME) -> tuple[np.ndarray, np.ndarray]:
    """The run's split: read from ``run_dir/filename`` if present, else drawn and saved there.

    A saved split is reused as is (not rewritten) when its metadata — dataset, number of
    samples, num_classes, num_labels, seed, include_lb_to_ulb and the labels' sha256 — match
    this call; otherwise a :class:`DatasetError` names the file and the differences.
    """
    path = Path(run_dir) / filename
    meta = split_meta(labels, dataset, num_labels, num_classes, seed, include_lb_to_ulb)
    if path.exists():
        return load_split(path, meta)
    lb_idx, ulb_idx = ssl_split(labels, num_labels, num_classes, seed, include_lb_to_ulb)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_split(path, lb_idx, ulb_idx, meta)
    return lb_idx, ulb_idx


def class_balanced_subset(labels: Any, fraction: float, seed: int) -> np.ndarray:
    """A seeded subset holding ``fraction`` of every class (data-efficient protocol, spec §7).

    Each class present in ``labels`` keeps ``round(fraction · n_c)`` samples, at least 1.

    Returns:
        Sorted int64 indices into ``labels``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} of shape "
                         f"{labels.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    rng = np.random.RandomState(seed)
    keep = []
    for c in np.unique(labels):  # sorted: the draw order, hence the subset, is deterministic
        idx = np.where(labels == c)[0]
        n = max(1, int(np.floor(fraction * len(idx) + 0.5)))
        keep.append(rng.permutation(idx)[:n])
    if not keep:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(keep)).astype(np.int64)

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from dm_ssl.data import (
    DatasetError,
    class_balanced_subset,
    get_or_create_split,
    labels_fingerprint,
    load_split,
    save_split,
    split_meta,
    ssl_split,
)


def _labels(num_classes, per_class, seed=0):
    """Shuffled labels with ``per_class`` samples of each class (like a real training set)."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


@pytest.fixture
def global_rng_restored():
    state = np.random.get_state()
    yield
    np.random.set_state(state)


@pytest.fixture
def semilearn_split(monkeypatch, tmp_path, global_rng_restored):
    """semilearn 0.3.2's real ``split_ssl_data``, as USB's train.py drives it.

    ``sample_labeled_unlabeled_data`` saves index files under ``<base_dir>/data/<dataset>/``,
    ``base_dir`` being site-packages: it is pointed at tmp_path so nothing is written there.
    """
    import semilearn.datasets.utils as sl_utils

    monkeypatch.setattr(sl_utils, "base_dir", str(tmp_path))

    def run(labels, num_labels, num_classes, seed, include_lb_to_ulb):
        args = SimpleNamespace(dataset="cifar10", num_labels=num_labels, lb_imb_ratio=1,
                               ulb_imb_ratio=1, seed=seed)
        np.random.seed(seed)  # USB's train.py main_worker, before building the algorithm
        positions = np.arange(len(labels))  # as "data": the returned data are the indices
        lb, lb_y, ulb, ulb_y = sl_utils.split_ssl_data(
            args, positions, labels, num_classes, lb_num_labels=num_labels,
            include_lb_to_ulb=include_lb_to_ulb)
        assert list((tmp_path / "data" / "cifar10" / "labeled_idx").iterdir())  # redirected
        return lb, ulb

    return run


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("num_classes, per_class, num_labels", [
    (10, 5000, 40),     # CIFAR-10's training set
    (10, 5000, 4000),
    (100, 50, 400),     # CIFAR-100 shaped, fewer samples
    (7, 13, 84),        # 12 of 13 labeled per class
])
def test_identical_to_semilearn(semilearn_split, include, num_classes, per_class, num_labels):
    labels = _labels(num_classes, per_class)
    for seed in (0, 1, 2, 12345):
        lb, ulb = ssl_split(labels, num_labels, num_classes, seed, include_lb_to_ulb=include)
        ref_lb, ref_ulb = semilearn_split(labels, num_labels, num_classes, seed, include)
        np.testing.assert_array_equal(lb, ref_lb)
        np.testing.assert_array_equal(ulb, ref_ulb)
        assert lb.dtype == ulb.dtype == np.int64


def test_identical_to_semilearn_on_unsorted_unbalanced_labels(semilearn_split):
    labels = np.random.default_rng(5).integers(0, 10, size=3000)
    for seed in (0, 7):
        for include in (True, False):
            ours = ssl_split(labels, 250 - 250 % 10, 10, seed, include_lb_to_ulb=include)
            ref = semilearn_split(labels, 250 - 250 % 10, 10, seed, include)
            for a, b in zip(ours, ref):
                np.testing.assert_array_equal(a, b)


def test_identical_to_semilearn_when_a_class_is_fully_labeled(semilearn_split):
    labels = np.random.default_rng(1).permutation(np.r_[np.repeat(np.arange(10), 20), [3] * 4])
    labels = labels[(labels != 3) | (np.cumsum(labels == 3) <= 4)]  # class 3: exactly 4
    assert np.bincount(labels)[3] == 4
    for include in (True, False):
        ours = ssl_split(labels, 40, 10, 0, include_lb_to_ulb=include)
        ref = semilearn_split(labels, 40, 10, 0, include)
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b)


def test_everything_labeled_gives_empty_unlabeled_set():
    # (semilearn 0.3.2 crashes here: its empty index list becomes a float array)
    lb, ulb = ssl_split(_labels(7, 13), 91, 7, seed=0, include_lb_to_ulb=False)
    assert len(lb) == 91 and ulb.dtype == np.int64 and len(ulb) == 0


def test_leaves_global_rng_alone(global_rng_restored):
    np.random.seed(3)
    before = np.random.get_state()[1].copy()
    ssl_split(_labels(10, 50), 40, 10, seed=0)
    assert np.array_equal(np.random.get_state()[1], before)


def test_sizes_and_balance():
    labels = _labels(10, 50)
    lb, ulb = ssl_split(labels, 40, 10, seed=0, include_lb_to_ulb=False)
    assert len(lb) == 40 and len(ulb) == 460
    assert np.bincount(labels[lb], minlength=10).tolist() == [4] * 10
    assert not set(lb) & set(ulb) and len(set(lb) | set(ulb)) == 500
    lb2, ulb2 = ssl_split(labels, 40, 10, seed=0, include_lb_to_ulb=True)
    np.testing.assert_array_equal(lb, lb2)
    assert len(ulb2) == 500 and np.array_equal(ulb2[:40], lb) and np.array_equal(ulb2[40:], ulb)


def test_seeds_differ_and_repeat():
    labels = _labels(10, 50)
    a = ssl_split(labels, 40, 10, seed=0)[0]
    assert np.array_equal(a, ssl_split(labels, 40, 10, seed=0)[0])
    assert not np.array_equal(a, ssl_split(labels, 40, 10, seed=1)[0])


@pytest.mark.parametrize("num_labels, match", [
    (45, "num_labels=45 must be a positive multiple of num_classes=10"),
    (0, "num_labels=0"),
    (510, "class 0 has only 50"),
])
def test_bad_num_labels(num_labels, match):
    with pytest.raises(ValueError, match=match):
        ssl_split(_labels(10, 50), num_labels, 10, seed=0)


def test_bad_labels():
    with pytest.raises(ValueError, match="num_classes=10"):
        ssl_split(np.array([0, 1, 10]), 10, 10, seed=0)
    with pytest.raises(ValueError, match="1-D integer"):
        ssl_split(np.zeros(10), 10, 10, seed=0)


# ---------------------------------------------------------------------------- saving / reuse

def _create(run_dir, labels, **kw):
    args = {"dataset": "cifar10", "num_labels": 40, "num_classes": 10, "seed": 0, **kw}
    return get_or_create_split(run_dir, labels, args.pop("dataset"), **args)


def test_created_then_reused_without_rewrite(tmp_path, monkeypatch):
    labels = _labels(10, 50)
    run = tmp_path / "run"
    lb, ulb = _create(run, labels)
    path = run / "split.json"
    assert sorted(os.listdir(run)) == ["split.json"]  # no temporary file left
    np.testing.assert_array_equal(lb, ssl_split(labels, 40, 10, 0)[0])
    doc = json.loads(path.read_text())
    assert doc["meta"] == {"dataset": "cifar10", "num_samples": 500, "num_classes": 10,
                           "num_labels": 40, "seed": 0, "include_lb_to_ulb": True,
                           "labels_sha256": labels_fingerprint(labels)}
    stamp = path.stat().st_mtime_ns

    def no_write(*a, **k):
        raise AssertionError("the saved split must be reused, not rewritten")

    monkeypatch.setattr("dm_ssl.data.split.save_split", no_write)
    monkeypatch.setattr("dm_ssl.data.split.ssl_split", no_write)
    lb2, ulb2 = _create(run, labels)
    np.testing.assert_array_equal(lb, lb2)
    np.testing.assert_array_equal(ulb, ulb2)
    assert path.stat().st_mtime_ns == stamp


def test_reused_split_wins_over_a_redraw(tmp_path):
    # The saved indices are what counts, even if they are not what ssl_split would draw.
    labels = _labels(10, 50)
    lb = np.sort(np.concatenate([np.where(labels == c)[0][:4] for c in range(10)]))
    assert not np.array_equal(lb, ssl_split(labels, 40, 10, 0)[0])
    save_split(tmp_path / "split.json", lb, np.arange(500), split_meta(labels, "cifar10", 40,
                                                                        10, 0))
    got, _ = get_or_create_split(tmp_path, labels, "cifar10", 40, 10, 0)
    np.testing.assert_array_equal(got, lb)


@pytest.mark.parametrize("change, field", [
    ({"labels": "changed"}, "labels_sha256"),
    ({"labels": "fewer"}, "num_samples"),
    ({"num_labels": 100}, "num_labels"),
    ({"seed": 1}, "seed"),
    ({"dataset": "cifar100", "num_classes": 100, "num_labels": 100}, "dataset"),
    ({"include_lb_to_ulb": False}, "include_lb_to_ulb"),
])
def test_refused_on_mismatch(tmp_path, change, field):
    labels = _labels(10, 50)
    _create(tmp_path, labels)
    before = (tmp_path / "split.json").read_bytes()
    change = dict(change)
    if change.pop("labels", None) == "changed":
        labels = labels.copy()
        labels[[0, 1]] = labels[[1, 0]] if labels[0] != labels[1] else (labels[[0, 1]] + 1) % 10
    elif field == "num_samples":
        labels = labels[:-10]
    with pytest.raises(DatasetError, match=field) as info:
        _create(tmp_path, labels, **change)
    assert str(tmp_path / "split.json") in str(info.value)
    assert (tmp_path / "split.json").read_bytes() == before  # left as it was


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["lb_idx"].__setitem__(0, 500), "outside"),
    (lambda d: d["ulb_idx"].__setitem__(0, -1), "outside"),
    (lambda d: d["lb_idx"].__setitem__(1, d["lb_idx"][0]), "repeats"),
    (lambda d: d["lb_idx"].pop(), "39 labeled indices"),
    (lambda d: d["lb_idx"].__setitem__(0, 1.5), "list of ints"),
    (lambda d: d.__setitem__("format", "other"), "not a"),
    (lambda d: d["meta"].pop("seed"), "seed: saved '<missing>'"),
])
def test_refused_when_file_content_is_bad(tmp_path, edit, match):
    labels = _labels(10, 50)
    _create(tmp_path, labels)
    path = tmp_path / "split.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=match) as info:
        _create(tmp_path, labels)
    assert str(path) in str(info.value)


def test_refused_when_file_is_not_json(tmp_path):
    (tmp_path / "split.json").write_text('{"format": "dm_ssl.spl')
    with pytest.raises(DatasetError, match="unreadable") as info:
        _create(tmp_path, _labels(10, 50))
    assert str(tmp_path / "split.json") in str(info.value)


def test_load_split_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_split(tmp_path / "split.json")


def test_save_load_roundtrip_and_custom_filename(tmp_path):
    labels = _labels(10, 50)
    lb, ulb = get_or_create_split(tmp_path, labels, "cifar10", 40, 10, 5, filename="s5.json",
                                  include_lb_to_ulb=False)
    assert (tmp_path / "s5.json").is_file()
    lb2, ulb2 = load_split(tmp_path / "s5.json", split_meta(labels, "cifar10", 40, 10, 5, False))
    np.testing.assert_array_equal(lb, lb2)
    np.testing.assert_array_equal(ulb, ulb2)


def test_failed_write_leaves_no_tmp_and_no_file(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _create(tmp_path, _labels(10, 50))
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ class-balanced subsets

@pytest.mark.parametrize("fraction, per_class", [(0.15, 75), (0.3, 150), (0.5, 250), (1.0, 500)])
def test_class_balanced_subset_sizes(fraction, per_class):
    labels = _labels(100, 500)
    idx = class_balanced_subset(labels, fraction, seed=0)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)  # sorted, unique
    assert np.bincount(labels[idx], minlength=100).tolist() == [per_class] * 100


def test_class_balanced_subset_keeps_one_of_tiny_classes():
    labels = np.array([0] * 100 + [1] * 3 + [2])
    counts = np.bincount(labels[class_balanced_subset(labels, 0.1, seed=0)])
    assert counts.tolist() == [10, 1, 1]


def test_class_balanced_subset_seeded():
    labels = _labels(10, 100)
    a = class_balanced_subset(labels, 0.3, seed=0)
    assert np.array_equal(a, class_balanced_subset(labels, 0.3, seed=0))
    assert not np.array_equal(a, class_balanced_subset(labels, 0.3, seed=1))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_class_balanced_subset_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        class_balanced_subset(_labels(10, 10), fraction, seed=0)

import pickle

import numpy as np
import pytest

from dm_ssl.data import CIFAR_URLS, DatasetError, cifar_class_names, cifar_dir, load_cifar

from .cifar_files import dump, to_rows, write_cifar10


def _check(images, labels, exp_images, exp_labels):
    assert images.dtype == np.uint8 and images.shape == exp_images.shape
    assert images.flags.c_contiguous
    assert labels.dtype == np.int64 and labels.shape == (len(exp_images),)
    np.testing.assert_array_equal(images, exp_images)
    np.testing.assert_array_equal(labels, exp_labels)


def test_cifar10_reads_back_exactly(cifar10):
    root, exp = cifar10
    _check(*load_cifar("cifar10", root, "train"), exp["train_images"], exp["train_labels"])
    _check(*load_cifar("cifar10", root, "test"), exp["test_images"], exp["test_labels"])
    assert cifar_class_names("cifar10", root) == exp["names"]


def test_cifar100_reads_fine_labels(cifar100):
    root, exp = cifar100
    _check(*load_cifar("cifar100", root, "train"), exp["train_images"], exp["train_labels"])
    _check(*load_cifar("cifar100", root, "test"), exp["test_images"], exp["test_labels"])
    assert cifar_class_names("cifar100", root) == exp["names"]


def test_pixel_layout_is_rgb_planes_row_major(tmp_path):
    # Independent of the fixture's own conversion: build one row by hand.
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(tmp_path, per_batch=1, n_test=1)
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 0 * 1024 + 2 * 32 + 5] = 11   # R at (y=2, x=5)
    row[0, 1 * 1024 + 31 * 32 + 0] = 22  # G at (y=31, x=0)
    row[0, 2 * 1024 + 0 * 32 + 31] = 33  # B at (y=0, x=31)
    dump({"labels": [7], "data": row}, folder / "test_batch", "py2")
    images, labels = load_cifar("cifar10", tmp_path, "test")
    assert images[0, 2, 5, 0] == 11 and images[0, 31, 0, 1] == 22 and images[0, 0, 31, 2] == 33
    assert images.sum() == 66 and labels.tolist() == [7]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_root_may_be_the_extracted_folder(cifar10, cifar100, name):
    root, exp = cifar10 if name == "cifar10" else cifar100
    folder = exp["folder"]
    assert cifar_dir(name, root) == folder and cifar_dir(name, folder) == folder
    _check(*load_cifar(name, folder, "test"), exp["test_images"], exp["test_labels"])


def _assert_helpful(err: DatasetError, path, name="cifar10"):
    msg = str(err)
    assert str(path) in msg
    assert CIFAR_URLS[name] in msg and "extract" in msg
    assert err.path == str(path)
    assert isinstance(err, ValueError)


def test_missing_root_names_the_expected_file(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_cifar("cifar100", tmp_path / "nowhere", "train")
    _assert_helpful(info.value, tmp_path / "nowhere" / "cifar-100-python" / "train", "cifar100")


def test_an_archive_not_extracted_is_named(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DatasetError, match=r"archive .*cifar-10-python.tar.gz is there but not "
                                           r"extracted: run `tar xzf"):
        load_cifar("cifar10", tmp_path, "train")


def test_missing_batch_file(cifar10):
    root, exp = cifar10
    (exp["folder"] / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="missing file") as info:
        load_cifar("cifar10", root, "train")
    _assert_helpful(info.value, exp["folder"] / "data_batch_3")
    load_cifar("cifar10", root, "test")  # the other split is unaffected


def test_missing_meta_file(cifar10):
    root, exp = cifar10
    (exp["folder"] / "batches.meta").unlink()
    with pytest.raises(DatasetError) as info:
        cifar_class_names("cifar10", root)
    _assert_helpful(info.value, exp["folder"] / "batches.meta")


@pytest.mark.parametrize("cut", [0, 1, 100, -1])
def test_truncated_pickle(cifar10, cut):
    root, exp = cifar10
    path = exp["folder"] / "test_batch"
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:-1])
    with pytest.raises(DatasetError, match="cannot read") as info:
        load_cifar("cifar10", root, "test")
    _assert_helpful(info.value, path)


def test_garbage_file(cifar10):
    root, exp = cifar10
    path = exp["folder"] / "data_batch_1"
    path.write_text("this is not a pickle\n")
    with pytest.raises(DatasetError) as info:
        load_cifar("cifar10", root, "train")
    _assert_helpful(info.value, path)


class _Boom:
    def __reduce__(self):
        return (eval, ("1/0",))


def test_foreign_objects_are_refused_not_built(cifar10):
    root, exp = cifar10
    path = exp["folder"] / "test_batch"
    with path.open("wb") as f:
        pickle.dump({b"data": _Boom(), b"labels": []}, f, protocol=2)
    with pytest.raises(DatasetError, match="refusing") as info:  # not ZeroDivisionError
        load_cifar("cifar10", root, "test")
    _assert_helpful(info.value, path)


GOOD_X = to_rows(np.zeros((3, 32, 32, 3), dtype=np.uint8))


@pytest.mark.parametrize("content, problem", [
    ({"labels": [0, 1, 2]}, "missing key 'data'"),
    ({"data": GOOD_X}, "missing key 'labels'"),
    ({"data": GOOD_X[:, :3000], "labels": [0, 1, 2]}, "shape"),
    ({"data": GOOD_X.reshape(3, 3, 1024), "labels": [0, 1, 2]}, "shape"),
    ({"data": GOOD_X.astype(np.float32), "labels": [0, 1, 2]}, "uint8"),
    ({"data": GOOD_X.tolist(), "labels": [0, 1, 2]}, "uint8"),
    ({"data": GOOD_X, "labels": [0, 1]}, "3 images but 2 labels"),
    ({"data": GOOD_X, "labels": [0, 1, 10]}, r"\[0, 10\)"),
    ({"data": GOOD_X, "labels": [0, -1, 2]}, r"\[0, 10\)"),
    ({"data": GOOD_X, "labels": ["a", "b", "c"]}, "list of ints"),
    ({"data": GOOD_X, "labels": [[0], [1], [2]]}, "list of ints"),
])
def test_wrong_content(cifar10, content, problem):
    root, exp = cifar10
    path = exp["folder"] / "test_batch"
    dump(content, path, "py3")
    with pytest.raises(DatasetError, match=problem) as info:
        load_cifar("cifar10", root, "test")
    _assert_helpful(info.value, path)


def test_not_a_dict(cifar10):
    root, exp = cifar10
    path = exp["folder"] / "test_batch"
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(DatasetError, match="not the dict") as info:
        load_cifar("cifar10", root, "test")
    _assert_helpful(info.value, path)


def test_cifar100_labels_range_is_100(cifar100):
    root, exp = cifar100
    path = exp["folder"] / "test"
    dump({"data": GOOD_X, "fine_labels": [0, 99, 100]}, path, "py3")
    with pytest.raises(DatasetError, match=r"\[0, 100\)") as info:
        load_cifar("cifar100", root, "test")
    _assert_helpful(info.value, path, "cifar100")


def test_meta_with_wrong_number_of_names(cifar100):
    root, exp = cifar100
    path = exp["folder"] / "meta"
    dump({"fine_label_names": ["a"] * 20}, path, "py2")
    with pytest.raises(DatasetError, match="100 class names") as info:
        cifar_class_names("cifar100", root)
    _assert_helpful(info.value, path, "cifar100")


def test_bad_arguments(cifar10):
    root, _ = cifar10
    with pytest.raises(ValueError, match="split"):
        load_cifar("cifar10", root, "val")
    with pytest.raises(ValueError, match="cifar10"):
        load_cifar("cifar1000", root, "train")

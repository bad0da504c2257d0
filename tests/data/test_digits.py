import numpy as np
import pytest
from sklearn.datasets import load_digits

from dm_ssl.data import DIGITS_MEAN, DIGITS_STD, digits_class_names, load_digits_split


def test_split_is_stratified_disjoint_and_complete():
    x_tr, y_tr = load_digits_split("train")
    x_te, y_te = load_digits_split("test")
    assert x_tr.dtype == np.uint8 and x_tr.shape == (len(y_tr), 8, 8, 1)
    assert y_tr.dtype == np.int64 and x_te.shape == (len(y_te), 8, 8, 1)
    assert len(y_tr) + len(y_te) == 1797 and len(y_te) == 599  # ceil(1797 / 3)
    counts_all = np.bincount(load_digits().target, minlength=10)
    counts_te = np.bincount(y_te, minlength=10)
    assert np.all(np.abs(counts_te - counts_all / 3) <= 1)  # stratified
    # disjoint and complete: the multiset of (image, label) rows is the whole dataset
    both = np.concatenate([x_tr.reshape(len(y_tr), -1), x_te.reshape(len(y_te), -1)])
    ref = np.rint(load_digits().images).reshape(1797, -1)
    assert sorted(map(bytes, both)) == sorted(map(bytes, ((ref * 255 + 8) // 16).astype(
        np.uint8)))


def test_rescale_0_16_to_0_255():
    x, _ = load_digits_split("train")
    assert x.min() == 0 and x.max() == 255
    assert set(np.unique(x)) <= {(v * 255 + 8) // 16 for v in range(17)}


def test_seeded():
    a = load_digits_split("test", split_seed=3)
    b = load_digits_split("test", split_seed=3)
    c = load_digits_split("test", split_seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_test_size():
    _, y = load_digits_split("test", test_size=0.5)
    assert abs(len(y) - 1797 / 2) <= 1


def test_nearest_upsampling_replicates_pixels_and_channels():
    small, y = load_digits_split("train")
    big, y_big = load_digits_split("train", size=32, channels=3)
    assert big.shape == (len(y), 32, 32, 3) and big.dtype == np.uint8
    np.testing.assert_array_equal(y, y_big)
    blocks = np.kron(small[..., 0], np.ones((4, 4), dtype=np.uint8))
    for c in range(3):
        np.testing.assert_array_equal(big[..., c], blocks)


def test_bilinear_upsampling_is_smooth():
    near, _ = load_digits_split("train", size=16)
    bil, _ = load_digits_split("train", size=16, interpolation="bilinear")
    assert bil.shape == near.shape == (1198, 16, 16, 1)
    assert not np.array_equal(near, bil)
    # bilinear produces values between the 17 grey levels
    assert len(np.unique(bil)) > len(np.unique(near))


def test_stated_statistics_match_the_data():
    x = np.concatenate([load_digits_split(s)[0] for s in ("train", "test")]) / 255.0
    assert x.mean() == pytest.approx(DIGITS_MEAN, abs=1e-4)
    assert x.std() == pytest.approx(DIGITS_STD, abs=1e-4)


def test_class_names():
    assert digits_class_names() == [str(d) for d in range(10)]


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "val"}, "split"),
    ({"channels": 2}, "channels"),
    ({"test_size": 0.0}, "test_size"),
    ({"size": 0}, "size"),
    ({"interpolation": "cubic"}, "interpolation"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_digits_split(**kwargs)

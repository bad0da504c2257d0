"""scripts/make_colour_digits.py writes a set the CIFAR-10 reader reads like the official one."""

import importlib.util
from pathlib import Path

import numpy as np

from dm_ssl.data.cifar import cifar_class_names, load_cifar

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_colour_digits.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_colour_digits", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_colour_digits_in_the_cifar10_layout(tmp_path):
    mod = _module()
    sets = mod.make_colour_digits(n_train=60, n_test=25, seed=3)
    mod.write_cifar10_layout(tmp_path, *sets)
    x, y = load_cifar("cifar10", tmp_path, "train")
    xt, yt = load_cifar("cifar10", tmp_path, "test")
    assert x.shape == (60, 32, 32, 3) and xt.shape == (25, 32, 32, 3)
    assert np.array_equal(x, sets[0]) and np.array_equal(y, sets[1])
    assert np.array_equal(xt, sets[2]) and np.array_equal(yt, sets[3])
    assert np.bincount(y, minlength=10).tolist() == [6] * 10          # class-balanced
    assert cifar_class_names("cifar10", tmp_path) == [str(d) for d in range(10)]
    # colour, not grey: the channels differ; seeded: the same seed gives the same images
    assert np.abs(x[..., 0].astype(int) - x[..., 1]).mean() > 10
    assert np.array_equal(mod.make_colour_digits(60, 25, seed=3)[0], sets[0])
    assert not np.array_equal(mod.make_colour_digits(60, 25, seed=4)[0], sets[0])


def test_plain_style_is_a_bright_digit_on_one_dark_colour():
    import pytest

    mod = _module()
    x, y, _, _ = mod.make_colour_digits(n_train=20, n_test=10, seed=0, style="plain")
    corners = np.stack([x[:, 0, 0], x[:, 0, -1], x[:, -1, 0], x[:, -1, -1]], 1).astype(float)
    # one background colour per image (pixel noise only), dark; the brightest pixels are bright
    assert np.abs(corners - corners.mean(1, keepdims=True)).max() < 30
    assert corners.mean() < 120 and (x.reshape(20, -1, 3).max(1) > 140).all()
    hard = mod.make_colour_digits(n_train=20, n_test=10, seed=0, style="hard")[0]
    assert not np.array_equal(hard, x)
    with pytest.raises(ValueError, match="style"):
        mod.make_colour_digits(n_train=20, n_test=10, style="noisy")

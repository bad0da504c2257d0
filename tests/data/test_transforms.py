import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dm_ssl.data import (
    MEAN,
    STD,
    ModeSafeRandAugment,
    eval_transform,
    strong_transform,
    weak_transform,
)


def _types(compose):
    return [type(t) for t in compose.transforms]


def test_statistics_are_semilearns():
    from semilearn.datasets.cv_datasets import cifar as sl_cifar

    for name in ("cifar10", "cifar100"):
        assert list(MEAN[name]) == sl_cifar.mean[name]
        assert list(STD[name]) == sl_cifar.std[name]


def test_weak_is_usb_crop_and_flip():
    t = weak_transform(32, MEAN["cifar10"], STD["cifar10"])
    assert _types(t) == [T.Resize, T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor,
                         T.Normalize]
    crop = t.transforms[1]
    assert crop.size == (32, 32) and crop.padding == 4 and crop.padding_mode == "reflect"
    t = weak_transform(8, (0.5,), (0.25,), hflip=False)
    assert T.RandomHorizontalFlip not in _types(t) and t.transforms[1].padding == 1


def test_strong_adds_semilearn_randaugment():
    from semilearn.datasets.augmentation.randaugment import RandAugment

    t = strong_transform(32, MEAN["cifar100"], STD["cifar100"])
    assert _types(t) == [T.Resize, T.RandomCrop, T.RandomHorizontalFlip, ModeSafeRandAugment,
                         T.ToTensor, T.Normalize]
    ra = t.transforms[3].op
    assert isinstance(ra, RandAugment) and (ra.n, ra.m) == (3, 5)
    assert T.RandomHorizontalFlip not in _types(strong_transform(8, (0.5,), (0.2,), hflip=False))


def test_eval_is_normalised_tensor():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = eval_transform(32, MEAN["cifar10"], STD["cifar10"])(Image.fromarray(img))
    ref = (torch.from_numpy(img).permute(2, 0, 1).float() / 255
           - torch.tensor(MEAN["cifar10"])[:, None, None]) / torch.tensor(STD["cifar10"])[:, None,
                                                                                      None]
    assert out.dtype == torch.float32 and out.shape == (3, 32, 32)
    torch.testing.assert_close(out, ref)


@pytest.mark.usefixtures("global_rngs_restored")
@pytest.mark.parametrize("make", [weak_transform, strong_transform])
def test_outputs_on_rgb_and_grey(make):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    grey = Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8), np.uint8))
    assert make(32, MEAN["cifar10"], STD["cifar10"])(rgb).shape == (3, 32, 32)
    for seed in range(20):  # many draws: every op, and Cutout, on a grey image
        random.seed(seed)
        assert make(8, (0.3,), (0.4,), hflip=False)(grey).shape == (1, 8, 8)


@pytest.fixture
def global_rngs_restored():
    states = random.getstate(), np.random.get_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])


@pytest.mark.usefixtures("global_rngs_restored")
def test_mode_safe_randaugment_is_semilearns_on_rgb_and_works_on_grey():
    from semilearn.datasets.augmentation.randaugment import Cutout

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    ours = ModeSafeRandAugment(3, 5)
    random.seed(0)
    np.random.seed(0)
    a = np.asarray(ours(rgb))
    random.seed(0)
    np.random.seed(0)
    b = np.asarray(ours.op(rgb))
    np.testing.assert_array_equal(a, b)
    grey = rgb.convert("L")
    with pytest.raises(TypeError):  # why the wrapper exists
        Cutout(grey, 0.3)
    out = ours(grey)
    assert out.mode == "L" and out.size == (32, 32)


def test_bad_crop_ratio():
    with pytest.raises(ValueError, match="crop_ratio"):
        weak_transform(32, MEAN["cifar10"], STD["cifar10"], crop_ratio=0.0)

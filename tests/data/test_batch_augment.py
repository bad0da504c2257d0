"""The batched per-sample augmentation against USB's PIL transforms, image by image."""

import types
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from dm_ssl.data import batch_augment as ba
from dm_ssl.data.op_log import OpLog

try:  # USB's own ops, for the equality tests; the others (CUDA ones too) run without them
    with warnings.catch_warnings():   # semilearn's imports warn about timm's / aim's own
        warnings.simplefilter("ignore")
        from semilearn.datasets.augmentation import randaugment as ra
except Exception:  # noqa: BLE001 - not installed, or semilearn's own imports fail
    ra = None
needs_usb = pytest.mark.skipif(ra is None, reason="needs semilearn (USB's PIL ops)")
PIL_OPS = {name: getattr(ra, name) for name in ba.OPS} if ra is not None else {}


def _images(n: int = 24, size: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Noise, smooth ramps and flat images (the flat ones hit AutoContrast's / Equalize's
    special cases), (n, H, W, C) uint8."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n // 3, size, size, channels), dtype=np.uint8)
    steps = rng.integers(-9, 10, (n // 3, size, size, channels))
    smooth = (np.cumsum(steps, axis=2) % 256).astype(np.uint8)
    flat = np.repeat(rng.integers(0, 256, (n - 2 * (n // 3), 1, 1, channels),
                                  dtype=np.uint8), size, 1).repeat(size, 2)
    flat[::2, 3:9, 5:20] = 17  # two levels only
    return np.concatenate([noise, smooth, flat])


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)


def _array(img: Image.Image) -> np.ndarray:
    a = np.asarray(img)
    return a[..., None] if a.ndim == 2 else a


def _batch(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)


def _magnitudes(name: str, n: int, seed: int = 1) -> np.ndarray:
    lo, hi = ba.OPS[name]
    v = lo + (hi - lo) * np.random.default_rng(seed).random(n)
    v[:2] = lo, hi - 1e-9                     # the ends of the range
    if name == "Rotate":
        v[2] = 0.0                            # PIL returns a copy at 0 degrees
    return v


@needs_usb
@pytest.mark.parametrize("name", list(ba.OPS))
def test_each_op_equals_usbs_pil_op_on_every_image(name):
    imgs = _images()
    v = _magnitudes(name, len(imgs))
    ref = np.stack([_array(PIL_OPS[name](_pil(im), float(m))) for im, m in zip(imgs, v)])
    out = ba.apply_op(ba.to_levels(_batch(imgs)), name, torch.tensor(v))
    np.testing.assert_array_equal(_numpy(out), ref)


@needs_usb
@pytest.mark.parametrize("name", list(ba.OPS))
def test_grey_images_match_usbs_rgb_round_trip(name):
    """1-channel images: what ModeSafeRandAugment does (L -> RGB -> op -> L)."""
    imgs = _images(12, 16, channels=1, seed=3)
    v = _magnitudes(name, len(imgs), seed=4)
    ref = np.stack([_array(PIL_OPS[name](_pil(im).convert("RGB"), float(m)).convert("L"))
                    for im, m in zip(imgs, v)])
    out = ba.apply_op(ba.to_levels(_batch(imgs)), name, torch.tensor(v))
    np.testing.assert_array_equal(_numpy(out), ref)


@needs_usb
@pytest.mark.parametrize("channels", [3, 1])
def test_cutout_equals_usbs_cutout(monkeypatch, channels):
    imgs = _images(12, 32, channels=channels, seed=5)
    rng = np.random.default_rng(6)
    v = rng.random(len(imgs)) * 0.5
    v[0] = 0.0                                       # USB draws nothing for v = 0
    v[1] = 0.4999
    cx = 32 + (1 - 32) * rng.random(len(imgs))       # what np.random.uniform(32) returns
    cy = 32 + (1 - 32) * rng.random(len(imgs))
    cx[2], cy[2] = 32.0, 1.0                         # the ends of U(1, 32]
    ref = []
    for im, m, x0, y0 in zip(imgs, v, cx, cy):
        centres = iter([x0, y0])
        monkeypatch.setattr(np.random, "uniform", lambda *a, c=centres, **k: next(c))
        pil = _pil(im) if channels == 3 else _pil(im).convert("RGB")
        out = ra.Cutout(pil, float(m))
        ref.append(_array(out if channels == 3 else out.convert("L")))
    monkeypatch.undo()
    boxes = ba.cutout_boxes(torch.tensor(v), torch.tensor(cx), torch.tensor(cy), 32, 32)
    out = ba.cutout(ba.to_levels(_batch(imgs)), boxes)
    np.testing.assert_array_equal(_numpy(out), np.stack(ref))


@needs_usb
@pytest.mark.parametrize("sync_free", [False, True], ids=["rows", "sync_free"])
@pytest.mark.parametrize("channels", [3, 1])
def test_rand_augment_equals_usbs_with_the_same_draws(monkeypatch, channels, sync_free):
    """The whole RandAugment(3, 5) + Cutout, image by image, USB's code fed our draws."""
    imgs = _images(30, 32, channels=channels, seed=7)
    draws = ba.draw_rand_augment(len(imgs), 32, 32, 3, generator=torch.Generator().manual_seed(8))
    aug = ra.RandAugment(3, 5)
    names = [op.__name__ for op, _, _ in aug.augment_list]
    assert names == list(ba.OPS)                     # the same list, in the same order
    ref = []
    for i, im in enumerate(imgs):
        us = iter(draws.u[i].tolist() + [float(draws.cutout[i]) / 0.5])
        centres = iter([float(draws.cx[i]), float(draws.cy[i])])
        fake = types.SimpleNamespace(
            choices=lambda seq, k, i=i: [seq[j] for j in draws.ops[i].tolist()],
            random=lambda us=us: next(us))
        monkeypatch.setattr(ra, "random", fake)
        monkeypatch.setattr(np.random, "uniform", lambda *a, c=centres, **k: next(c))
        pil = _pil(im) if channels == 3 else _pil(im).convert("RGB")
        out = aug(pil)
        ref.append(_array(out if channels == 3 else out.convert("L")))
    monkeypatch.undo()
    out = ba.apply_rand_augment(ba.to_levels(_batch(imgs)), draws, sync_free=sync_free)
    np.testing.assert_array_equal(_numpy(out), np.stack(ref))


def test_the_sync_free_path_equals_the_rows_path_and_reads_nothing_on_the_host():
    """The accelerator path gives the rows path's images, op list subsets included, and runs
    no op that reads device data on the host or copies host data in (checked on the CPU by
    the ops' names, so it holds without a GPU); the rows path does (``nonzero``)."""
    imgs = _batch(_images(60, 32))
    for ops in (tuple(ba.OPS), ("Equalize", "ShearY", "Color"), ("Solarize",), ("Rotate",)):
        draws = ba.draw_rand_augment(60, 32, 32, 4, generator=torch.Generator().manual_seed(9),
                                     num_ops=len(ops))
        levels = ba.to_levels(imgs)
        rows = ba.apply_rand_augment(levels, draws, ops, sync_free=False)
        free = ba.apply_rand_augment(levels, draws, ops, sync_free=True)
        assert torch.equal(rows, free), ops
    for aug in (ba.BatchAugment(strong=True, mean=(0.5,) * 3, std=(0.2,) * 3, sync_free=True),
                ba.BatchAugment(strong=False, mean=(0.5,) * 3, std=(0.2,) * 3)):
        aug(imgs, torch.Generator().manual_seed(0))           # the per-device constants, once
        with OpLog() as log:
            aug(imgs, torch.Generator().manual_seed(0))
        assert log.kernels > 10 and log.host_syncs == [], (aug, log.host_syncs)
    with OpLog() as log:
        ba.BatchAugment(strong=True, sync_free=False)(imgs, torch.Generator().manual_seed(0))
    assert "aten.nonzero" in log.host_syncs
    with pytest.raises(ValueError, match="distinct names"):
        ba.apply_rand_augment(ba.to_levels(imgs), draws, ("Rotate", "Rotate"))


def test_op_log_names_what_would_sync():
    x = torch.arange(12.0).reshape(3, 4)
    with OpLog() as log:
        x.view(12).sum()
        x[x > 3]                                  # a boolean mask: nonzero on CUDA
        x.nonzero()
        float(x.max())
        torch.tensor([1.0, 2.0])                  # host data in
        x[torch.tensor([0, 2])]                   # a long index: no sync
    assert log.host_syncs == ["aten.index", "aten.nonzero", "aten._local_scalar_dense",
                              "aten.lift_fresh", "aten.lift_fresh"]
    assert "aten.view" in log.ops and log.kernels == len(log.ops) - 1


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_crop_and_flip_equal_torchvisions(mode):
    """reflect: USB's SSL views; constant: the supervised recipe's RandomCrop(32, padding=4),
    whose fill is 0."""
    imgs = _images(9, 32)
    top, left = torch.tensor([0, 8, 3, 4, 8, 0, 1, 7, 2]), torch.tensor([8, 0, 4, 4, 8, 0, 6, 2, 5])
    out = ba.crop(ba.to_levels(_batch(imgs)), 4, top, left, mode)
    ref = [_array(TF.crop(TF.pad(_pil(im), 4, padding_mode=mode), int(i), int(j), 32, 32))
           for im, i, j in zip(imgs, top, left)]
    np.testing.assert_array_equal(_numpy(out), np.stack(ref))
    if mode == "constant":   # the corner crop starts with black padding
        assert (_numpy(out)[0, :4] == 0).all() and (_numpy(out)[0, 4:] != 0).any()
    flipped = [_array(TF.hflip(_pil(im))) for im in imgs]
    np.testing.assert_array_equal(_numpy(ba.to_levels(_batch(imgs)).flip(-1)), np.stack(flipped))


def test_every_sample_gets_its_own_draw_and_a_seed_repeats_them():
    one = _images(3, 32)[1:2]
    batch = _batch(np.repeat(one, 64, 0))
    strong = ba.BatchAugment(strong=True, pad=4)
    a = strong(batch, torch.Generator().manual_seed(0))
    b = strong(batch, torch.Generator().manual_seed(0))
    c = strong(batch, torch.Generator().manual_seed(1))
    assert a.dtype == torch.uint8 and a.shape == batch.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    distinct = {bytes(x.numpy().tobytes()) for x in a}
    assert len(distinct) == 64                       # 64 copies of one image, 64 results
    draws = ba.draw_rand_augment(4096, 32, 32, 3, generator=torch.Generator().manual_seed(2))
    counts = torch.bincount(draws.ops.flatten(), minlength=len(ba.OPS)).double()
    expected = draws.ops.numel() / len(ba.OPS)
    assert ((counts - expected).abs() < 5 * expected ** 0.5).all()   # uniform over the ops
    assert 1 < float(draws.cx.min()) and float(draws.cx.max()) <= 32
    assert 0 <= float(draws.cutout.min()) and float(draws.cutout.max()) < 0.5
    weak = ba.BatchAugment(strong=False, pad=4)(batch, torch.Generator().manual_seed(0))
    assert 20 < len({bytes(x.numpy().tobytes()) for x in weak}) <= 64  # 81 crops x 2 flips


def test_float_input_and_normalised_output():
    imgs = _batch(_images(6, 32))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    as_uint8 = ba.BatchAugment(strong=True)(imgs, g())
    as_float = ba.BatchAugment(strong=True)(imgs.float() / 255, g())
    assert as_float.dtype == torch.float32
    assert torch.equal((as_float * 255).round().to(torch.uint8), as_uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    norm = ba.BatchAugment(strong=True, mean=mean, std=std)(imgs, g())
    shape = (1, 3, 1, 1)
    ref = (as_uint8.float() / 255 - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
    torch.testing.assert_close(norm, ref)


def test_bad_input_is_named():
    aug = ba.BatchAugment(strong=True)
    with pytest.raises(ValueError, match="N, C, H, W"):
        aug(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        aug(torch.zeros(2, 4, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 or floating"):
        aug(torch.zeros(2, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="unknown op"):
        ba.apply_op(torch.zeros(1, 3, 8, 8), "Invert", 0.0)
    with pytest.raises(ValueError, match="mean and std"):
        ba.BatchAugment(strong=False, mean=(0.5,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu():
    imgs = _batch(_images(24, 32))
    for strong in (False, True):
        aug = ba.BatchAugment(strong=strong)
        cpu = aug(imgs, torch.Generator().manual_seed(4))
        gpu = aug(imgs.cuda(), torch.Generator().manual_seed(4))   # same CPU draws
        assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_augmentation_never_syncs():
    """CUDA's own check: with a CUDA generator, a batch is queued without a host sync."""
    imgs = _batch(_images(24, 32)).cuda()
    aug = ba.BatchAugment(strong=True, mean=(0.5,) * 3, std=(0.2,) * 3)
    g = torch.Generator(device="cuda").manual_seed(0)
    aug(imgs, g)                                      # the per-device constants, once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = aug(imgs, g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.is_cuda and out.shape == imgs.shape

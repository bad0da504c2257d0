import math

import pytest
import torch

from dm_ssl.mixers.geometry import (
    binarise_mask,
    box_area,
    box_mask,
    fourier_mask,
    rand_bbox,
    rand_inner_box,
    saliency_peak,
    side_ratio,
    spectral_residual_saliency,
)

D = torch.float64


def test_rand_bbox_unclipped_size_and_centre():
    lam = torch.tensor([0.0, 0.36, 0.75, 0.9, 1.0], dtype=D)
    centers = torch.full((5, 2), 16)
    boxes = rand_bbox(32, 32, lam, centers=centers)
    cut = torch.floor(32 * torch.sqrt(1 - lam)).long()
    assert torch.equal(boxes[:, 1] - boxes[:, 0], cut)
    assert torch.equal(boxes[:, 3] - boxes[:, 2], cut)
    assert torch.equal(boxes[:, 0], 16 - cut // 2)
    assert torch.equal(box_area(boxes), cut * cut)


def test_rand_bbox_clips_at_the_border():
    boxes = rand_bbox(32, 24, torch.tensor([0.75], dtype=D), centers=torch.tensor([[0, 23]]))
    assert boxes.tolist() == [[0, 8, 17, 24]]


def test_rand_bbox_random_centres_are_per_sample_and_in_bounds():
    lam = torch.full((64,), 0.5, dtype=D)
    boxes = rand_bbox(20, 30, lam, generator=torch.Generator().manual_seed(0))
    assert boxes[:, :2].min() >= 0 and boxes[:, :2].max() <= 20
    assert boxes[:, 2:].min() >= 0 and boxes[:, 2:].max() <= 30
    assert len({tuple(b) for b in boxes.tolist()}) > 10
    again = rand_bbox(20, 30, lam, generator=torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)


def test_box_mask_matches_boxes():
    boxes = torch.tensor([[0, 3, 1, 5], [2, 2, 0, 4], [0, 8, 0, 6]])
    mask = box_mask(boxes, 8, 6)
    assert mask.shape == (3, 1, 8, 6) and mask.dtype == torch.bool
    assert torch.equal(mask.flatten(1).sum(1), box_area(boxes))
    assert mask[0, 0, :3, 1:5].all() and mask[0, 0].sum() == 12


def test_rand_inner_box_fits_entirely():
    tau = torch.tensor([0.1, 0.5, 0.8, 1.0, 0.01], dtype=D).repeat(20)
    boxes = rand_inner_box(16, 12, tau, generator=torch.Generator().manual_seed(1))
    hs, ws = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
    assert torch.equal(hs, torch.floor(16 * tau).long().clamp(1, 16))
    assert torch.equal(ws, torch.floor(12 * tau).long().clamp(1, 12))
    assert boxes[:, 0].min() >= 0 and boxes[:, 1].max() <= 16
    assert boxes[:, 2].min() >= 0 and boxes[:, 3].max() <= 12


def test_side_ratio():
    lam = torch.tensor([1.0, 0.75, 0.0], dtype=D)
    assert torch.allclose(side_ratio(lam, 0.1, 0.8), torch.tensor([0.1, 0.5, 0.8], dtype=D))


def test_binarise_mask_exact_counts_even_with_ties():
    soft = torch.randn(5, 7, 9)
    soft[0] = 0.0  # all ties
    lam = torch.tensor([0.5, 0.0, 1.0, 0.31, 0.77], dtype=D)
    mask = binarise_mask(soft, lam)
    expected = torch.round(lam * 63).long()
    assert torch.equal(mask.flatten(1).sum(1), expected)
    # the kept pixels are the largest ones
    for i in range(1, 5):
        k = int(expected[i])
        if 0 < k < 63:
            assert soft[i][mask[i]].min() >= soft[i][~mask[i]].max()


def test_fourier_mask_shape_and_reproducible():
    m = fourier_mask(4, 10, 7, generator=torch.Generator().manual_seed(0))
    m2 = fourier_mask(4, 10, 7, generator=torch.Generator().manual_seed(0))
    assert m.shape == (4, 10, 7) and m.dtype == torch.float32
    assert torch.equal(m, m2)
    assert not torch.allclose(m[0], m[1])


def _boundary(mask):
    """Mean number of neighbouring pixel pairs that disagree: long for high-frequency masks."""
    m = mask.float()
    return ((m[:, 1:] != m[:, :-1]).sum() + (m[:, :, 1:] != m[:, :, :-1]).sum()) / len(m)


def test_decay_power_controls_frequency_content():
    g = torch.Generator().manual_seed(0)
    half = torch.full((32,), 0.5, dtype=D)
    rough = binarise_mask(fourier_mask(32, 32, 32, decay_power=0.5, generator=g), half)
    smooth = binarise_mask(fourier_mask(32, 32, 32, decay_power=4.0, generator=g), half)
    assert _boundary(rough) > 3 * _boundary(smooth)


def _blob_images(n, h, w, centres, c=3, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = noise * torch.rand(n, c, h, w, generator=g)
    for i, (cy, cx) in enumerate(centres):
        x[i, :, cy - 1:cy + 1, cx - 1:cx + 1] = 1.0
    return x


@pytest.mark.parametrize("size", [64, None])
def test_saliency_peaks_at_the_blob(size):
    centres = [(5, 5), (20, 9), (27, 27), (10, 24)]
    x = _blob_images(4, 32, 32, centres)
    sal = spectral_residual_saliency(x, size=size)
    assert sal.shape == (4, 32, 32)
    assert sal.min() >= 0 and math.isclose(sal.amax(dim=(1, 2)).min().item(), 1.0, rel_tol=1e-5)
    peak = saliency_peak(x, size=size)
    for (cy, cx), (py, px) in zip(centres, peak.tolist()):
        assert abs(py - cy) <= 2 and abs(px - cx) <= 2


@pytest.mark.parametrize("h,w", [(32, 32), (30, 45), (100, 120)])
@pytest.mark.parametrize("side", [2, 3, 4])
def test_saliency_of_clean_blobs(h, w, side):
    # exact boxes on a flat background have exact zeros in their spectrum
    x = torch.zeros(2, 1, h, w, dtype=D)
    corners = [(h // 2 + 5, 3), (2, w - side - 2)]
    for i, (y0, x0) in enumerate(corners):
        x[i, :, y0:y0 + side, x0:x0 + side] = 1.0
    for size in (None, 64):
        # spectral residual peaks on the blob or its edge, give or take one working pixel
        tol = 1 if size is None else 1 + max(h, w) / size
        for (y0, x0), (py, px) in zip(corners, saliency_peak(x, size=size).tolist()):
            assert y0 - tol <= py <= y0 + side - 1 + tol, (size, py, y0)
            assert x0 - tol <= px <= x0 + side - 1 + tol, (size, px, x0)


def test_saliency_handles_grey_float64_and_constant_images():
    x = torch.zeros(2, 1, 12, 20, dtype=D)
    x[1, 0, 3:5, 15:17] = 7.0
    sal = spectral_residual_saliency(x)
    assert sal.dtype == D and torch.isfinite(sal).all()
    assert torch.isfinite(spectral_residual_saliency(torch.ones(1, 3, 8, 8))).all()
    assert torch.isfinite(spectral_residual_saliency(1e6 * torch.rand(1, 3, 8, 8))).all()
    py, px = saliency_peak(x)[1].tolist()
    assert abs(py - 4) <= 2 and abs(px - 16) <= 2

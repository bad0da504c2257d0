import pytest
import torch
import torch.nn.functional as F

from dm_ssl.mixers import ResizeMix


def _pasted_box(res_x, x_a):
    """(y0, y1, x0, x1) of each sample's pasted region (x_a is -1 everywhere, x_b >= 0)."""
    pasted = (res_x != x_a).all(1)
    boxes = []
    for m in pasted:
        rows, cols = m.any(1).nonzero(), m.any(0).nonzero()
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert m[y0:y1, x0:x1].all() and m.sum() == (y1 - y0) * (x1 - x0)
        boxes.append((int(y0), int(y1), int(x0), int(x1)))
    return boxes


def test_pastes_a_bilinear_copy_of_the_whole_source():
    g = torch.Generator().manual_seed(0)
    x_b = torch.rand(4, 3, 16, 16, generator=g)
    x_a = torch.full_like(x_b, -1.0)
    lam = torch.tensor([0.75, 0.75, 0.36, 1.0])  # τ = 0.5, 0.5, 0.8, 0.1
    res = ResizeMix()(x_a, torch.arange(4), x_b=x_b, y_b=torch.arange(4), lam=lam,
                      generator=g)
    sides = [8, 8, 12, 1]
    for i, (y0, y1, x0, x1) in enumerate(_pasted_box(res.x, x_a)):
        assert (y1 - y0, x1 - x0) == (sides[i], sides[i])
        small = F.interpolate(x_b[i:i + 1], size=(sides[i], sides[i]), mode="bilinear",
                              align_corners=False)[0]
        torch.testing.assert_close(res.x[i, :, y0:y1, x0:x1], small)
        assert res.lam[i].item() == pytest.approx(1 - sides[i] ** 2 / 256, abs=1e-7)


def test_drawn_tau_stays_in_scope():
    x = torch.zeros(64, 1, 20, 20)
    mixer = ResizeMix(alpha=1.0, per_sample=True, scope=(0.2, 0.6))
    res = mixer(x, torch.arange(64), x_b=torch.ones_like(x), y_b=torch.arange(64),
                generator=torch.Generator().manual_seed(0))
    pasted = 1 - res.lam.double()
    assert (pasted >= 16 / 400 - 1e-9).all() and (pasted <= 144 / 400 + 1e-9).all()
    assert len(set(pasted.tolist())) > 3


def test_lam_is_clamped_to_scope():
    x = torch.zeros(2, 1, 10, 10)
    res = ResizeMix(scope=(0.3, 0.5))(x, torch.arange(2), x_b=torch.ones_like(x),
                                      y_b=torch.arange(2), lam=torch.tensor([0.0, 1.0]))
    assert torch.allclose(res.lam, torch.tensor([1 - 0.25, 1 - 0.09]))


def test_uint8_is_rounded():
    x_b = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    x_a = torch.zeros_like(x_b)
    res = ResizeMix()(x_a, torch.arange(3), x_b=x_b, y_b=torch.arange(3), lam=0.3)
    assert res.x.dtype == torch.uint8

import pytest
import torch

from dm_ssl.mixers import FMix, fmix_images


@pytest.mark.parametrize("h,w", [(16, 16), (15, 22)])
def test_masks_are_binary_with_mean_round_lam_hw(h, w):
    n = 7
    x_a, x_b = torch.zeros(n, 3, h, w), torch.ones(n, 3, h, w)
    lam = torch.tensor([0.0, 0.01, 0.3, 0.5, 0.51, 0.99, 1.0], dtype=torch.float64)
    mixed, lam_eff = fmix_images(x_a, x_b, lam, generator=torch.Generator().manual_seed(0))
    assert ((mixed == 0) | (mixed == 1)).all()
    assert (mixed == mixed[:, :1]).all()  # one mask for all channels
    expected = torch.round(lam * h * w) / (h * w)
    assert torch.equal(lam_eff, expected)
    torch.testing.assert_close(1 - mixed.double().mean((1, 2, 3)), expected, atol=1e-12, rtol=0)


def test_masks_are_per_sample():
    x = torch.zeros(8, 1, 32, 32)
    res = FMix()(x, torch.arange(8), x_b=torch.ones_like(x), y_b=torch.arange(8), lam=0.5,
                 generator=torch.Generator().manual_seed(0))
    assert len({tuple(m.flatten().tolist()) for m in res.x.bool()}) == 8
    assert torch.equal(res.lam, torch.full((8,), 0.5))


def test_decay_power_changes_the_masks():
    x = torch.zeros(16, 1, 32, 32)
    kw = dict(x_b=torch.ones_like(x), y_b=torch.arange(16), lam=0.5)

    def boundary(m):
        return (m[..., 1:, :] != m[..., :-1, :]).sum() + (m[..., 1:] != m[..., :-1]).sum()

    rough = FMix(decay_power=0.5)(x, torch.arange(16), **kw,
                                  generator=torch.Generator().manual_seed(0)).x
    smooth = FMix(decay_power=5.0)(x, torch.arange(16), **kw,
                                   generator=torch.Generator().manual_seed(0)).x
    assert boundary(rough) > 3 * boundary(smooth)

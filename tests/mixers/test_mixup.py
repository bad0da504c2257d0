import torch

from dm_ssl.mixers import Mixup, mixup_images


def test_exact_interpolation_per_sample():
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    index = torch.tensor([1, 2, 3, 4, 0])
    lam = torch.tensor([0.0, 0.25, 0.5, 0.8, 1.0], dtype=torch.float64)
    res = Mixup()(x, torch.arange(5), index=index, lam=lam)
    expected = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[index]
    assert torch.equal(res.x, expected)
    assert torch.equal(res.lam, lam)
    assert torch.equal(res.x[0], x[1]) and torch.equal(res.x[4], x[4])


def test_scalar_lam_is_broadcast_and_drawn_lam_is_shared():
    x = torch.randn(4, 8)  # any (N, ...) batch, not only images
    res = Mixup()(x, torch.arange(4), index=torch.tensor([3, 2, 1, 0]), lam=0.3)
    torch.testing.assert_close(res.x, 0.3 * x + 0.7 * x.flip(0))
    res = Mixup(alpha=0.5)(x, torch.arange(4), generator=torch.Generator().manual_seed(0))
    assert (res.lam == res.lam[0]).all()
    res = Mixup(alpha=0.5, per_sample=True)(x, torch.arange(4),
                                            generator=torch.Generator().manual_seed(0))
    assert len(set(res.lam.tolist())) == 4


def test_half_precision_is_mixed_with_a_float32_lam():
    x_a, x_b = torch.randn(3, 2, 5), torch.randn(3, 2, 5)
    lam = torch.tensor([0.1, 0.3337, 0.9])
    out = mixup_images(x_a.bfloat16(), x_b.bfloat16(), lam)
    assert out.dtype == torch.bfloat16
    a, b, lam3 = x_a.bfloat16().float(), x_b.bfloat16().float(), lam.view(-1, 1, 1)
    ref = lam3 * a + (1 - lam3) * b
    assert torch.equal(out, ref.bfloat16())

import torch

from dm_ssl.mixers import CutMix, cutmix_images


def _pasted(res_x, x_a, x_b):
    """Bool (N, H, W): pixels taken from b (a and b differ everywhere by construction)."""
    from_b = (res_x == x_b).all(1)
    assert ((res_x == x_a).all(1) ^ from_b).all()
    return from_b


def test_one_rectangle_from_the_partner():
    g = torch.Generator().manual_seed(0)
    x_a = torch.rand(16, 3, 20, 24, generator=g)
    x_b = x_a + 2.0
    mixed, lam_eff = cutmix_images(x_a, x_b, torch.full((16,), 0.6, dtype=torch.float64),
                                   generator=g)
    pasted = _pasted(mixed, x_a, x_b)
    for i in range(16):
        rows = pasted[i].any(1).nonzero()
        cols = pasted[i].any(0).nonzero()
        if len(rows):
            box = pasted[i, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert box.all() and box.numel() == pasted[i].sum()
    torch.testing.assert_close(lam_eff, 1 - pasted.flatten(1).double().mean(1))
    # unclipped boxes have side floor(H·√(1−λ)); clipping only shrinks them
    assert (pasted.flatten(1).sum(1) <= 12 * 15).all()
    assert (pasted.flatten(1).sum(1) == 12 * 15).any()


def test_positions_are_per_sample_with_a_shared_lam():
    x, y = torch.zeros(32, 1, 16, 16), torch.arange(32)
    res = CutMix()(x, y, x_b=torch.ones_like(x), y_b=y, lam=0.75,
                   generator=torch.Generator().manual_seed(0))
    assert len({tuple(m.flatten().tolist()) for m in res.x.bool()}) > 8


def test_uint8_images():
    x = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    res = CutMix()(x, torch.arange(6), index=torch.tensor([1, 0, 3, 2, 5, 4]), lam=0.5)
    assert res.x.dtype == torch.uint8
    taken = (res.x == x[res.index]).all(1).flatten(1).double().mean(1)
    assert (taken >= 1 - res.lam.double() - 1e-6).all()

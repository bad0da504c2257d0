import torch

from dm_ssl.mixers import SaliencyMix, saliencymix_images
from dm_ssl.mixers.geometry import saliency_peak


def _blob_sources(centres, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.rand(len(centres), 3, h, w, generator=g)
    for i, (cy, cx) in enumerate(centres):
        x[i, :, cy:cy + 2, cx:cx + 2] = 1.0
    return x


def test_box_is_centred_on_the_source_saliency_peak():
    centres = [(3, 4), (14, 20), (26, 8), (28, 28), (16, 16)]
    x_b = _blob_sources(centres)
    x_a = torch.full_like(x_b, -1.0)
    lam = torch.tensor([0.75, 0.9, 0.5, 0.75, 0.96], dtype=torch.float64)
    mixed, lam_eff = saliencymix_images(x_a, x_b, lam)
    pasted = (mixed != x_a).all(1)
    assert torch.equal(mixed[pasted.unsqueeze(1).expand_as(mixed)],
                       x_b[pasted.unsqueeze(1).expand_as(x_b)])
    torch.testing.assert_close(lam_eff, 1 - pasted.flatten(1).double().mean(1))
    for i, (cy, cx) in enumerate(centres):
        assert pasted[i, cy:cy + 2, cx:cx + 2].all(), f"blob {i} not in its box"
        rows, cols = pasted[i].any(1).nonzero(), pasted[i].any(0).nonzero()
        cut = int(32 * (1 - lam[i]) ** 0.5)
        # box centre within 2 px of the blob, unless the box was clipped at a border
        if rows.min() > 0 and rows.max() < 31:
            assert len(rows) == cut and abs((rows.min() + rows.max()) / 2 - (cy + 0.5)) <= 2
        if cols.min() > 0 and cols.max() < 31:
            assert len(cols) == cut and abs((cols.min() + cols.max()) / 2 - (cx + 0.5)) <= 2


def test_the_source_decides_not_the_target():
    x_b = _blob_sources([(5, 25), (25, 5)])
    x_a = torch.rand_like(x_b) * 10  # a salient-looking target must not move the box
    res = SaliencyMix()(x_a, torch.arange(2), x_b=x_b, y_b=torch.arange(2), lam=0.8)
    pasted = (res.x == x_b).all(1) & (res.x != x_a).all(1)
    assert pasted[0, 5:7, 25:27].all() and pasted[1, 25:27, 5:7].all()
    peaks = saliency_peak(x_b)
    assert (peaks - torch.tensor([[5, 25], [25, 5]])).abs().max() <= 2


def test_uses_the_permuted_source():
    x = _blob_sources([(4, 4), (26, 26)])
    res = SaliencyMix()(x, torch.arange(2), index=torch.tensor([1, 0]), lam=0.75)
    pasted = (res.x != x).any(1)
    assert pasted[0, 26:28, 26:28].all() and pasted[1, 4:6, 4:6].all()

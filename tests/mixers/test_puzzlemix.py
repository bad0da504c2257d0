"""PuzzleMix (spec §5): gradient saliency, the block-mask energy, transport, the true share."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dm_ssl.mixers import PuzzleMix, build_mixer, puzzlemix_images
from dm_ssl.mixers.puzzlemix import (
    block_unary,
    grid_energy,
    input_saliency,
    mask_transport,
    puzzle_mask,
    solve_binary_grid,
    transport_blocks,
)

C, H, W = 3, 16, 16


def blob_templates(k, h=H, w=W, seed=0, sigma=2.5):
    """One Gaussian blob per class at a random centre: (k, h, w)."""
    g = torch.Generator().manual_seed(seed)
    cy, cx = torch.rand(2, k, 1, 1, generator=g) * torch.tensor([h, w]).view(2, 1, 1, 1)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


class TemplateNet(nn.Module):
    """Linear classifier whose class c looks at ``templates[c]`` (all channels): the input
    gradient of a sample of class y is concentrated on ``templates[y]``."""

    def __init__(self, templates, channels=C, as_dict=False):
        super().__init__()
        k, h, w = templates.shape
        self.fc = nn.Linear(channels * h * w, k)
        with torch.no_grad():
            self.fc.weight.copy_(templates.unsqueeze(1).expand(k, channels, h, w).reshape(k, -1))
            self.fc.bias.zero_()
        self.as_dict = as_dict

    def forward(self, x):
        logits = self.fc(x.flatten(1))
        return {"logits": logits, "feat": x.flatten(1)} if self.as_dict else logits


class TinyCNN(nn.Module):
    def __init__(self, k=10):
        super().__init__()
        self.conv = nn.Conv2d(C, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, k)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x))).mean((2, 3))
        return {"logits": self.fc(self.drop(h)), "feat": h}


def half_templates(k=8):
    """Class 0 looks at the left half, class 1 at the right half, the others at nothing."""
    t = torch.zeros(k, H, W)
    t[0, :, : W // 2] = 1.0
    t[1, :, W // 2:] = 1.0
    return t


def share_of_a(mixed):
    return 1 - mixed.double().mean(dim=(1, 2, 3))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# the mixer contract


def test_registered_and_needs_the_model():
    mixer = build_mixer("puzzlemix", alpha=1.0)
    assert isinstance(mixer, PuzzleMix) and mixer.needs_model and mixer.floating_only
    x, y = torch.rand(2, C, H, W), torch.arange(2)
    with pytest.raises(ValueError, match="model"):
        mixer(x, y)
    with pytest.raises(NotImplementedError, match="model="):
        mixer.mix(x, x, torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="floating"):
        mixer(torch.zeros(2, C, H, W, dtype=torch.uint8), y, model=TinyCNN())


@pytest.mark.parametrize("transport", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lam_is_the_true_share_of_a(transport, dtype, device):
    n = 8
    model = TemplateNet(blob_templates(10)).to(device=device, dtype=dtype)
    x_a = torch.zeros(n, C, H, W, dtype=dtype, device=device)
    x_b = torch.ones_like(x_a)
    y = torch.arange(n, device=device)
    mixer = PuzzleMix(alpha=1.0, per_sample=True, transport=transport)
    lams = []
    for seed in range(4):
        res = mixer(x_a, y, x_b=x_b, y_b=(y + 3) % 10, model=model, generator=gen(seed))
        assert res.lam.shape == (n,) and res.lam.device == x_a.device
        assert res.lam.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert res.x.dtype == dtype and res.x.shape == x_a.shape
        torch.testing.assert_close(res.lam.double(), share_of_a(res.x), atol=1e-6, rtol=0)
        lams.append(res.lam)
    lams = torch.cat(lams)
    assert ((lams > 0) & (lams < 1)).sum() >= 8, "masks should genuinely mix"


def test_true_share_with_a_permutation():
    # rows 0..3 are 0 and pair with rows 4..7, which are 1, and vice versa
    x = torch.cat([torch.zeros(4, C, H, W), torch.ones(4, C, H, W)])
    index = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    model = TemplateNet(blob_templates(8, seed=1))
    for seed in range(3):
        res = PuzzleMix(per_sample=True)(x, torch.arange(8), index=index, model=model,
                                         generator=gen(seed))
        frac_ones = res.x.double().mean(dim=(1, 2, 3))
        measured = torch.cat([1 - frac_ones[:4], frac_ones[4:]])
        torch.testing.assert_close(res.lam.double(), measured, atol=1e-6, rtol=0)
        assert torch.equal(res.index, index) and torch.equal(res.y_b, torch.arange(8)[index])


def test_without_transport_every_pixel_is_a_or_b_in_place():
    torch.manual_seed(0)
    x_a, x_b = torch.rand(6, C, H, W), torch.rand(6, C, H, W)
    y = torch.arange(6)
    model = TemplateNet(blob_templates(6, seed=2))
    for seed in range(4):
        res = PuzzleMix(per_sample=True, transport=False)(x_a, y, x_b=x_b, y_b=(y + 1) % 6,
                                                         model=model, generator=gen(seed))
        from_a, from_b = (res.x == x_a).all(1), (res.x == x_b).all(1)
        assert (from_a | from_b).all()
        torch.testing.assert_close(res.lam.double(), from_a.double().mean((1, 2)),
                                   atol=1e-6, rtol=0)


def blocks(x, n):
    """(N, n*n, C*bh*bw): the n × n blocks of each image, row-major."""
    b, c, h, w = x.shape
    return (x.reshape(b, c, n, h // n, n, w // n).permute(0, 2, 4, 1, 3, 5)
            .reshape(b, n * n, -1))


@pytest.mark.parametrize("n", [2, 4, 8])
def test_transport_moves_whole_blocks_of_the_same_image(n):
    torch.manual_seed(0)
    x_a, x_b = torch.rand(6, C, H, W), torch.rand(6, C, H, W)
    y = torch.arange(6)
    res = PuzzleMix(block_nums=(n,), per_sample=True)(x_a, y, x_b=x_b, y_b=(y + 1) % 6,
                                                     model=TemplateNet(blob_templates(6)),
                                                     generator=gen(1))
    out, ba, bb = blocks(res.x, n), blocks(x_a, n), blocks(x_b, n)
    is_a = (out.unsqueeze(2) == ba.unsqueeze(1)).all(-1).any(-1)  # block j is some block of a
    is_b = (out.unsqueeze(2) == bb.unsqueeze(1)).all(-1).any(-1)
    assert (is_a ^ is_b).all()
    torch.testing.assert_close(res.lam.double(), is_a.double().mean(1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("block_nums", [(2,), (4,), (8,), (2, 4, 8, 16)])
def test_the_mask_follows_the_saliency(block_nums):
    """a (class 0) is salient on the left half only, b (class 1) on the right half only:
    the mask keeps a on the left and b on the right, and swaps when the classes swap."""
    g = torch.Generator().manual_seed(0)
    x_a, x_b = 0.01 * torch.randn(8, C, H, W, generator=g), 0.01 * torch.randn(8, C, H, W,
                                                                               generator=g)
    model = TemplateNet(half_templates())
    mixer = PuzzleMix(block_nums=block_nums, transport=False)
    for y_a, a_side in ((0, slice(0, W // 2)), (1, slice(W // 2, W))):
        ya, yb = torch.full((8,), y_a), torch.full((8,), 1 - y_a)
        res = mixer(x_a, ya, x_b=x_b, y_b=yb, lam=0.5, model=model, generator=gen(3))
        keep_a = (res.x == x_a).all(1).double()
        b_side = slice(W // 2, W) if a_side.start == 0 else slice(0, W // 2)
        assert keep_a[:, :, a_side].mean() > 0.95 and keep_a[:, :, b_side].mean() < 0.05


def test_the_mask_follows_lam_where_saliency_is_flat():
    u = torch.full((4, 4, 4), 1 / 16)
    x = torch.zeros(4, C, H, W)
    lam = torch.tensor([0.0, 0.2, 0.8, 1.0])
    mask = puzzle_mask(u, u, x, x, lam)
    assert mask.shape == (4, 4, 4) and mask.dtype == torch.bool
    assert torch.equal(mask.flatten(1).float().mean(1), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    # λ = 1 keeps a even where b is far more salient (exact, not left to the energy)
    ub = torch.zeros(4, 4, 4)
    ub[:, 0, 0] = 1.0
    assert puzzle_mask(u, ub, x, x, torch.ones(4)).all()
    assert not puzzle_mask(ub, u, x, x, torch.zeros(4)).any()


def test_per_sample_lam_gives_per_sample_masks():
    x = torch.rand(8, C, H, W)
    model = TemplateNet(blob_templates(8, seed=4))
    res = PuzzleMix(alpha=1.0, per_sample=True)(x, torch.arange(8), model=model,
                                                generator=gen(0))
    assert len(set(res.lam.tolist())) > 1
    lam = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    res = PuzzleMix()(x, torch.arange(8), lam=lam, model=model, generator=gen(0))
    assert torch.equal(res.lam, lam)
    assert torch.equal(res.x[1::2], x[1::2]) and torch.equal(res.x[::2], x[res.index[::2]])


# ---------------------------------------------------------------------------------------------
# saliency and the model


def test_saliency_is_the_rms_input_gradient_over_channels():
    torch.manual_seed(0)
    model = TemplateNet(torch.randn(5, H, W))
    x, y = torch.randn(4, C, H, W), torch.tensor([0, 3, 1, 4])
    p = torch.softmax(model(x), 1)
    grad = ((p - F.one_hot(y, 5)) @ model.fc.weight).view(4, C, H, W)  # ∂ΣCE/∂x
    torch.testing.assert_close(input_saliency(model, x, y), grad.square().mean(1).sqrt())
    u = block_unary(input_saliency(model, x, y), 4)
    assert u.shape == (4, 4, 4)
    torch.testing.assert_close(u.sum((1, 2)), torch.ones(4))
    torch.testing.assert_close(block_unary(torch.zeros(2, H, W), 2), torch.full((2, 2, 2), 0.25))


def test_model_state_is_left_untouched():
    torch.manual_seed(0)
    model = TinyCNN()
    model.train()
    model.drop.eval()  # a submodule in its own mode must get it back
    bn_state = {k: v.clone() for k, v in model.bn.state_dict().items()}
    x = torch.randn(6, C, H, W)
    with torch.no_grad():  # the saliency still gets its gradient
        res = PuzzleMix()(x, torch.arange(6), model=model, generator=gen(0))
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model.conv.training and model.bn.training
    assert not model.drop.training
    assert all(torch.equal(v, model.bn.state_dict()[k]) for k, v in bn_state.items())
    assert not res.x.requires_grad and res.x.grad_fn is None
    model.eval()
    PuzzleMix()(x, torch.arange(6), model=model, generator=gen(0))
    assert not any(m.training for m in model.modules())


def test_dict_and_tensor_models_give_the_same_mix():
    t = blob_templates(6, seed=5)
    x, y = torch.rand(6, C, H, W), torch.arange(6)
    r1, r2 = (PuzzleMix(per_sample=True)(x, y, model=TemplateNet(t, as_dict=d), generator=gen(2))
              for d in (False, True))
    assert torch.equal(r1.x, r2.x) and torch.equal(r1.lam, r2.lam)

    class Bad(nn.Module):
        def forward(self, x):
            return [x]

    with pytest.raises(ValueError, match="logits"):
        PuzzleMix()(x, y, model=Bad())


def test_runs_under_autocast():
    torch.manual_seed(0)
    model, x = TinyCNN(), torch.randn(4, C, H, W)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = PuzzleMix()(x, torch.arange(4), model=model, generator=gen(0))
    assert res.x.dtype == torch.float32 and res.lam.dtype == torch.float32
    assert torch.isfinite(res.x).all()


def test_partner_saliency_comes_from_its_own_image_and_label():
    torch.manual_seed(0)
    model = TemplateNet(blob_templates(6, seed=6))
    x, x_b = torch.rand(6, C, H, W), torch.rand(6, C, H, W)
    y, y_b = torch.arange(6), torch.tensor([3, 4, 5, 0, 1, 2])
    lam = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    kw = dict(block_num=4, transport=True)
    res = PuzzleMix(block_nums=(4,))(x, y, x_b=x_b, y_b=y_b, lam=lam, model=model)
    expected, lam_eff = puzzlemix_images(x, x_b, input_saliency(model, x, y),
                                         input_saliency(model, x_b, y_b), lam, **kw)
    assert res.index is None and res.y_b is y_b
    assert torch.equal(res.x, expected) and torch.equal(res.lam, lam_eff.float())
    # with a permutation, the partner's saliency is the permuted batch saliency
    index = torch.tensor([2, 0, 1, 5, 3, 4])
    res = PuzzleMix(block_nums=(4,))(x, y, index=index, lam=lam, model=model)
    sal = input_saliency(model, x, y)
    expected, _ = puzzlemix_images(x, x[index], sal, sal[index], lam, **kw)
    assert torch.equal(res.x, expected)


def test_same_seed_same_mix():
    torch.manual_seed(0)
    model, x = TinyCNN(), torch.randn(8, C, 32, 32)
    mixer = PuzzleMix(per_sample=True)
    r1, r2 = (mixer(x, torch.arange(8), model=model, generator=gen(7)) for _ in range(2))
    assert torch.equal(r1.x, r2.x) and torch.equal(r1.lam, r2.lam)
    assert torch.equal(r1.index, r2.index)
    others = [mixer(x, torch.arange(8), model=model, generator=gen(s)) for s in (8, 9)]
    assert any(not torch.equal(r1.x, r.x) for r in others)


# ---------------------------------------------------------------------------------------------
# the solver and the transport


def _random_energy(n, batch, beta, seed):
    g = torch.Generator().manual_seed(seed)
    ua, ub = (torch.rand(batch, n, n, generator=g) ** 3 for _ in range(2))
    ua, ub = ua / ua.sum((1, 2), keepdim=True), ub / ub.sum((1, 2), keepdim=True)
    lam = torch.rand(batch, 1, 1, generator=g)
    eta = 0.2 / n ** 2
    cost_a, cost_b = ub - eta * torch.log(lam), ua - eta * torch.log(1 - lam)
    b = beta / n / 16

    def tables(shape):
        d = torch.rand(4, batch, *shape, generator=g)
        return b * 0.5 * d[0], b * 0.5 * d[1], b + b * 0.5 * (d[2] + d[3]) / 2

    return cost_a, cost_b, tables((n - 1, n)), tables((n, n - 1))


@pytest.mark.parametrize("beta", [0.5, 1.2, 3.0])
def test_solver_against_brute_force(beta):
    n, batch = 3, 48
    cost_a, cost_b, pv, ph = _random_energy(n, batch, beta, seed=int(beta * 10))
    mask = solve_binary_grid(cost_a, cost_b, pv, ph)
    e = grid_energy(mask, cost_a, cost_b, pv, ph)
    e_unary = grid_energy((cost_a < cost_b).float(), cost_a, cost_b, pv, ph)
    everything = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n * n))).view(-1, n, n)
    k = everything.shape[0]
    e_all = torch.stack([
        grid_energy(everything, cost_a[i].expand(k, n, n), cost_b[i].expand(k, n, n),
                    tuple(t[i].expand(k, *t.shape[1:]) for t in pv),
                    tuple(t[i].expand(k, *t.shape[1:]) for t in ph))
        for i in range(batch)])
    e_min = e_all.min(1).values
    assert (e <= e_unary + 1e-7).all()
    assert (e >= e_min - 1e-6).all()
    assert ((e - e_min).abs() < 1e-6).float().mean() >= 0.9


def test_transport_moves_salient_blocks_into_the_visible_region():
    n = 4
    unary = torch.full((2, n, n), 0.1 / 15)
    unary[:, 0, 0] = 0.9
    mask = torch.zeros(2, n, n, dtype=torch.bool)
    mask[0, 0, 1] = True          # visible: the neighbour of the salient block
    mask[1, 0, 0] = True          # visible: the salient block itself
    src = mask_transport(mask, unary, eps=0.8)
    assert src[0, 1] == 0 and src[1, 0] == 0
    for row in src:  # destinations that received another block got distinct sources
        moved = row[row != torch.arange(n * n)]
        assert len(set(moved.tolist())) == len(moved)
    # everything visible: nothing moves
    assert torch.equal(mask_transport(torch.ones(2, n, n, dtype=torch.bool), unary),
                       torch.arange(n * n).expand(2, -1))
    x = torch.arange(2 * C * 8 * 8, dtype=torch.float32).view(2, C, 8, 8)
    moved = transport_blocks(x, src, n)
    assert torch.equal(moved[0, :, 0:2, 2:4], x[0, :, 0:2, 0:2])


@pytest.mark.parametrize("kwargs,name", [
    (dict(beta=-1.0), "beta"), (dict(gamma=float("nan")), "gamma"), (dict(eta="0.2"), "eta"),
    (dict(neigh_size=0), "neigh_size"), (dict(neigh_size=2.5), "neigh_size"),
    (dict(block_nums=()), "block_nums"), (dict(block_nums=(1, 2)), "block_nums"),
    (dict(block_nums=4), "block_nums"), (dict(transport=1), "transport"),
    (dict(t_eps=-0.1), "t_eps"), (dict(t_iters=0), "t_iters"),
    (dict(eval_saliency=None), "eval_saliency"), (dict(pixel_std=(0.2, 0.0, 0.2)), "pixel_std"),
    (dict(alpha=0.0), "alpha"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PuzzleMix(**kwargs)


def test_block_nums_must_divide_the_image():
    x, y = torch.rand(2, C, H, W), torch.arange(2)
    with pytest.raises(ValueError, match="block_nums"):
        PuzzleMix(block_nums=(3, 4))(x, y, model=TinyCNN(), generator=gen(0))
    with pytest.raises(ValueError, match="block_nums"):
        PuzzleMix(block_nums=(4,))(torch.rand(2, C, 16, 10), y, model=TinyCNN())
    with pytest.raises(ValueError, match="pixel_std"):
        PuzzleMix(pixel_std=(0.2, 0.2))(x, y, model=TinyCNN())


@pytest.mark.parametrize("n", [4, 8, 16])
def test_solver_returns_a_local_minimum(n):
    cost_a, cost_b, pv, ph = _random_energy(n, 16, 1.2, seed=n)
    mask = solve_binary_grid(cost_a, cost_b, pv, ph).float()
    e = grid_energy(mask, cost_a, cost_b, pv, ph)
    flips = 1 - torch.eye(n * n).view(n * n, n, n)  # multiply-xor: flip one block each
    for i in range(mask.shape[0]):
        m = mask[i].expand(n * n, n, n)
        flipped = m * flips + (1 - m) * (1 - flips)
        k = n * n
        e_flip = grid_energy(flipped, cost_a[i].expand(k, n, n), cost_b[i].expand(k, n, n),
                             tuple(t[i].expand(k, *t.shape[1:]) for t in pv),
                             tuple(t[i].expand(k, *t.shape[1:]) for t in ph))
        assert (e_flip >= e[i] - 1e-7).all()

"""Tests for dm_ssl.evaluation.robustness (FGSM, mixed-sample accuracy, occlusion)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dm_ssl.evaluation import (
    fgsm_attack,
    fgsm_error_rate,
    mixed_accuracy,
    mixed_topk_accuracy,
    mixed_topk_correct,
    occlusion_accuracy,
    occlusion_box_size,
    occlusion_masks,
)
from dm_ssl.mixers import build_mixer


class Linear(nn.Module):
    """z = W flatten(x) + b; records the mode and the input it saw."""

    def __init__(self, d: int, k: int, as_dict: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(d, k).double()
        self.as_dict = as_dict
        self.seen_training: list = []
        self.seen_x: list = []

    def forward(self, x):
        self.seen_training.append(self.training)
        self.seen_x.append(x.detach().clone())
        z = self.fc(x.flatten(1))
        return {"logits": z} if self.as_dict else z


def hand_fgsm(model: Linear, x, y, eps, mean=None, std=None):
    """x_adv from ∇_x = Wᵀ(softmax(z) − onehot(y)) (/std), no autograd."""
    W, b = model.fc.weight.detach(), model.fc.bias.detach()
    xin = x if mean is None else (x - mean) / std
    z = xin.flatten(1) @ W.T + b
    g = (z.softmax(1) - F.one_hot(y, W.shape[0]).double()) @ W
    g = g.reshape(x.shape)
    if std is not None:
        g = g / std
    return (x + eps * g.sign()).clamp(0, 1)


def test_fgsm_matches_hand_computed_linear_attack():
    model = Linear(8, 3)
    x = torch.rand(6, 2, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 0], x[1, 1, 1, 1] = 0.0, 1.0  # clipping matters
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    adv = fgsm_attack(model, x, y, eps=0.1)
    expected = hand_fgsm(model, x, y, 0.1)
    assert torch.equal(adv, expected)
    assert not torch.equal(adv, x)
    assert (adv - x).abs().max() <= 0.1 + 1e-12 and adv.min() >= 0 and adv.max() <= 1


def test_fgsm_mean_std_and_dict_output():
    model = Linear(3, 3, as_dict=True)
    with torch.no_grad():
        model.fc.weight.copy_(torch.randn(3, 3, dtype=torch.float64) * 3)
    x = torch.rand(64, 3, 1, 1, dtype=torch.float64)
    y = torch.randint(0, 3, (64,))
    mean = torch.tensor([0.9, 0.1, 0.5], dtype=torch.float64).reshape(1, 3, 1, 1)
    std = torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64).reshape(1, 3, 1, 1)
    adv = fgsm_attack(model, x, y, eps=0.05, mean=[0.9, 0.1, 0.5], std=(0.1, 0.3, 0.2))
    assert torch.equal(adv, hand_fgsm(model, x, y, 0.05, mean, std))
    assert not torch.equal(adv, hand_fgsm(model, x, y, 0.05))  # normalisation matters here
    assert torch.allclose(model.seen_x[-1], (x - mean) / std)   # model saw normalised input
    # ε in pixel units: the step is eps in pixel space, not eps·std
    moved = (adv - x).abs()
    inside = (x > 0.05) & (x < 0.95)
    assert torch.allclose(moved[inside], torch.tensor(0.05, dtype=torch.float64))


def test_fgsm_leaves_grads_and_restores_mode():
    model = Linear(4, 2)
    model.train()
    sentinel = torch.full_like(model.fc.weight, 7.0)
    model.fc.weight.grad = sentinel.clone()
    x = torch.rand(5, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (5,))
    fgsm_attack(model, x, y)
    fgsm_error_rate(model, [(x, y)])
    assert torch.equal(model.fc.weight.grad, sentinel)
    assert model.fc.bias.grad is None
    assert model.training and model.fc.training
    assert model.seen_training and not any(model.seen_training)
    model.eval()
    fgsm_attack(model, x, y)
    assert not model.training


class Threshold(nn.Module):
    """Two classes on a scalar pixel: class 0 iff x > 0.5."""

    def forward(self, x):
        s = 10.0 * (x.flatten(1)[:, :1] - 0.5)
        return torch.cat([s, -s], dim=1)


def test_fgsm_error_rate_constructed_case():
    x = torch.tensor([[0.9], [0.55], [0.2], [0.3]])
    y = torch.tensor([0, 0, 1, 0])
    # clean: only x=0.3 wrong; eps 0.1 flips 0.55 -> 0.45; 0.9 -> 0.8 and 0.2 -> 0.3 hold
    batches = [(x[:3], y[:3]), {"x": x[3:], "y": y[3:]}]
    assert fgsm_error_rate(Threshold(), batches, eps=0.0) == pytest.approx(25.0)
    assert fgsm_error_rate(Threshold(), batches, eps=0.1) == pytest.approx(50.0)
    assert fgsm_error_rate(Threshold(), batches, eps=0.5) == pytest.approx(100.0)


def test_fgsm_eps_zero_is_clean_error():
    model = Linear(12, 4)
    x = torch.rand(40, 3, 2, 2, dtype=torch.float64)
    y = torch.randint(0, 4, (40,))
    clean = 100.0 * (model(x).argmax(1) != y).double().mean().item()
    assert fgsm_error_rate(model, [(x[:25], y[:25]), (x[25:], y[25:])], eps=0) == \
        pytest.approx(clean)
    assert fgsm_error_rate(model, [(x, y)], eps=8 / 255) >= clean


def test_mixed_topk_constructed_logits():
    L = torch.tensor([
        [5.0, 4, 0, 0],  # y=(0,1): both in top-2            -> top1 T, top2 T
        [5.0, 4, 0, 0],  # y=(1,0): order irrelevant         -> T, T
        [5.0, 0, 4, 0],  # y=(0,1): only a in top-2          -> T, F
        [0.0, 5, 0, 4],  # y=(0,2): neither                  -> F, F
        [0.0, 4, 5, 0],  # y=(3,1): b second, top is other   -> F, F
        [5.0, 4, 0, 0],  # y=(0,0): top1 == y_a              -> T, T (convention)
        [5.0, 4, 0, 0],  # y=(1,1): top1 != y_a              -> F, F
    ])
    ya = torch.tensor([0, 1, 0, 0, 3, 0, 1])
    yb = torch.tensor([1, 0, 1, 2, 1, 0, 1])
    t1, t2 = mixed_topk_correct(L, ya, yb)
    assert t1.tolist() == [True, True, True, False, False, True, False]
    assert t2.tolist() == [True, True, False, False, False, True, False]
    acc = mixed_topk_accuracy(L, ya, yb)
    assert acc == pytest.approx({"top1": 400 / 7, "top2": 300 / 7})


class Identity(nn.Module):
    def forward(self, x):
        return {"logits": x}


class Constant(nn.Module):
    def forward(self, x):
        out = torch.zeros(x.shape[0], x.shape[1])
        out[:, 2] = 1.0
        return out


def test_mixed_accuracy_oracle_and_constant():
    k = 6
    y = torch.arange(24) % k
    x = F.one_hot(y, k).float()
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    mixer = build_mixer("mixup")
    for lam in (0.5, 0.7):
        acc = mixed_accuracy(Identity(), batches, mixer, lam=lam,
                             generator=torch.Generator().manual_seed(0))
        assert acc == {"top1": 100.0, "top2": 100.0}
    # the constant model: top-1 iff class 2 ∈ {y_a, y_b}; compare with the same draws by hand
    g = torch.Generator().manual_seed(3)
    hits, n = 0, 0
    for xb, yb in batches:
        res = mixer(xb, yb, lam=0.5, generator=g)
        hits += int(((res.y_a == 2) | (res.y_b == 2)).sum())
        n += len(yb)
    acc = mixed_accuracy(Constant(), batches, mixer, generator=torch.Generator().manual_seed(3))
    assert acc["top1"] == pytest.approx(100.0 * hits / n)
    assert 0 < acc["top1"] < 100


def test_mixed_accuracy_feeds_the_requested_mix():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return x

    x, y = torch.rand(8, 5), torch.arange(8) % 5
    mixer = build_mixer("mixup")
    mixed_accuracy(Recorder(), [(x, y)], mixer, lam=0.3,
                   generator=torch.Generator().manual_seed(1))
    ref = mixer(x, y, lam=0.3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(seen[0], 0.3 * x + 0.7 * x[ref.index])


def test_occlusion_box_area_and_geometry():
    g = torch.Generator().manual_seed(0)
    for h, w in ((32, 32), (20, 12), (7, 7)):
        for f in (0.0, 0.05, 0.1, 0.33, 0.5, 0.9, 1.0):
            bh, bw = occlusion_box_size(f, h, w)
            assert abs(bh * bw - f * h * w) <= 0.5 * (h + w) * math.sqrt(f) + 0.25
            if h == w:
                assert bh == bw
            for patch in ("random", "center"):
                m = occlusion_masks(9, h, w, f, patch=patch, generator=g)
                assert m.shape == (9, h, w) and m.dtype == torch.bool
                assert m.flatten(1).sum(1).tolist() == [bh * bw] * 9
                # a contiguous rectangle: the bounding box is fully covered
                rows, cols = m.any(2).sum(1), m.any(1).sum(1)
                assert (rows * cols == bh * bw).all() or bh * bw == 0
    m = occlusion_masks(1, 10, 10, 0.16, patch="center")  # 4x4 box at rows/cols 3..6
    assert m[0, 3:7, 3:7].all() and m.sum() == 16
    m = occlusion_masks(50, 16, 16, 0.25, patch="random", generator=g)
    assert len({tuple(r.nonzero()[0].tolist()) for r in m}) > 1  # positions vary per image
    with pytest.raises(ValueError):
        occlusion_box_size(1.5, 4, 4)


class CentreModel(nn.Module):
    """Class 1 iff the mean of the central 4x4 region exceeds 0.5."""

    def forward(self, x):
        h, w = x.shape[-2:]
        c = x[:, :, h // 2 - 2:h // 2 + 2, w // 2 - 2:w // 2 + 2].mean((1, 2, 3))
        s = 10 * (c - 0.5)
        return torch.stack([-s, s], 1)


def _centre_data():
    y = torch.arange(40) % 2
    x = y.float().reshape(-1, 1, 1, 1).expand(-1, 3, 16, 16).clone()
    return [(x[:24], y[:24]), (x[24:], y[24:])]


def test_occlusion_centre_model():
    model = CentreModel()
    model.train()
    data = _centre_data()
    fr = (0.0, 0.0625, 0.25, 0.5)
    centre = occlusion_accuracy(model, data, fr, patch="center")
    assert centre[0.0] == 100.0
    assert centre[0.0625] == 50.0 and centre[0.25] == 50.0  # class-1 centres blacked out
    assert model.training
    rand = occlusion_accuracy(model, data, fr, generator=torch.Generator().manual_seed(0))
    assert rand[0.0] == 100.0 and rand[0.0625] > centre[0.0625]
    # with fill=1 the class-0 images are the ones that lose
    assert occlusion_accuracy(model, data, (0.25,), patch="center", fill=1.0)[0.25] == 50.0


def test_occlusion_fraction_zero_is_clean_and_seeded():
    model = Linear(48, 3)
    x = torch.rand(30, 3, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    clean = 100.0 * (model(x).argmax(1) == y).double().mean().item()
    data = [(x[:20], y[:20]), (x[20:], y[20:])]
    a = occlusion_accuracy(model, data, generator=torch.Generator().manual_seed(5))
    b = occlusion_accuracy(model, data, generator=torch.Generator().manual_seed(5))
    assert a == b and list(a) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert a[0.0] == pytest.approx(clean)
    m1 = occlusion_masks(20, 8, 8, 0.3, generator=torch.Generator().manual_seed(5))
    m2 = occlusion_masks(20, 8, 8, 0.3, generator=torch.Generator().manual_seed(5))
    m3 = occlusion_masks(20, 8, 8, 0.3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)
    # mean/std: fill is in pixel space, the model receives normalised images
    occlusion_accuracy(model, data, (0.5,), patch="center", mean=0.5, std=0.25)
    seen = model.seen_x[-1].reshape(10, 3, 4, 4)
    assert torch.allclose(seen[:, :, 1:3, 1:3], torch.tensor(-2.0, dtype=torch.float64))

import math

import pytest
import torch
import torch.nn.functional as F

from dm_ssl.losses import (
    DecoupledMixupCrossEntropy,
    DecoupledSoftTargetCrossEntropy,
    build_loss,
    decoupled_mixup_ce,
    decoupled_mixup_ce_soft,
    mixup_ce,
)

from . import reference as ref

D = torch.float64


def batch(n=12, c=7, dtype=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g, dtype=dtype) * 3).requires_grad_()
    y_a = torch.randint(0, c, (n,), generator=g)
    y_b = torch.randint(0, c, (n,), generator=g)
    y_b[:2] = y_a[:2]                                   # same-class rows
    lam = torch.rand(n, generator=g, dtype=dtype)
    lam[2], lam[3], lam[4] = 0.5, 1.0, 0.0              # λ = 0.5 kept, λ ∈ {0, 1}
    return z, y_a, y_b, lam


CASES = [
    dict(eta=0.1),
    dict(eta=1.0, mode="less", thr=0.5),
    dict(eta=1.0, mode="more", thr=0.6),
    dict(eta=1.0, scale="pow", t=1.0, k=1.0),
    dict(eta=0.7, scale="pow", t=0.5, k=2.0, label_smoothing=0.1),
    dict(eta=2.0, mode="less", thr=0.3, scale="pow", t=0.8, k=0.5),
]


@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_float64_reference_loss_and_grad(kw, reduction):
    z, y_a, y_b, lam = batch()
    w = torch.rand(z.shape[0], dtype=D)
    kw = dict(kw)
    smoothing = kw.pop("label_smoothing", 0.0)
    out = decoupled_mixup_ce(z, y_a, y_b, lam, weight=w, reduction=reduction,
                             label_smoothing=smoothing, **kw)
    want = ref.dm_ce(z, y_a, y_b, lam, weight=w, reduction=reduction, smoothing=smoothing, **kw)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    g_out, = torch.autograd.grad(out.sum(), z)
    g_want, = torch.autograd.grad(want.sum(), z)
    torch.testing.assert_close(g_out, g_want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", CASES)
def test_gradcheck(kw):
    z, y_a, y_b, lam = batch(n=6, c=5)
    w = torch.rand(6, dtype=D)
    assert torch.autograd.gradcheck(
        lambda z: decoupled_mixup_ce(z, y_a, y_b, lam, weight=w, **kw), (z,))


def test_gradcheck_two_classes_rest_empty():
    # C = 2 and a ≠ b: R is empty, φ ≡ 1, the decoupled term is 0 with zero gradient.
    z = torch.randn(4, 2, dtype=D, requires_grad=True)
    y_a, y_b = torch.tensor([0, 1, 0, 1]), torch.tensor([1, 0, 0, 1])
    lam = torch.tensor([0.3, 0.6, 0.5, 1.0], dtype=D)
    assert torch.autograd.gradcheck(lambda z: decoupled_mixup_ce(z, y_a, y_b, lam, eta=1.0), (z,))
    torch.testing.assert_close(decoupled_mixup_ce(z, y_a, y_b, lam, eta=1.0),
                               mixup_ce(z, y_a, y_b, lam))


def test_eta_zero_is_mce():
    z, y_a, y_b, lam = batch()
    for ls in (0.0, 0.2):
        torch.testing.assert_close(
            decoupled_mixup_ce(z, y_a, y_b, lam, eta=0.0, label_smoothing=ls),
            mixup_ce(z, y_a, y_b, lam, label_smoothing=ls))


def test_mce_is_lambda_weighted_ce():
    z, y_a, y_b, lam = batch()
    want = (lam * F.cross_entropy(z, y_a, reduction="none")
            + (1 - lam) * F.cross_entropy(z, y_b, reduction="none")).mean()
    torch.testing.assert_close(mixup_ce(z, y_a, y_b, lam), want)


@pytest.mark.parametrize("scale", ["none", "pow"])
def test_lambda_one_is_ce_on_a(scale):
    z, y_a, y_b, _ = batch()
    y_b = (y_a + 1) % z.shape[1]
    ce_a = F.cross_entropy(z, y_a)
    torch.testing.assert_close(decoupled_mixup_ce(z, y_a, y_b, 1.0, eta=1.0, scale=scale), ce_a)
    torch.testing.assert_close(decoupled_mixup_ce(z, y_b, y_a, 0.0, eta=1.0, scale=scale), ce_a)


def test_same_class_rows_are_plain_ce():
    z, y_a, _, lam = batch()
    torch.testing.assert_close(decoupled_mixup_ce(z, y_a, y_a, lam, eta=3.0, reduction="none"),
                               F.cross_entropy(z, y_a, reduction="none"))


@pytest.mark.parametrize("kw", [dict(eta=0.5), dict(eta=1.0, scale="pow", t=0.7, k=2.0)])
def test_swap_components_same_loss(kw):
    z, y_a, y_b, lam = batch()
    a = decoupled_mixup_ce(z, y_a, y_b, lam, reduction="none", **kw)
    b = decoupled_mixup_ce(z, y_b, y_a, 1 - lam, reduction="none", **kw)
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_eta_attached_to_component_not_class_index():
    # Defect §8.1: with mode="less" only the minority component gets η, whichever class it is.
    z = torch.randn(1, 5, dtype=D)
    low = decoupled_mixup_ce(z, torch.tensor([3]), torch.tensor([1]), 0.2, eta=1.0, mode="less")
    want = ref.dm_ce_row(z[0], [(3, 0.2), (1, 0.8)], 1.0, mode="less")
    torch.testing.assert_close(low, want)
    # the minority component is class 3 here: its decoupled term must be present
    keep = [0, 2, 3, 4]
    mce = mixup_ce(z, torch.tensor([3]), torch.tensor([1]), 0.2)
    torch.testing.assert_close(low - mce, -(z[0, 3] - torch.logsumexp(z[0, keep], 0)))


def test_lambda_half_keeps_decoupled_term():
    z, y_a, y_b, _ = batch()
    y_b = (y_a + 2) % z.shape[1]
    dm = decoupled_mixup_ce(z, y_a, y_b, 0.5, eta=1.0, reduction="none")
    assert bool((dm > mixup_ce(z, y_a, y_b, 0.5, reduction="none") + 1e-6).all())


def test_masked_rows_contribute_zero_and_mean_counts_them():
    z, y_a, y_b, lam = batch()
    n = z.shape[0]
    w = torch.ones(n, dtype=D)
    w[::2] = 0
    out = decoupled_mixup_ce(z, y_a, y_b, lam, eta=1.0, weight=w)
    rows = decoupled_mixup_ce(z, y_a, y_b, lam, eta=1.0, reduction="none")
    torch.testing.assert_close(out, rows[1::2].sum() / n)
    grad, = torch.autograd.grad(out, z)
    assert bool((grad[::2] == 0).all()) and bool((grad[1::2] != 0).any())
    # changing a masked row's logits changes nothing
    z2 = z.detach().clone()
    z2[0] += 100
    torch.testing.assert_close(decoupled_mixup_ce(z2, y_a, y_b, lam, eta=1.0, weight=w),
                               out.detach())


def test_soft_form_equals_index_form_on_two_class_rows():
    z, y_a, y_b, lam = batch()
    c = z.shape[1]
    for ls in (0.0, 0.1):
        target = (1 - ls) * (lam[:, None] * F.one_hot(y_a, c) + (1 - lam[:, None])
                             * F.one_hot(y_b, c)) + ls / c
        for kw in CASES[:4]:
            soft = decoupled_mixup_ce_soft(z, target, label_smoothing=ls, **kw)
            idx = decoupled_mixup_ce(z, y_a, y_b, lam, label_smoothing=ls, **kw)
            torch.testing.assert_close(soft, idx, rtol=1e-12, atol=1e-12)
            g1, = torch.autograd.grad(soft, z)
            g2, = torch.autograd.grad(idx, z)
            torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


def test_soft_form_k3_against_reference_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    n, c = 5, 8
    z = torch.randn(n, c, generator=g, dtype=D, requires_grad=True)
    shares = torch.distributions.Dirichlet(torch.ones(3)).sample((n,)).to(D)
    classes = torch.stack([torch.randperm(c, generator=g)[:3] for _ in range(n)])
    target = torch.zeros(n, c, dtype=D).scatter_(1, classes, shares)
    out = decoupled_mixup_ce_soft(z, target, eta=0.8, scale="pow", reduction="none")
    want = torch.stack([
        ref.dm_ce_row(z[i], list(zip(classes[i].tolist(), shares[i].tolist())), 0.8,
                      scale="pow") for i in range(n)])
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda z: decoupled_mixup_ce_soft(z, target, eta=0.8, mode="less", thr=0.4), (z,))


def test_soft_eta_zero_equals_timm_soft_target_ce():
    timm_loss = pytest.importorskip("timm.loss")
    timm_mixup = pytest.importorskip("timm.data")
    x = torch.randn(8, 3, 16, 16)
    y = torch.arange(8) % 10
    mix = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1,
                           num_classes=10)
    _, target = mix(x, y)
    logits = torch.randn(8, 10, requires_grad=True)
    ours = DecoupledSoftTargetCrossEntropy(eta=0.0, label_smoothing=0.1)(logits, target)
    theirs = timm_loss.SoftTargetCrossEntropy()(logits, target)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0],
                               torch.autograd.grad(theirs, logits)[0])
    dm = DecoupledSoftTargetCrossEntropy(eta=0.1, label_smoothing=0.1)(logits, target)
    assert dm.item() > ours.item()


def test_soft_smoothed_target_without_label_smoothing_is_refused():
    target = torch.full((2, 20), 0.1 / 20)
    target[:, 0] += 0.9
    with pytest.raises(ValueError, match="label_smoothing"):
        decoupled_mixup_ce_soft(torch.randn(2, 20), target)


def test_stable_on_extreme_logits_fp32():
    # A hard mixed sample: p_b ≈ 1 so 1 − p_b underflows in float32.
    z = torch.zeros(3, 100)
    z[:, 1] = 80.0
    z[1, 0] = -300.0
    z[2, 5] = 1e4
    z.requires_grad_()
    y_a, y_b = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    lam = torch.tensor([0.7, 0.5, 0.2])
    out = decoupled_mixup_ce(z, y_a, y_b, lam, eta=1.0, reduction="none")
    want = ref.dm_ce(z.detach().double(), y_a, y_b, lam.double(), 1.0, reduction="none")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-3)
    grad, = torch.autograd.grad(out.sum(), z)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_and_autocast(dtype):
    z, y_a, y_b, lam = batch(n=16, c=50, dtype=torch.float32)
    full = decoupled_mixup_ce(z, y_a, y_b, lam, eta=1.0)
    zl = z.detach().to(dtype).requires_grad_()
    low = decoupled_mixup_ce(zl, y_a, y_b, lam, eta=1.0)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    torch.testing.assert_close(low, full.detach(), rtol=2e-2, atol=2e-2)
    grad, = torch.autograd.grad(low, zl)
    assert grad.dtype == dtype and torch.isfinite(grad).all()
    lin = torch.nn.Linear(50, 50)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = decoupled_mixup_ce(lin(z.detach()), y_a, y_b, lam, eta=1.0)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(lin.weight.grad).all()


def test_module_and_registry_match_function():
    z, y_a, y_b, lam = batch()
    kw = dict(eta=0.3, mode="less", thr=0.4, scale="pow", t=0.9, k=2.0, label_smoothing=0.05)
    want = decoupled_mixup_ce(z, y_a, y_b, lam, **kw)
    torch.testing.assert_close(DecoupledMixupCrossEntropy(**kw)(z, y_a, y_b, lam), want)
    torch.testing.assert_close(build_loss("dm_ce", **kw)(z, y_a, y_b, lam), want)
    with pytest.raises(ValueError, match="loss 'nope'"):
        build_loss("nope")
    with pytest.raises(ValueError, match="dm_ce"):
        build_loss("dm_ce", etaa=1.0)


@pytest.mark.parametrize("fn", [decoupled_mixup_ce, mixup_ce])
def test_scalar_lam_tensor_lam_and_batch_of_one(fn):
    z = torch.randn(1, 4, dtype=D)
    a = fn(z, torch.tensor([0]), torch.tensor([2]), 0.3)
    b = fn(z, torch.tensor([0]), torch.tensor([2]), torch.tensor([0.3], dtype=D))
    c = fn(z, torch.tensor([0]), torch.tensor([2]), torch.tensor(0.3))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


BAD = [
    (dict(logits=torch.randn(4)), "logits"),
    (dict(y_a=torch.zeros(3, dtype=torch.long)), "y_a"),
    (dict(y_b=torch.tensor([0, 1, 2, 9])), "y_b"),
    (dict(y_a=torch.tensor([0, -1, 2, 3])), "y_a"),
    (dict(y_a=torch.zeros(4)), "y_a"),
    (dict(lam=1.5), "lam"),
    (dict(lam=torch.tensor([0.1, 0.2, -0.1, 0.5])), "lam"),
    (dict(lam=torch.rand(3)), "lam"),
    (dict(lam=float("nan")), "lam"),
    (dict(eta=-0.1), "eta"),
    (dict(thr=1.2), "thr"),
    (dict(mode="some"), "mode"),
    (dict(scale="exp"), "scale"),
    (dict(t=0.0), "t"),
    (dict(k=math.inf), "k"),
    (dict(reduction="avg"), "reduction"),
    (dict(weight=torch.ones(3)), "weight"),
    (dict(label_smoothing=1.0), "label_smoothing"),
]


@pytest.mark.parametrize("override,name", BAD)
def test_bad_input_names_the_argument(override, name):
    args = dict(logits=torch.randn(4, 5), y_a=torch.tensor([0, 1, 2, 3]),
                y_b=torch.tensor([1, 1, 4, 0]), lam=0.3)
    args.update(override)
    with pytest.raises(ValueError, match=name):
        decoupled_mixup_ce(**args)


@pytest.mark.parametrize("override,name", [
    (dict(target=torch.rand(4, 6)), "target"),
    (dict(target=-torch.eye(4, 5)), "target"),
    (dict(target=torch.full((4, 5), 0.5)), "target"),
    (dict(eps=2.0), "eps"),
    (dict(mode="x"), "mode"),
])
def test_bad_soft_input_names_the_argument(override, name):
    args = dict(logits=torch.randn(4, 5), target=torch.eye(4, 5))
    args.update(override)
    with pytest.raises(ValueError, match=name):
        decoupled_mixup_ce_soft(**args)
    if "target" not in override:
        with pytest.raises(ValueError, match=name):
            DecoupledSoftTargetCrossEntropy(**{k: v for k, v in override.items()})


def test_soft_form_rows_with_different_numbers_of_components():
    # rows with 3, 2 and 1 mixed classes in one batch: padding classes must stay in R
    c = 6
    z = torch.randn(3, c, dtype=D, requires_grad=True)
    comps = [[(0, 0.5), (2, 0.3), (5, 0.2)], [(1, 0.6), (4, 0.4)], [(3, 1.0)]]
    target = torch.zeros(3, c, dtype=D)
    for i, row in enumerate(comps):
        for cls, s in row:
            target[i, cls] = s
    out = decoupled_mixup_ce_soft(z, target, eta=0.9, reduction="none")
    want = torch.stack([ref.dm_ce_row(z[i], comps[i], 0.9) for i in range(3)])
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda z: decoupled_mixup_ce_soft(z, target, eta=0.9), (z,))

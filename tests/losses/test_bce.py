import pytest
import torch
import torch.nn.functional as F

from dm_ssl.losses import (
    DecoupledMixupBinaryCrossEntropy,
    MixupBinaryCrossEntropy,
    build_loss,
    decoupled_mixup_bce,
    mixup_bce,
)

D = torch.float64


def data(n=10, c=6):
    z = torch.randn(n, c, dtype=D, requires_grad=True)
    y_a = torch.randint(0, c, (n,))
    y_b = torch.randint(0, c, (n,))
    y_b[0] = y_a[0]
    lam = torch.rand(n, dtype=D)
    lam[1] = 0.5
    return z, y_a, y_b, lam


def bce_ref(z, target, class_reduction="sum"):
    rows = []
    for i in range(z.shape[0]):
        p = torch.sigmoid(z[i])
        t = target[i]
        r = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
        rows.append(r.sum() if class_reduction == "sum" else r.mean())
    return torch.stack(rows).mean()


def target_rows(y_a, y_b, w_a, w_b, c):
    t = torch.zeros(len(y_a), c, dtype=D)
    for i in range(len(y_a)):
        t[i, y_a[i]] += w_a[i]
        t[i, y_b[i]] += w_b[i]
    return t.clamp(0, 1)


def test_mbce_one_and_two():
    z, y_a, y_b, lam = data()
    c = z.shape[1]
    one = target_rows(y_a, y_b, lam, 1 - lam, c)
    torch.testing.assert_close(mixup_bce(z, y_a, y_b, lam, mode="one"), bce_ref(z, one))
    two = target_rows(y_a, y_b, torch.ones_like(lam), torch.ones_like(lam), c)
    assert two.max() == 1.0                  # same-class row clamped (spec §8.8)
    torch.testing.assert_close(mixup_bce(z, y_a, y_b, lam, mode="two"), bce_ref(z, two))
    torch.testing.assert_close(mixup_bce(z, y_a, y_b, lam, class_reduction="mean"),
                               bce_ref(z, one, "mean"))


@pytest.mark.parametrize("t,xi", [(1.0, 0.8), (0.5, 1.0), (0.3, 1.5)])
def test_dm_bce_target(t, xi):
    z, y_a, y_b, lam = data()

    def gate(v):
        return torch.where(v >= t, torch.ones_like(v), v / t)

    target = target_rows(y_a, y_b, xi * gate(lam), xi * gate(1 - lam), z.shape[1])
    assert target.max() <= 1.0
    out = decoupled_mixup_bce(z, y_a, y_b, lam, t=t, xi=xi)
    torch.testing.assert_close(out, bce_ref(z, target))
    assert torch.autograd.gradcheck(lambda z: decoupled_mixup_bce(z, y_a, y_b, lam, t=t, xi=xi),
                                    (z,))


def test_dm_bce_half_lambda_interpolation_values_give_two_hot():
    # t = 0.5, ξ = 1: at λ = 0.5 both classes get target 1 (the decoupled two-hot).
    z = torch.zeros(1, 4, dtype=D)
    out = decoupled_mixup_bce(z, torch.tensor([0]), torch.tensor([2]), 0.5, t=0.5, xi=1.0)
    torch.testing.assert_close(out, F.binary_cross_entropy_with_logits(
        z, torch.tensor([[1.0, 0, 1, 0]], dtype=D), reduction="sum"))


def test_target_threshold_weight_and_modules():
    z, y_a, y_b, lam = data()
    w = (torch.arange(len(lam)) % 2).to(D)
    thr_t = (target_rows(y_a, y_b, lam, 1 - lam, z.shape[1]) > 0.4).to(D)
    rows = torch.stack([bce_ref(z[i:i + 1], thr_t[i:i + 1]) for i in range(len(lam))])
    out = mixup_bce(z, y_a, y_b, lam, target_threshold=0.4, weight=w)
    torch.testing.assert_close(out, (rows * w).mean())
    torch.testing.assert_close(
        MixupBinaryCrossEntropy(target_threshold=0.4)(z, y_a, y_b, lam, weight=w), out)
    torch.testing.assert_close(
        DecoupledMixupBinaryCrossEntropy(t=0.5, xi=1.0)(z, y_a, y_b, lam),
        decoupled_mixup_bce(z, y_a, y_b, lam, t=0.5, xi=1.0))
    torch.testing.assert_close(build_loss("mbce", mode="two")(z, y_a, y_b, lam),
                               mixup_bce(z, y_a, y_b, lam, mode="two"))


def test_bf16_logits_computed_in_float32():
    z, y_a, y_b, lam = data(c=30)
    out = decoupled_mixup_bce(z.detach().bfloat16(), y_a, y_b, lam.float())
    assert out.dtype == torch.float32 and torch.isfinite(out)


@pytest.mark.parametrize("fn,override,name", [
    (mixup_bce, dict(mode="three"), "mode"),
    (mixup_bce, dict(target_threshold=1.5), "target_threshold"),
    (mixup_bce, dict(class_reduction="max"), "class_reduction"),
    (mixup_bce, dict(lam=-0.2), "lam"),
    (decoupled_mixup_bce, dict(t=0.0), "t"),
    (decoupled_mixup_bce, dict(xi=-1.0), "xi"),
    (decoupled_mixup_bce, dict(y_b=torch.tensor([0, 1, 2, 5])), "y_b"),
])
def test_bad_input_names_the_argument(fn, override, name):
    args = dict(logits=torch.randn(4, 5), y_a=torch.tensor([0, 1, 2, 3]),
                y_b=torch.tensor([1, 1, 4, 0]), lam=0.3)
    args.update(override)
    with pytest.raises(ValueError, match=name):
        fn(**args)

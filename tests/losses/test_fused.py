"""The fused CPU kernel of DM(CE) / MCE against the composed version, and its fallback."""

import itertools
import warnings

import pytest
import torch

from dm_ssl.losses import _fused, decoupled_mixup_ce, mixup_ce
from dm_ssl.losses._checks import reduce_rows
from dm_ssl.losses.dm_ce import _pair_rows

needs_kernel = pytest.mark.skipif(_fused.load_kernel() is None,
                                  reason="the fused CPU kernel did not build here")

SETTINGS = [
    dict(eta=0.1, mode="both", thr=0.5, scale="none", t=1.0, k=1.0, smoothing=0.0),
    dict(eta=1.0, mode="less", thr=0.4, scale="pow", t=0.7, k=2.0, smoothing=0.1),
    dict(eta=0.5, mode="more", thr=0.5, scale="pow", t=1.0, k=1.0, smoothing=0.0),
]


def _batch(n, c, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g, dtype=dtype) * 5).requires_grad_()
    y_a = torch.randint(c, (n,), generator=g)
    y_b = torch.randint(c, (n,), generator=g)
    y_b[:3] = y_a[:3]                                      # same-class rows
    lam = torch.rand(n, generator=g, dtype=dtype)
    lam[3], lam[4], lam[5] = 0.0, 1.0, 0.5
    return z, y_a, y_b, lam


@needs_kernel
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("n,c", [(448, 100), (37, 3), (16, 2), (9, 1), (64, 1000)])
def test_kernel_equals_the_composed_version(dtype, tol, n, c):
    z, y_a, y_b, lam = _batch(n, c, dtype)
    weight = torch.rand(n, dtype=dtype)
    for kw, reduction, w in itertools.product(SETTINGS, ("none", "mean", "sum"), (None, weight)):
        ref = reduce_rows(_pair_rows(z, y_a, y_b, lam, **{k: kw[k] for k in (
            "eta", "mode", "thr", "scale", "t", "k", "smoothing")}), w, reduction)
        out = _fused.fused_pair_loss(z, y_a, y_b, lam, w, kw["eta"], kw["mode"], kw["thr"],
                                     kw["scale"], kw["t"], kw["k"], kw["smoothing"], reduction)
        assert out.shape == ref.shape
        up = torch.randn(ref.shape, dtype=dtype)
        (g_ref,) = torch.autograd.grad((ref * up).sum(), z)
        (g_out,) = torch.autograd.grad((out * up).sum(), z)
        scale = 1.0 + ref.detach().abs().max()
        assert torch.allclose(out, ref, rtol=0, atol=tol * scale), (kw, reduction)
        assert torch.allclose(g_out, g_ref, rtol=0, atol=tol), (kw, reduction)


@needs_kernel
def test_hard_mixed_rows_stay_finite_in_float32():
    """z_a ≫ every other logit: exp(z_R − z_a) underflows, the kernel's lse_R must not."""
    z = torch.zeros(4, 10)
    z[:, 0] = 120.0
    z.requires_grad_()
    y_a, y_b = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    loss = decoupled_mixup_ce(z, y_a, y_b, torch.full((4,), 0.3), eta=1.0)
    loss.backward()
    with _fused.fused_cpu(False):
        z64 = z.detach().double().requires_grad_()
        ref = decoupled_mixup_ce(z64, y_a, y_b, torch.full((4,), 0.3, dtype=torch.float64),
                                 eta=1.0)
        ref.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(z.grad.double(), z64.grad, atol=1e-6)


@pytest.fixture
def rebuild(monkeypatch):
    """Forget the loaded kernel for one test (and again afterwards: the next load is a cache
    hit on disk)."""
    _fused.load_kernel.cache_clear()
    yield monkeypatch
    _fused.load_kernel.cache_clear()


def _no_compiler(*args, **kwargs):
    raise OSError("no C++ compiler")


def test_a_failed_build_warns_once_and_the_composed_version_runs(rebuild):
    import torch.utils.cpp_extension as ext

    rebuild.setattr(ext, "load_inline", _no_compiler)
    rebuild.setenv("DM_SSL_FUSED_CPU", "auto")
    z, y_a, y_b, lam = _batch(12, 5, torch.float32)
    with pytest.warns(RuntimeWarning, match="did not build.*no C\\+\\+ compiler"):
        loss = decoupled_mixup_ce(z, y_a, y_b, lam)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # once: the next calls are silent
        loss2 = mixup_ce(z, y_a, y_b, lam)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(loss2) and z.grad is not None


def test_required_kernel_that_does_not_build_is_an_error(rebuild):
    import torch.utils.cpp_extension as ext

    rebuild.setattr(ext, "load_inline", _no_compiler)
    rebuild.setenv("DM_SSL_FUSED_CPU", "1")
    z, y_a, y_b, lam = _batch(12, 5, torch.float32)
    with pytest.raises(RuntimeError, match="DM_SSL_FUSED_CPU=1"):
        decoupled_mixup_ce(z, y_a, y_b, lam)


def test_switched_off_kernel_is_never_built(rebuild):
    import torch.utils.cpp_extension as ext

    rebuild.setattr(ext, "load_inline", _no_compiler)      # would raise if it were called
    rebuild.setenv("DM_SSL_FUSED_CPU", "0")
    assert _fused.load_kernel() is None
    z, y_a, y_b, lam = _batch(12, 5, torch.float32)
    assert torch.isfinite(decoupled_mixup_ce(z, y_a, y_b, lam))

"""The contract every input mixer shares (spec §5): true share, pairing, seeds, dtypes, errors."""

import pytest
import torch
from torch import nn

from dm_ssl.mixers import (
    MIXERS,
    CutMix,
    FMix,
    ManifoldMix,
    Mixer,
    MixResult,
    Mixup,
    ResizeMix,
    SaliencyMix,
    build_mixer,
    register_mixer,
)

INPUT_MIXERS = ["mixup", "cutmix", "saliencymix", "fmix", "resizemix"]
PASTE_MIXERS = ["cutmix", "saliencymix", "fmix", "resizemix"]
N, C, H, W = 6, 3, 16, 16


def zeros_ones(n=N, dtype=torch.float32, device="cpu", one=1):
    x_a = torch.zeros(n, C, H, W, dtype=dtype, device=device)
    y = torch.arange(n, device=device)
    return x_a, y, torch.full_like(x_a, one), y + 100


def share_of_a(mixed, one=1.0):
    """Pixel share of component a when a is all 0 and b all ``one``."""
    return 1 - mixed.double().mean(dim=(1, 2, 3)) / one


LAMS = {
    "0": dict(lam=0.0),
    "0.5": dict(lam=0.5),
    "1": dict(lam=1.0),
    "0.3": dict(lam=0.3),
    "tensor0d": dict(lam=torch.tensor(0.8)),
    "per_sample": dict(lam=torch.tensor([0.0, 0.1, 0.45, 0.5, 0.93, 1.0])),
    "alpha": dict(),
}


@pytest.mark.parametrize("name", INPUT_MIXERS)
@pytest.mark.parametrize("lam_case", list(LAMS))
@pytest.mark.parametrize("kw", [dict(alpha=1.0), dict(alpha=0.2, per_sample=True)],
                         ids=["batch", "per_sample"])
def test_lam_is_the_true_share_of_a(name, lam_case, kw):
    x_a, y, x_b, y_b = zeros_ones()
    res = build_mixer(name, **kw)(x_a, y, x_b=x_b, y_b=y_b, **LAMS[lam_case],
                                  generator=torch.Generator().manual_seed(0))
    assert res.lam.shape == (N,) and res.lam.dtype == torch.float32
    torch.testing.assert_close(res.lam.double(), share_of_a(res.x), atol=1e-6, rtol=0)
    if name == "mixup" and "lam" in LAMS[lam_case]:
        expected = torch.as_tensor(LAMS[lam_case]["lam"], dtype=torch.float32).expand(N)
        assert torch.equal(res.lam, expected)


@pytest.mark.parametrize("name", INPUT_MIXERS)
def test_true_share_with_a_permutation(name):
    # rows 0..2 are 0 and pair with rows 3..5, which are 1, and vice versa
    x = torch.cat([torch.zeros(3, C, H, W), torch.ones(3, C, H, W)])
    index = torch.tensor([3, 4, 5, 0, 1, 2])
    lam = torch.tensor([0.2, 0.5, 0.9, 0.3, 0.6, 1.0])
    res = build_mixer(name)(x, torch.arange(6), index=index, lam=lam,
                            generator=torch.Generator().manual_seed(1))
    frac_ones = res.x.double().mean(dim=(1, 2, 3))
    measured = torch.cat([1 - frac_ones[:3], frac_ones[3:]])
    torch.testing.assert_close(res.lam.double(), measured, atol=1e-6, rtol=0)
    assert torch.equal(res.index, index)


@pytest.mark.parametrize("name", PASTE_MIXERS)
def test_extreme_lam(name):
    x_a, y, x_b, y_b = zeros_ones()
    res1 = build_mixer(name)(x_a, y, x_b=x_b, y_b=y_b, lam=1.0)
    if name != "resizemix":  # ResizeMix pastes at least scope[0]: λ=1 still pastes 1 px
        assert torch.equal(res1.x, x_a) and torch.equal(res1.lam, torch.ones(N))
    if name == "fmix":  # FMix is the only pasting mixer that can replace everything
        res0 = build_mixer(name)(x_a, y, x_b=x_b, y_b=y_b, lam=0.0)
        assert torch.equal(res0.x, x_b) and torch.equal(res0.lam, torch.zeros(N))


@pytest.mark.parametrize("name", INPUT_MIXERS)
def test_same_seed_same_result_different_seed_different(name):
    x, y = torch.randn(8, C, H, W), torch.arange(8)
    mixer = build_mixer(name, per_sample=True)
    r1 = mixer(x, y, generator=torch.Generator().manual_seed(5))
    r2 = mixer(x, y, generator=torch.Generator().manual_seed(5))
    r3 = mixer(x, y, generator=torch.Generator().manual_seed(6))
    for field in ("x", "y_a", "y_b", "lam", "index"):
        assert torch.equal(getattr(r1, field), getattr(r2, field)), field
    assert not torch.equal(r1.x, r3.x)
    assert not torch.equal(r1.lam, r3.lam)


@pytest.mark.parametrize("name", INPUT_MIXERS)
def test_global_rng_without_generator(name):
    x, y = torch.randn(4, C, H, W), torch.arange(4)
    torch.manual_seed(123)
    r1 = build_mixer(name)(x, y)
    torch.manual_seed(123)
    r2 = build_mixer(name)(x, y)
    assert torch.equal(r1.x, r2.x) and torch.equal(r1.lam, r2.lam)


@pytest.mark.parametrize("name", INPUT_MIXERS)
def test_labels_follow_the_pairing(name):
    x, y = torch.randn(N, C, H, W), torch.tensor([3, 1, 4, 1, 5, 9])
    mixer = build_mixer(name)
    res = mixer(x, y, generator=torch.Generator().manual_seed(0))
    assert res.y_a is y
    assert torch.equal(torch.sort(res.index).values, torch.arange(N))
    assert torch.equal(res.y_b, y[res.index])
    index = torch.tensor([5, 4, 3, 2, 1, 0])
    res = mixer(x, y, index=index)
    assert torch.equal(res.y_b, y[index]) and torch.equal(res.index, index)
    y_soft = torch.rand(N, 10)  # soft / one-hot labels are paired the same way
    res = mixer(x, y_soft, index=index)
    assert torch.equal(res.y_b, y_soft[index])
    x_b, y_b = torch.randn(N, C, H, W), torch.arange(N) + 50
    res = mixer(x, y, x_b=x_b, y_b=y_b)
    assert res.y_a is y and res.y_b is y_b and res.index is None


@pytest.mark.parametrize("name", INPUT_MIXERS)
def test_bias_to_a_gives_a_the_larger_share(name):
    x_a, y, x_b, y_b = zeros_ones(n=64)
    mixer = build_mixer(name, alpha=1.0, per_sample=True, bias_to_a=True)
    for seed in range(3):
        res = mixer(x_a, y, x_b=x_b, y_b=y_b, generator=torch.Generator().manual_seed(seed))
        assert (res.lam >= 0.5).all()
        assert (share_of_a(res.x) >= 0.5 - 1e-6).all()
    res = mixer(x_a[:3], y[:3], x_b=x_b[:3], y_b=y_b[:3], lam=torch.tensor([0.1, 0.5, 0.7]))
    assert (res.lam >= 0.5).all()


@pytest.mark.parametrize("name,dtype", [
    *[(n, d) for n in INPUT_MIXERS
      for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16)],
    *[(n, torch.uint8) for n in PASTE_MIXERS],
])
def test_dtype_device_shape_preserved(name, dtype, device):
    one = 255 if dtype == torch.uint8 else 1
    x_a, y, x_b, y_b = zeros_ones(dtype=dtype, device=device, one=one)
    g = torch.Generator(device=device).manual_seed(0)
    res = build_mixer(name, per_sample=True)(x_a, y, x_b=x_b, y_b=y_b, generator=g)
    assert res.x.dtype == dtype and res.x.shape == x_a.shape
    assert res.x.device.type == device.type and res.lam.device.type == device.type
    assert res.lam.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    tol = 1e-6 if name != "mixup" or dtype in (torch.float32, torch.float64) else 1e-2
    torch.testing.assert_close(res.lam.double(), share_of_a(res.x, one), atol=tol, rtol=0)


def test_result_forward_calls_the_model():
    res = build_mixer("cutmix")(torch.randn(4, C, H, W), torch.arange(4))
    assert res.hook is None
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 2))
    assert torch.equal(res.forward(model), model(res.x))


def test_registry():
    assert set(MIXERS) >= {"mixup", "cutmix", "saliencymix", "fmix", "resizemix", "manifoldmix"}
    classes = {"mixup": Mixup, "cutmix": CutMix, "saliencymix": SaliencyMix, "fmix": FMix,
               "resizemix": ResizeMix, "manifoldmix": ManifoldMix}
    for name, cls in classes.items():
        mixer = build_mixer(name.upper(), alpha=0.2)
        assert type(mixer) is cls and mixer.name == name and mixer.alpha == 0.2
    assert build_mixer("fmix", decay_power=2).decay_power == 2.0
    with pytest.raises(ValueError, match="unknown mixer 'foo'.*cutmix"):
        build_mixer("foo")
    with pytest.raises(ValueError, match="mixer 'fmix'.*scope"):
        build_mixer("fmix", scope=(0.1, 0.8))
    with pytest.raises(ValueError, match="already registered"):
        register_mixer("cutmix")(CutMix)


def test_dynamic_mixer_extension_point():
    class Dummy(Mixer):
        needs_model = True

        def mix(self, x_a, x_b, lam, *, generator=None):
            raise AssertionError("not used")

        def mix_batch(self, x, y, pair, lam, *, generator, model):
            return MixResult(x=x, y_a=y, y_b=pair.y_b, lam=lam.float(), index=pair.index,
                             layer=type(model).__name__)

    model = nn.Identity()
    with pytest.raises(ValueError, match="model"):
        Dummy()(torch.randn(2, 1, 4, 4), torch.arange(2))
    res = Dummy()(torch.randn(2, 1, 4, 4), torch.arange(2), lam=0.3, model=model)
    assert res.layer == "Identity" and torch.allclose(res.lam, torch.full((2,), 0.3))


# --- bad input: one ValueError that names the offending argument -------------------------------

X, Y = torch.randn(4, C, H, W), torch.arange(4)


@pytest.mark.parametrize("name", INPUT_MIXERS)
@pytest.mark.parametrize("kwargs,match", [
    (dict(lam=1.5), r"lam must be in \[0, 1\]"),
    (dict(lam=-0.1), r"lam must be in \[0, 1\]"),
    (dict(lam=float("nan")), r"lam must be in \[0, 1\]"),
    (dict(lam=torch.tensor([0.5, 0.5])), "lam must be a float or a tensor of shape"),
    (dict(lam="0.5"), "lam must be a float"),
    (dict(index=torch.tensor([0, 0, 1, 2])), "index must be a permutation of length N=4"),
    (dict(index=torch.tensor([0, 1, 2])), "index must be a permutation of length N=4"),
    (dict(index=torch.tensor([0.0, 1.0, 2.0, 3.0])), "index must be a permutation"),
    (dict(x_b=torch.randn(4, C, H, W + 1), y_b=Y), "x_b shape .* does not match x"),
    (dict(x_b=X.double(), y_b=Y), "x_b .* does not match x"),
    (dict(x_b=X, y_b=torch.arange(3)), "y_b shape .* does not match y"),
    (dict(x_b=X), "x_b and y_b must be given together"),
    (dict(y_b=Y), "x_b and y_b must be given together"),
    (dict(index=torch.arange(4), x_b=X, y_b=Y), "either index or x_b"),
    (dict(generator=0), "generator must be a torch.Generator"),
])
def test_bad_call_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_mixer(name)(X, Y, **kwargs)


@pytest.mark.parametrize("name", INPUT_MIXERS)
def test_bad_x_and_y(name):
    with pytest.raises(ValueError, match="y length must equal N=4"):
        build_mixer(name)(X, torch.arange(5))
    with pytest.raises(ValueError, match="y length"):
        build_mixer(name)(X, torch.tensor(1))
    with pytest.raises(ValueError, match="x must be a non-empty batch"):
        build_mixer(name)(X[:0], Y[:0])
    if name != "mixup":
        with pytest.raises(ValueError, match=r"x must be 4-D \(N, C, H, W\)"):
            build_mixer(name)(X[0], Y[:3])
    else:
        with pytest.raises(ValueError, match="x must be a floating-point tensor"):
            build_mixer(name)(X.to(torch.uint8), Y)


@pytest.mark.parametrize("name", INPUT_MIXERS)
def test_bad_hyper_parameters(name):
    for alpha in (0, -1.0, float("inf"), "1"):
        with pytest.raises(ValueError, match="alpha must be > 0"):
            build_mixer(name, alpha=alpha)
    with pytest.raises(ValueError, match="bias_to_a must be a bool"):
        build_mixer(name, bias_to_a=1)
    with pytest.raises(ValueError, match="per_sample must be a bool"):
        build_mixer(name, per_sample="yes")
    # alpha=None is allowed, but then every call must pass lam
    mixer = build_mixer(name, alpha=None)
    with pytest.raises(ValueError, match="pass lam=.*exactly one of lam or alpha"):
        mixer(X, Y)
    assert mixer(X, Y, lam=0.5).lam.shape == (4,)


def test_bad_mixer_specific_hyper_parameters():
    with pytest.raises(ValueError, match="decay_power must be > 0"):
        FMix(decay_power=0)
    for scope in ((0.0, 0.5), (0.8, 0.1), (0.1, 1.5), (0.1,), "ab"):
        with pytest.raises(ValueError, match="scope must be"):
            ResizeMix(scope=scope)
    for size in (0, 2.5, True):
        with pytest.raises(ValueError, match="saliency_size must be"):
            SaliencyMix(saliency_size=size)
    for layers in ((), ("layer1", 3), [""]):
        with pytest.raises(ValueError, match="layers must be"):
            ManifoldMix(layers=layers)

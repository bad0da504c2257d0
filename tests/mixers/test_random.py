import torch

from dm_ssl.mixers import _random


def test_beta_is_reproducible_under_a_generator():
    a = _random.beta(1.0, 16, generator=torch.Generator().manual_seed(3))
    b = _random.beta(1.0, 16, generator=torch.Generator().manual_seed(3))
    c = _random.beta(1.0, 16, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.float64 and a.shape == (16,)


def test_beta_uses_global_rng_without_generator():
    torch.manual_seed(11)
    a = _random.beta(0.5, 8)
    torch.manual_seed(11)
    b = _random.beta(0.5, 8)
    assert torch.equal(a, b)


def test_beta_moments():
    # Beta(α, α): mean 1/2, variance 1 / (4 (2α + 1))
    for alpha in (0.2, 2.0):
        d = _random.beta(alpha, 200_000, generator=torch.Generator().manual_seed(0))
        assert abs(d.mean().item() - 0.5) < 5e-3
        assert abs(d.var().item() - 1 / (4 * (2 * alpha + 1))) < 5e-3
        assert d.min() >= 0 and d.max() <= 1


def test_draws_land_on_requested_device(device):
    g = torch.Generator(device=device).manual_seed(0)
    assert _random.rand(3, generator=g, device=device).device.type == device.type
    assert _random.randint(5, 3, generator=g, device=device).device.type == device.type
    assert _random.randperm(5, generator=g, device=device).device.type == device.type
    assert _random.beta(1.0, 3, generator=g, device=device).device.type == device.type
    # a CPU generator can feed a tensor on any device
    cpu_g = torch.Generator().manual_seed(0)
    assert _random.randn(3, generator=cpu_g, device=device).device.type == device.type

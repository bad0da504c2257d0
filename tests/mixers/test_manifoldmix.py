import pytest
import torch
import torchvision
from torch import nn

from dm_ssl.mixers import ManifoldMix, build_mixer, detect_layers, manifold_mixing

D = torch.float64


class ToyResNet(nn.Module):
    """torchvision/timm ResNet layout: conv1, bn1, layer1..layer3, fc."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.bn1(self.conv1(x)))))
        return self.fc(self.pool(x).flatten(1))


class ToyWRN(nn.Module):
    """USB's WideResNet layout (conv1, block1..block3, bn, relu, fc) and its dict output."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.block1 = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.block2 = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1))
        self.block3 = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 5)

    def forward(self, x, only_feat=False):
        x = self.relu(self.bn(self.block3(self.block2(self.block1(self.conv1(x))))))
        feat = x.mean((2, 3))
        return feat if only_feat else {"logits": self.fc(feat), "feat": feat}


def record(model, run):
    """Every submodule's outputs, in call order, while ``run()`` executes."""
    calls = []
    handles = [m.register_forward_hook(lambda mod, i, o, name=name: calls.append((name, o)))
               for name, m in model.named_modules() if name]
    try:
        out = run()
    finally:
        for h in handles:
            h.remove()
    return calls, out


def logits(out):
    return out["logits"] if isinstance(out, dict) else out


def no_hooks_left(model):
    return all(not m._forward_hooks for m in model.modules())


def check_mixing(model, x, res):
    """The chosen layer's output is λh + (1−λ)h[index] of the unmixed run, earlier modules
    are untouched, later ones see the mixed features, and nothing leaks afterwards."""
    clean_calls, clean_out = record(model, lambda: model(x))
    mixed_calls, mixed_out = record(model, lambda: res.forward(model))
    names = [n for n, _ in clean_calls]
    assert names == [n for n, _ in mixed_calls]
    pos = names.index(res.layer)
    for (name, clean), (_, mixed) in zip(clean_calls[:pos], mixed_calls[:pos]):
        assert torch.equal(clean, mixed), f"{name} runs before {res.layer} but changed"
    h = clean_calls[pos][1]
    lam = res.lam.view(-1, *([1] * (h.dim() - 1)))
    torch.testing.assert_close(mixed_calls[pos][1], lam * h + (1 - lam) * h[res.index],
                               rtol=0, atol=1e-12)
    assert not torch.allclose(logits(mixed_out), logits(clean_out))
    assert no_hooks_left(model)
    assert torch.equal(logits(model(x)), logits(clean_out))  # no leaked hook


@pytest.mark.parametrize("per_sample", [False, True])
def test_toy_resnet_every_layer_can_be_chosen(per_sample):
    torch.manual_seed(0)
    model, x = ToyResNet().double(), torch.randn(6, 3, 8, 8, dtype=D)
    mixer = ManifoldMix(layers=("layer1", "layer2", "layer3"), per_sample=per_sample)
    chosen = set()
    for seed in range(12):
        res = mixer(x, torch.arange(6), model=model, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(res.x, x) and res.lam.dtype == D
        check_mixing(model, x, res)
        chosen.add(res.layer)
    assert chosen == {"layer1", "layer2", "layer3"}


def test_wrn_like_auto_detection_and_dict_output():
    torch.manual_seed(0)
    model, x = ToyWRN().double(), torch.randn(5, 3, 8, 8, dtype=D)
    assert detect_layers(model) == ("block1", "block2")
    res = build_mixer("manifoldmix")(x, torch.arange(5), model=model,
                                     generator=torch.Generator().manual_seed(0))
    assert res.layer in ("block1", "block2")
    check_mixing(model, x, res)
    feat = res.forward(model, only_feat=True)  # extra arguments reach the model
    assert feat.shape == (5, 8) and no_hooks_left(model)


def test_explicit_second_batch_returns_n_rows():
    torch.manual_seed(0)
    model = ToyWRN().double()
    x, x_b = torch.randn(4, 3, 8, 8, dtype=D), torch.randn(4, 3, 8, 8, dtype=D)
    y, y_b = torch.arange(4), torch.arange(4) + 10
    lam = torch.tensor([0.2, 0.5, 0.7, 1.0], dtype=D)
    res = ManifoldMix(layers=("block2",))(x, y, x_b=x_b, y_b=y_b, lam=lam, model=model)
    assert res.index is None and res.y_b is y_b and res.layer == "block2"
    both = torch.cat([x, x_b])
    assert torch.equal(res.x, both)
    clean_calls, _ = record(model, lambda: model(both))
    mixed_calls, out = record(model, lambda: res.forward(model))
    assert out["logits"].shape == (4, 5)
    h = dict(clean_calls)["block2"]
    torch.testing.assert_close(dict(mixed_calls)["block2"],
                               lam.view(-1, 1, 1, 1) * h[:4] + (1 - lam.view(-1, 1, 1, 1)) * h[4:],
                               rtol=0, atol=1e-12)
    assert torch.equal(dict(mixed_calls)["block1"], dict(clean_calls)["block1"])
    assert no_hooks_left(model)


def test_torchvision_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(4, 3, 32, 32)
    assert detect_layers(model) == ("layer1", "layer2")
    mixer = ManifoldMix(alpha=2.0, per_sample=True)
    for seed in (0, 1, 2):
        res = mixer(x, torch.arange(4), model=model, generator=torch.Generator().manual_seed(seed))
        clean, _ = record(model, lambda: model(x))
        mixed, out = record(model, lambda res=res: res.forward(model))
        pos = [n for n, _ in clean].index(res.layer)
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(clean[:pos], mixed[:pos]))
        h, lam = clean[pos][1], res.lam.view(-1, 1, 1, 1)
        torch.testing.assert_close(mixed[pos][1], lam * h + (1 - lam) * h[res.index])
        assert out.shape == (4, 10) and no_hooks_left(model)


def test_same_seed_same_draws():
    model, x = ToyResNet(), torch.randn(8, 3, 8, 8)
    mixer = ManifoldMix(layers=("layer1", "layer2", "layer3"), per_sample=True)
    r1, r2 = (mixer(x, torch.arange(8), model=model, generator=torch.Generator().manual_seed(3))
              for _ in range(2))
    assert r1.layer == r2.layer and torch.equal(r1.lam, r2.lam) and torch.equal(r1.index, r2.index)
    assert torch.equal(r1.forward(model), r2.forward(model))
    r3 = mixer(x, torch.arange(8), model=model, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(r1.lam, r3.lam)


def test_hook_is_removed_when_the_forward_fails():
    model = ToyResNet()
    res = ManifoldMix()(torch.randn(2, 3, 8, 8), torch.arange(2), model=model)
    res.x = torch.randn(2, 5, 8, 8)  # wrong channel count: conv1 raises
    with pytest.raises(RuntimeError):
        res.forward(model)
    assert no_hooks_left(model)


def test_unwraps_data_parallel():
    model = ToyResNet()
    wrapped = nn.DataParallel(model)
    assert detect_layers(wrapped) == ("layer1", "layer2")
    x = torch.randn(3, 3, 8, 8)
    with manifold_mixing(wrapped, "layer1", torch.full((3,), 0.5), torch.tensor([2, 0, 1])):
        out = wrapped(x)
    assert out.shape == (3, 5) and no_hooks_left(model)


def test_errors():
    x, y = torch.randn(2, 3, 8, 8), torch.arange(2)
    with pytest.raises(ValueError, match="model"):
        ManifoldMix()(x, y)
    with pytest.raises(ValueError, match="layers: the model has no submodule 'layer9'"):
        ManifoldMix(layers=("layer1", "layer9"))(x, y, model=ToyResNet())
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 2))
    with pytest.raises(ValueError, match="pass layers="):
        ManifoldMix()(x, y, model=flat)
    # a layer the forward never calls would silently leave the batch unmixed
    model = ToyResNet()
    model.unused = nn.Identity()
    res = ManifoldMix(layers=("unused",))(x, y, model=model)
    with pytest.raises(RuntimeError, match="did not run"):
        res.forward(model)
    assert no_hooks_left(model)


def test_explicit_layers_on_any_model():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.randn(5, 6, dtype=D)
    model = model.double()
    res = ManifoldMix(layers=("0",))(x, torch.arange(5), model=model,
                                      generator=torch.Generator().manual_seed(0))
    h = model[0](x)
    lam = res.lam.view(-1, 1)
    expected = model[2](model[1](lam * h + (1 - lam) * h[res.index]))
    torch.testing.assert_close(res.forward(model), expected, rtol=0, atol=1e-12)

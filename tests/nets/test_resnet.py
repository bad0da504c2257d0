import argparse
import hashlib
import io
import os

import pytest
import torch
import torchvision
from torch import nn

from dm_ssl.mixers import ManifoldMix, detect_layers
from dm_ssl.nets import NETS, get_net_builder
from dm_ssl.nets import resnet as resnet_mod
from dm_ssl.nets.resnet import (
    ResNet,
    head_lr_groups,
    load_pretrained,
    resnet18,
    resnet50,
)

ARCHS = {  # config name -> (torchvision arch, num_features, CIFAR stem)
    "resnet18": ("resnet18", 512, False),
    "resnet50": ("resnet50", 2048, False),
    "resnext50_32x4d": ("resnext50_32x4d", 2048, False),
    "cifar_resnet18": ("resnet18", 512, True),
    "cifar_resnext50": ("resnext50_32x4d", 2048, True),
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download from anywhere but the loopback server fails the test."""
    real = torch.hub.download_url_to_file

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    def loopback_only(url, *args, **kwargs):
        if not url.startswith("http://127.0.0.1:"):
            raise AssertionError(f"tried to download {url}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", loopback_only)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub dir and Hugging Face cache, offline (a test downloads only from the
    loopback server, with HF_HUB_OFFLINE removed)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def trunk_equal(model, reference):
    """Every trunk tensor of ``model`` equals ``reference``'s (a torchvision-format module)."""
    ref = reference.state_dict()
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    assert set(own) == set(ref) - {"fc.weight", "fc.bias"}
    return all(torch.equal(v, ref[k]) for k, v in own.items())


def random_tv(arch="resnet18"):
    """A torchvision model with random weights and running stats (so loading is visible)."""
    torch.manual_seed(123)
    model = getattr(torchvision.models, arch)(weights=None)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(7)
    return model


# -- forward interface -------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ARCHS))
def test_forward_interface(name):
    arch, nf, cifar = ARCHS[name]
    model = NETS[name](num_classes=7).eval()
    assert isinstance(model, ResNet) and model.arch == arch and model.cifar_stem == cifar
    assert model.num_features == nf
    assert isinstance(model.classifier, nn.Linear)
    assert (model.classifier.in_features, model.classifier.out_features) == (nf, 7)
    assert all(isinstance(getattr(model, f"layer{i}"), nn.Sequential) for i in range(1, 5))
    assert detect_layers(model) == ("layer1", "layer2")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert set(out) == {"logits", "feat"}
        assert out["logits"].shape == (2, 7) and out["feat"].shape == (2, nf)
        feat = model(x, only_feat=True)
        torch.testing.assert_close(feat, out["feat"])
        torch.testing.assert_close(model(feat, only_fc=True), out["logits"])
        torch.testing.assert_close(model.classifier(out["feat"]), out["logits"])


@pytest.mark.parametrize("name,size,stem_hw,layer4_hw", [
    ("cifar_resnet18", 32, 32, 4), ("cifar_resnext50", 32, 32, 4),
    ("resnet18", 64, 16, 2), ("cifar_resnet18", 64, 64, 8)])
def test_stem_resolution(name, size, stem_hw, layer4_hw):
    model = NETS[name](num_classes=3).eval()
    seen = {}
    for n in ("maxpool", "layer1", "layer4"):
        getattr(model, n).register_forward_hook(
            lambda m, i, o, n=n: seen.__setitem__(n, tuple(o.shape[-2:])))
    with torch.no_grad():
        model(torch.randn(2, 3, size, size))
    assert seen == {"maxpool": (stem_hw,) * 2, "layer1": (stem_hw,) * 2,
                    "layer4": (layer4_hw,) * 2}
    if name.startswith("cifar"):
        assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
        assert isinstance(model.maxpool, nn.Identity)
    else:
        assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)


def test_in_channels_and_get_net_builder():
    builder = get_net_builder("cifar_resnet18", in_channels=1)
    model = builder(num_classes=4)
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32))["logits"].shape == (2, 4)
    # dm_ssl's resnet50 takes precedence over semilearn's (NETS is looked up first)
    model = get_net_builder("resnet50")(num_classes=5, pretrained=False, pretrained_path=None)
    assert isinstance(model, ResNet) and model.arch == "resnet50"
    assert resnet18(num_classes=3, in_channels=2).conv1.weight.shape == (64, 2, 7, 7)


def test_superset_of_semilearn_resnet50():
    from semilearn.nets.resnet.resnet import ResNet50

    theirs, ours = ResNet50(num_classes=6), resnet50(num_classes=6)
    # same parameter names: semilearn checkpoints of resnet50 load into dm_ssl's strictly
    ours.load_state_dict(theirs.state_dict(), strict=True)
    public = {n for n in dir(theirs) if not n.startswith("_")} - set(dir(nn.Module))
    assert public <= set(dir(ours)), public - set(dir(ours))
    assert set(theirs.no_weight_decay()) <= ours.no_weight_decay()
    assert "layer1.0.downsample.1.weight" in ours.no_weight_decay()  # semilearn's rule misses it
    for coarse in (False, True):
        assert ours.group_matcher(coarse, "p.") == theirs.group_matcher(coarse, "p.")
    x = torch.randn(2, 3, 32, 32)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["logits"], theirs(x)["logits"])
        torch.testing.assert_close(ours.extract(x), theirs.extract(x))


# -- pretrained weights ------------------------------------------------------------------------

def test_load_torchvision_state_dict(tmp_path):
    ref = random_tv("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    model = resnet18(num_classes=11, pretrained=True, pretrained_path=str(path))
    assert trunk_equal(model, ref)
    assert model.classifier.out_features == 11
    fresh = resnet18(num_classes=11)
    assert not trunk_equal(fresh, ref)  # the check above can fail
    ref.eval(), model.eval()
    with torch.no_grad():  # same trunk -> same features
        x = torch.randn(2, 3, 64, 64)
        feat_ref = torch.flatten(ref.avgpool(ref.layer4(ref.layer3(ref.layer2(ref.layer1(
            ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))), 1)
        torch.testing.assert_close(model(x, only_feat=True), feat_ref)


def test_load_report_and_wrapped_formats(tmp_path):
    ref = random_tv("resnet18")
    sd = ref.state_dict()
    files = {
        "module": {f"module.{k}": v for k, v in sd.items()},
        "state_dict": {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
        "model": {"model": dict(sd), "it": 10, "ema_model": dict(sd)},
        "with_mix_head": {**{f"backbone.{k}": v for k, v in sd.items()},
                          "mix_head.weight": torch.zeros(3, 512)},
    }
    for name, obj in files.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        model = resnet18(num_classes=3)
        report = load_pretrained(model, str(path))
        assert trunk_equal(model, ref), name
        assert set(report.missing) == {"classifier.weight", "classifier.bias"}, name
        assert any(k.endswith("fc.weight") for k in report.dropped), name
        assert len(report.loaded) == len(sd) - 2, name


def test_load_timm_state_dict(tmp_path, hub_dir):
    timm = pytest.importorskip("timm")

    torch.manual_seed(5)
    ref = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    path = tmp_path / "timm_r18.pth"
    torch.save(ref.state_dict(), path)
    model = resnet18(num_classes=4, pretrained=True, pretrained_path=str(path))
    assert trunk_equal(model, ref)


def test_other_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(random_tv("resnet18").state_dict(), path)
    with pytest.raises(ValueError, match=r"does not fit resnet50.*shape mismatches.*layer1\.0"):
        resnet50(num_classes=3, pretrained=True, pretrained_path=str(path))
    # an ImageNet stem does not fit the CIFAR stem
    stem = r"CIFAR stem.*conv1\.weight \(file \(64, 3, 7, 7\), net \(64, 3, 3, 3\)\)"
    with pytest.raises(ValueError, match=stem):
        NETS["cifar_resnet18"](num_classes=3, pretrained=True, pretrained_path=str(path))
    not_resnet = tmp_path / "mlp.pth"
    torch.save(nn.Sequential(nn.Linear(2, 2)).state_dict(), not_resnet)
    with pytest.raises(ValueError, match="no ResNet trunk"):
        resnet18(num_classes=3, pretrained=True, pretrained_path=str(not_resnet))
    with pytest.raises(FileNotFoundError, match="is not a file"):
        resnet18(num_classes=3, pretrained=True, pretrained_path=str(tmp_path / "nope.pth"))


def test_missing_keys_strict_and_not(tmp_path, caplog):
    ref = random_tv("resnet18")
    sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("layer4.1.")}
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"trunk keys missing from the file: layer4\.1\."):
        resnet18(num_classes=3, pretrained=True, pretrained_path=str(path))
    model = resnet18(num_classes=3)
    with caplog.at_level("WARNING", logger="dm_ssl.nets.resnet"):
        report = load_pretrained(model, str(path), strict=False)
    assert "layer4.1.conv1.weight" in report.missing and "missing" in caplog.text
    assert torch.equal(model.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)


def test_old_files_without_num_batches_tracked_load(tmp_path):
    ref = random_tv("resnet18")
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in ref.state_dict().items()
                if not k.endswith("num_batches_tracked")}, path)
    model = resnet18(num_classes=3, pretrained=True, pretrained_path=str(path))
    assert torch.equal(model.bn1.running_var, ref.bn1.running_var)


def test_non_tensor_pickles_are_refused(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": random_tv().state_dict(), "args": argparse.Namespace(a=1)}, path)
    with pytest.raises(ValueError, match="holds more than tensors"):
        resnet18(num_classes=3, pretrained=True, pretrained_path=str(path))


@pytest.mark.parametrize("name,expected", [
    ("resnet18", "resnet18-f37072fd.pth"),
    ("resnet50", "resnet50-0676ba61.pth"),
    ("resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth")])
def test_pretrained_without_path_and_empty_hub_dir(hub_dir, name, expected):
    with pytest.raises(FileNotFoundError) as err:
        NETS[name](num_classes=3, pretrained=True)
    msg = str(err.value)
    assert expected in msg and str(hub_dir / "checkpoints") in msg
    assert "pretrained_path" in msg and "HF_HUB_OFFLINE" in msg


def test_cifar_variant_has_no_standard_weights(hub_dir):
    with pytest.raises(ValueError, match="no standard pretrained weights.*pretrained_path"):
        NETS["cifar_resnext50"](num_classes=3, pretrained=True)


def test_hub_cache_file_is_found_and_loaded(hub_dir):
    ref = random_tv("resnet18")
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(ref.state_dict(), hub_dir / "checkpoints" / "resnet18-f37072fd.pth")
    model = NETS["resnet18"](num_classes=9, pretrained=True)
    assert trunk_equal(model, ref) and model.classifier.out_features == 9
    # the URL torchvision would download from maps to the same cached file
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert trunk_equal(resnet18(num_classes=9, pretrained=True, pretrained_path=url), ref)
    os.remove(hub_dir / "checkpoints" / "resnet18-f37072fd.pth")
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth.*HF_HUB_OFFLINE"):
        resnet18(num_classes=9, pretrained=True, pretrained_path=url)


def test_pretrained_path_ignored_without_pretrained(tmp_path):
    # semilearn passes pretrain_path always and use_pretrain to switch it on
    model = resnet18(num_classes=3, pretrained=False, pretrained_path=str(tmp_path / "nope.pth"))
    assert isinstance(model, ResNet)


# -- optimizer groups --------------------------------------------------------------------------

def _ids(params):
    return [id(p) for p in params]


def test_head_lr_groups():
    model = resnet18(num_classes=5)
    groups = head_lr_groups(model, lr=1e-3, weight_decay=5e-4)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "head"}
    assert by_name["head"]["lr"] == pytest.approx(1e-2) and by_name["backbone"]["lr"] == 1e-3
    assert set(_ids(by_name["head"]["params"])) == set(_ids(model.classifier.parameters()))
    every = [i for g in groups for i in _ids(g["params"])]
    assert sorted(every) == sorted(_ids(model.parameters()))  # each parameter exactly once
    assert all(g["weight_decay"] == 5e-4 for g in groups)
    opt = torch.optim.SGD(groups, lr=1e-3, momentum=0.9, nesterov=True)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, pytest.approx(1e-2)]


def test_head_lr_groups_extra_heads_wrappers_and_no_decay():
    from dm_ssl.algorithms.mixing import MixingModule, MixSpec, WithMixing

    net = WithMixing(resnet18(num_classes=5),
                     MixingModule(MixSpec.for_setting("dm"), 5, feat_dim=512, seed=0))
    projector = nn.Linear(512, 16)  # outside the model
    groups = head_lr_groups(net, lr=0.1, head_mult=4.0, weight_decay=1e-4,
                            extra_heads=[net.mix_head, projector], skip_decay_1d=True)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    head = _ids(by_name["head"]["params"]) + _ids(by_name["head_no_decay"]["params"])
    expected = [p for m in (net.backbone.classifier, net.mix_head, projector)
                for p in m.parameters()]
    assert sorted(head) == sorted(_ids(expected))
    assert all(g["lr"] == pytest.approx(0.4) for g in groups if g["name"].startswith("head"))
    assert by_name["head_no_decay"]["weight_decay"] == 0.0
    assert by_name["backbone"]["weight_decay"] == 1e-4
    assert all(p.ndim == 1 for p in by_name["backbone_no_decay"]["params"])
    every = [i for g in groups for i in _ids(g["params"])]
    assert sorted(every) == sorted(_ids(list(net.parameters()) + list(projector.parameters())))
    with pytest.raises(ValueError, match="no head module"):
        head_lr_groups(nn.Sequential(nn.Linear(2, 2)), lr=0.1)


# -- ManifoldMix -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar_resnet18", "resnet50"])
def test_manifoldmix_auto_detection(name):
    model = NETS[name](num_classes=4).eval()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    res = ManifoldMix()(x, y, lam=torch.tensor([0.3, 0.8]), index=torch.tensor([1, 0]),
                        model=model)
    assert res.layer in ("layer1", "layer2")
    layer = getattr(model, res.layer)
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    with torch.no_grad():
        clean = model(x)
        out = res.forward(model)
    handle.remove()
    assert out["logits"].shape == (2, 4) and out["feat"].shape == (2, model.num_features)
    lam = res.lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(seen[1], lam * seen[0] + (1 - lam) * seen[0][[1, 0]])
    assert not torch.allclose(out["logits"], clean["logits"])
    assert all(not m._forward_hooks for m in model.modules())


def _serve_weights(server, monkeypatch, state, name=None):
    """``state`` saved as torchvision names its files (``resnet18-<sha256[:8]>.pth``, or
    ``name``) on the loopback server, which torchvision's URL for resnet18 is pointed at."""
    buf = io.BytesIO()
    torch.save(state, buf)
    body = buf.getvalue()
    name = name or f"resnet18-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    server.files["/models/" + name] = body
    monkeypatch.setattr(resnet_mod, "weights_url", lambda arch: f"{server.url}/models/{name}")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return name


def test_missing_weights_are_downloaded_through_torch_hub(hub_dir, server, monkeypatch):
    ref = random_tv("resnet18")
    name = _serve_weights(server, monkeypatch, ref.state_dict())
    model = NETS["resnet18"](num_classes=5, pretrained=True)
    assert trunk_equal(model, ref)
    assert sorted(os.listdir(hub_dir / "checkpoints")) == [name]   # no temporary file left
    # the second build reads the cache: no second request
    NETS["resnet18"](num_classes=5, pretrained=True)
    assert len(server.gets) == 1


def test_a_download_with_the_wrong_hash_or_no_server_leaves_nothing(hub_dir, server,
                                                                    monkeypatch):
    _serve_weights(server, monkeypatch, random_tv("resnet18").state_dict(),
                   name="resnet18-00000000.pth")
    with pytest.raises(FileNotFoundError, match=r"resnet18-00000000.pth: download failed.*"
                                                r"pretrained_path"):
        NETS["resnet18"](num_classes=5, pretrained=True)
    assert not (hub_dir / "checkpoints").exists() or not os.listdir(hub_dir / "checkpoints")
    server.close()
    with pytest.raises(FileNotFoundError, match="download failed"):
        NETS["resnet18"](num_classes=5, pretrained=True)


def test_timm_weights_come_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """net: timm/<name>, pretrained: true: timm's own loading, offline, from an HF cache in
    huggingface_hub's layout; an empty cache is one clear error."""
    timm = pytest.importorskip("timm")
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from dm_ssl.nets.timm_net import timm_net

    name = "test_resnet.r160_in1k"
    torch.manual_seed(3)
    ref = timm.create_model(name, pretrained=False)
    # huggingface_hub reads HF_HUB_OFFLINE / HF_HUB_CACHE when imported: set its constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=rf"timm/{name}: its pretrained weights.*"
                                                "pretrained_path"):
        timm_net(name, num_classes=3, pretrained=True)
    repo = tmp_path / "hf" / f"models--timm--{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()},
              str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    net = timm_net(name, num_classes=3, pretrained=True)
    head = ref.pretrained_cfg["classifier"]
    own = net.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in ref.state_dict().items()
               if not k.startswith(head + "."))
    assert net.classifier.out_features == 3

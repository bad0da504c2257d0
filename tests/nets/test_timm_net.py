import pytest
import torch

from dm_ssl.nets import get_net_builder


@pytest.mark.parametrize("name,kw", [
    ("resnet34", {}),
    ("deit_tiny_patch16_224", {"img_size": 32}),
])
def test_timm_net_interface(name, kw):
    net = get_net_builder(f"timm/{name}")(num_classes=7, **kw).eval()
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    assert out["logits"].shape == (2, 7) and out["feat"].shape == (2, net.num_features)
    torch.testing.assert_close(net(x, only_feat=True), out["feat"])
    torch.testing.assert_close(net(out["feat"], only_fc=True), out["logits"])


def test_timm_net_loads_local_weights_without_the_old_head(tmp_path, monkeypatch):
    import timm
    from huggingface_hub import constants

    src = timm.create_model("resnet34", pretrained=False, num_classes=1000)
    path = tmp_path / "r34.pth"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, path)
    net = get_net_builder("timm/resnet34")(num_classes=5, pretrained=True, pretrained_path=path)
    torch.testing.assert_close(net.model.conv1.weight, src.conv1.weight)
    assert net.model.fc.out_features == 5
    # without a path: timm's Hub weights; offline with an empty cache, one clear error
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match="timm/resnet34: its pretrained.*pretrained_path"):
        get_net_builder("timm/resnet34")(num_classes=5, pretrained=True)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        get_net_builder("timm/resnet34")(num_classes=5, pretrained=True,
                                         pretrained_path=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="timm has no model"):
        get_net_builder("timm/not_a_model")(num_classes=5)

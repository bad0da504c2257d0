"""Any timm classification model in semilearn's interface (ImageNet recipes: ResNet-34,
DeiT-S, Swin-T, ...; spec §6.3, §7). Config ``net: timm/<model>``, e.g.
``timm/deit_small_patch16_224``.

timm's models already split ``forward_features`` and ``forward_head``; this wrapper returns
``{'logits', 'feat'}`` with ``feat`` the pre-logits features, and keeps timm's own modules
(so timm's optimizers, EMA and layer decay apply as usual). ``pretrained=True`` loads
``pretrained_path`` when given, else timm's own pretrained weights through the Hugging Face Hub
cache (``HF_HOME``; downloaded when missing, never with ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

from typing import Any, Dict, Union

import torch
from torch import Tensor, nn


class TimmNet(nn.Module):
    """A timm model as a semilearn net: ``forward(x) -> {'logits', 'feat'}``."""

    def __init__(self, name: str, num_classes: int, in_channels: int = 3,
                 pretrained: bool = False, **kwargs: Any) -> None:
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise ValueError(f"net: timm has no model {name!r}")
        # pretrained: timm's weights through the Hugging Face Hub cache, old head dropped
        self.model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes,
                                       in_chans=in_channels, **kwargs)
        self.num_features = self.model.num_features
        self.classifier = self.model.get_classifier()

    def forward(self, x: Tensor, only_fc: bool = False, only_feat: bool = False,
                **kwargs: Any) -> Union[Tensor, Dict[str, Tensor]]:
        if only_fc:
            return self.classifier(x)
        feat = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        if only_feat:
            return feat
        return {"logits": self.classifier(feat), "feat": feat}

    def no_weight_decay(self) -> set:
        nwd = getattr(self.model, "no_weight_decay", None)
        return {f"model.{n}" for n in nwd()} if callable(nwd) else set()


def timm_net(name: str, num_classes: int, pretrained: bool = False, pretrained_path: Any = None,
             in_channels: int = 3, **kwargs: Any) -> TimmNet:
    """Builder for ``net: timm/<name>``; ImageNet weights from ``pretrained_path`` or timm's
    Hugging Face Hub weights (``timm.create_model(pretrained=True)``: the old head is dropped,
    the stem adapted to ``in_channels`` by timm)."""
    if pretrained and not pretrained_path:
        return _from_hub(name, num_classes, in_channels, **kwargs)
    net = TimmNet(name, num_classes, in_channels=in_channels, **kwargs)
    if pretrained:
        try:
            state = torch.load(pretrained_path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"pretrained_path {pretrained_path!r} is not a file") from None
        state = state.get("state_dict", state.get("model", state))
        prefix = net.model.pretrained_cfg.get("classifier", "head") + "."
        head = {k for k in net.model.state_dict() if k.startswith(prefix)}
        state = {k[len("module."):] if k.startswith("module.") else k: v
                 for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        missing, unexpected = net.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k not in head]
        if missing or unexpected:
            raise ValueError(f"pretrained_path {pretrained_path}: does not fit timm/{name} "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return net


def _from_hub(name: str, num_classes: int, in_channels: int, **kwargs: Any) -> TimmNet:
    """A :class:`TimmNet` built by timm with its pretrained weights; one clear error if not."""
    try:
        return TimmNet(name, num_classes, in_channels=in_channels, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as err:
        # huggingface_hub's offline / not-cached / HTTP errors are OSErrors; timm raises
        # RuntimeError for a model without pretrained weights
        from huggingface_hub import constants

        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(
            f"net timm/{name}: its pretrained weights could not be loaded through timm / the "
            f"Hugging Face Hub cache ({constants.HF_HUB_CACHE}): {why}. Run once with internet "
            "(without HF_HUB_OFFLINE), or pass pretrained_path=/path/to/state_dict.pth") from None

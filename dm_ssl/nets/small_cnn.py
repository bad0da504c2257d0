"""A small CNN for quick SSL runs on small images (the offline digits demo, tests)."""

from __future__ import annotations

from typing import Any, Dict, Union

import torch
from torch import Tensor, nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.1, inplace=True))


class SmallCNN(nn.Module):
    """Three conv stages (``layer1``..``layer3``, so ManifoldMix finds them) and a linear head.

    ``forward(x)`` returns ``{'logits', 'feat'}`` like semilearn's nets.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(_block(in_channels, width), _block(width, width))
        self.layer2 = nn.Sequential(nn.MaxPool2d(2), _block(width, 2 * width),
                                    _block(2 * width, 2 * width))
        self.layer3 = nn.Sequential(nn.MaxPool2d(2), _block(2 * width, 4 * width))
        self.num_features = 4 * width
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward(self, x: Tensor, only_fc: bool = False, only_feat: bool = False,
                **kwargs: Any) -> Union[Tensor, Dict[str, Tensor]]:
        if only_fc:
            return self.classifier(x)
        feat = torch.flatten(nn.functional.adaptive_avg_pool2d(
            self.layer3(self.layer2(self.layer1(x))), 1), 1)
        if only_feat:
            return feat
        return {"logits": self.classifier(feat), "feat": feat}

    def group_matcher(self, coarse: bool = False, prefix: str = "") -> Dict[str, str]:
        return {"stem": rf"^{prefix}layer1", "blocks": rf"^{prefix}layer[23]"}

    def no_weight_decay(self) -> set:
        return set()


def small_cnn(num_classes: int, in_channels: int = 3, pretrained: bool = False,
              pretrained_path: Any = None, **kwargs: Any) -> SmallCNN:
    """semilearn-style builder (``pretrained`` is not supported for this net)."""
    if pretrained:
        raise ValueError("small_cnn has no pretrained weights")
    return SmallCNN(num_classes, in_channels=in_channels, **kwargs)

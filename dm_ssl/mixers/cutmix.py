"""CutMix (Yun et al., ICCV 2019): paste a box of the partner into each image (spec §5)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import Mixer
from .geometry import box_area, box_mask, rand_bbox
from .registry import register_mixer


def cutmix_images(x_a: Tensor, x_b: Tensor, lam: Tensor, *,
                  generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Paste a box of area ≈ (1−λ_i)·H·W from ``x_b[i]`` into ``x_a[i]``, uniform centre.

    Returns ``(mixed, λ_eff)`` with ``λ_eff = 1 − clipped box area / (H·W)`` (float64, N).
    Any dtype (the paste is a ``torch.where``).
    """
    _, _, h, w = x_a.shape
    boxes = rand_bbox(h, w, lam.to(x_a.device), generator=generator)
    mixed = torch.where(box_mask(boxes, h, w), x_b, x_a)
    return mixed, 1.0 - box_area(boxes).double() / (h * w)


@register_mixer("cutmix")
class CutMix(Mixer):
    """CutMix with one box per sample.

    Box *positions* are always drawn per sample (timm's "elem" mode), also when λ is one
    per batch: a per-batch λ fixes the box size, and ``result.lam`` reports each sample's
    true share after clipping (per-sample anyway, spec §1).
    """

    def mix(self, x_a: Tensor, x_b: Tensor, lam: Tensor, *,
            generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        return cutmix_images(x_a, x_b, lam, generator=generator)

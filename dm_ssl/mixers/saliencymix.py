"""SaliencyMix (Uddin et al., ICLR 2021): CutMix with the box on the source's saliency peak."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import Mixer
from .geometry import box_area, box_mask, rand_bbox, saliency_peak
from .registry import register_mixer


def saliencymix_images(x_a: Tensor, x_b: Tensor, lam: Tensor, *,
                       saliency_size: Optional[int] = 64) -> tuple[Tensor, Tensor]:
    """Paste from ``x_b[i]`` a box of area ≈ (1−λ_i)·H·W centred on the spectral-residual
    saliency peak of ``x_b[i]`` (spec §5), at the same location in ``x_a[i]``.

    Returns ``(mixed, λ_eff)``, ``λ_eff = 1 − clipped box area / (H·W)`` (float64, N).
    Deterministic given λ: the source decides where the box goes.
    """
    _, _, h, w = x_a.shape
    boxes = rand_bbox(h, w, lam.to(x_a.device), centers=saliency_peak(x_b, size=saliency_size))
    mixed = torch.where(box_mask(boxes, h, w), x_b, x_a)
    return mixed, 1.0 - box_area(boxes).double() / (h * w)


@register_mixer("saliencymix")
class SaliencyMix(Mixer):
    """SaliencyMix, one box per sample.

    Args:
        saliency_size: side of the square grid the saliency map is computed on (64, as
            OpenCV's spectral residual), None for the native resolution.
    """

    def __init__(self, alpha: Optional[float] = 1.0, bias_to_a: bool = False,
                 per_sample: bool = False, saliency_size: Optional[int] = 64) -> None:
        super().__init__(alpha, bias_to_a, per_sample)
        if saliency_size is not None and (
                isinstance(saliency_size, bool) or not isinstance(saliency_size, int)
                or saliency_size < 1):
            raise ValueError(f"saliency_size must be a positive int or None, got {saliency_size!r}")
        self.saliency_size = saliency_size

    def mix(self, x_a: Tensor, x_b: Tensor, lam: Tensor, *,
            generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        return saliencymix_images(x_a, x_b, lam, saliency_size=self.saliency_size)

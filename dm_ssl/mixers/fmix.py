"""FMix (Harris et al., 2020): binary masks from low-frequency Fourier noise (spec §5)."""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import Tensor

from .base import Mixer
from .geometry import binarise_mask, fourier_mask
from .registry import register_mixer


def fmix_images(x_a: Tensor, x_b: Tensor, lam: Tensor, *, decay_power: float = 3.0,
                generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Keep ``x_a[i]`` on the top ``round(λ_i·H·W)`` pixels of a per-sample low-frequency
    mask and take ``x_b[i]`` elsewhere.

    Returns ``(mixed, λ_eff)`` with ``λ_eff`` the mask mean, ``round(λ·H·W)/(H·W)``
    (float64, N): the true share, not the requested λ (spec §8 defect 7). Any dtype.
    """
    n, _, h, w = x_a.shape
    soft = fourier_mask(n, h, w, decay_power=decay_power, generator=generator,
                        device=x_a.device)
    keep_a = binarise_mask(soft, lam.to(x_a.device)).unsqueeze(1)
    mixed = torch.where(keep_a, x_a, x_b)
    return mixed, keep_a.flatten(1).sum(1).double() / (h * w)


@register_mixer("fmix")
class FMix(Mixer):
    """FMix with one mask per sample (vectorised), all of the same size ``round(λHW)``
    when λ is per batch.

    Args:
        decay_power: δ of the spectrum's ``1/f^δ`` decay (3, the FMix default); larger means
            smoother, blobbier masks.
    """

    def __init__(self, alpha: Optional[float] = 1.0, bias_to_a: bool = False,
                 per_sample: bool = False, decay_power: float = 3.0) -> None:
        super().__init__(alpha, bias_to_a, per_sample)
        if (isinstance(decay_power, bool) or not isinstance(decay_power, numbers.Real)
                or not math.isfinite(decay_power) or decay_power <= 0):
            raise ValueError(f"decay_power must be > 0, got {decay_power!r}")
        self.decay_power = float(decay_power)

    def mix(self, x_a: Tensor, x_b: Tensor, lam: Tensor, *,
            generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        return fmix_images(x_a, x_b, lam, decay_power=self.decay_power, generator=generator)

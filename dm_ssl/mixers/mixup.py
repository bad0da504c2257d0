"""Mixup (Zhang et al., ICLR 2018): linear interpolation of inputs (spec §5)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import Mixer
from .registry import register_mixer


def mixup_images(x_a: Tensor, x_b: Tensor, lam: Tensor) -> Tensor:
    """``λ_i·x_a[i] + (1−λ_i)·x_b[i]`` for any (N, ...) floating tensors, λ of shape (N,).

    Computed in float32 for half-precision inputs (float64 for float64) and cast back to
    ``x_a.dtype``, so a bf16 batch is not mixed with a bf16-rounded λ.
    """
    work = x_a.dtype if x_a.dtype in (torch.float32, torch.float64) else torch.float32
    lam = lam.to(device=x_a.device, dtype=work).reshape(-1, *([1] * (x_a.dim() - 1)))
    return (lam * x_a + (1 - lam) * x_b).to(x_a.dtype)


@register_mixer("mixup")
class Mixup(Mixer):
    """Mixup: ``x = λ x_a + (1−λ) x_b``; the true share of a is λ itself.

    Works on any floating batch (N, ...), not only images.
    """

    image_only = False
    floating_only = True

    def mix(self, x_a: Tensor, x_b: Tensor, lam: Tensor, *,
            generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        lam = lam.to(x_a.device)
        return mixup_images(x_a, x_b, lam), lam

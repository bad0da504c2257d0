"""ResizeMix (Qin et al., 2020): paste a shrunken copy of the whole partner image (spec §5)."""

from __future__ import annotations

import numbers
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _random
from .base import Mixer
from .geometry import box_area, rand_inner_box, side_ratio
from .registry import register_mixer


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    if dtype.is_floating_point:
        return t.to(dtype)
    info = torch.iinfo(dtype)
    return t.round().clamp(info.min, info.max).to(dtype)


def resizemix_images(x_a: Tensor, x_b: Tensor, tau: Tensor, *,
                     generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Paste ``x_b[i]`` resized (bilinear) to ``floor(τ_i·H) × floor(τ_i·W)`` at a uniformly
    random position of ``x_a[i]`` where it fits entirely.

    Returns ``(mixed, λ_eff)`` with ``λ_eff = 1 − h'·w'/(H·W)`` (float64, N), the true share
    of a (spec §8 defect 7). Loops only over the distinct pasted sizes; each size's paste is
    one indexed assignment. Floating or integer dtypes (integers are rounded after resizing).
    """
    n, c, h, w = x_a.shape
    boxes = rand_inner_box(h, w, tau.to(x_a.device), generator=generator)
    sizes = torch.stack([boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]], 1)
    uniq, group = torch.unique(sizes, dim=0, return_inverse=True)
    work = torch.float64 if x_a.dtype == torch.float64 else torch.float32
    channels = torch.arange(c, device=x_a.device)[None, :, None, None]
    mixed = x_a.clone()
    for g, (bh, bw) in enumerate(uniq.tolist()):
        idx = (group == g).nonzero().squeeze(1)
        small = F.interpolate(x_b[idx].to(work), size=(bh, bw), mode="bilinear",
                              align_corners=False)
        rows = boxes[idx, 0:1] + torch.arange(bh, device=x_a.device)
        cols = boxes[idx, 2:3] + torch.arange(bw, device=x_a.device)
        mixed[idx[:, None, None, None], channels, rows[:, None, :, None],
              cols[:, None, None, :]] = _cast(small, x_a.dtype)
    return mixed, 1.0 - box_area(boxes).double() / (h * w)


@register_mixer("resizemix")
class ResizeMix(Mixer):
    """ResizeMix with per-sample positions.

    The side ratio τ of the pasted copy: with ``lam`` given, ``τ = clamp(√(1−λ), *scope)``;
    when drawn, ``τ = scope[0] + u·(scope[1] − scope[0])`` with ``u ~ Beta(α, α)`` (α = 1 is
    the official uniform τ). ``bias_to_a`` acts on the nominal λ = 1 − τ² before clamping.

    Args:
        scope: (low, high) bounds of τ, 0 < low ≤ high ≤ 1; (0.1, 0.8) as in the paper.
    """

    def __init__(self, alpha: Optional[float] = 1.0, bias_to_a: bool = False,
                 per_sample: bool = False, scope: tuple[float, float] = (0.1, 0.8)) -> None:
        super().__init__(alpha, bias_to_a, per_sample)
        ok = (isinstance(scope, (tuple, list)) and len(scope) == 2
              and all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in scope))
        if not ok or not 0 < scope[0] <= scope[1] <= 1:
            raise ValueError(f"scope must be (low, high) with 0 < low <= high <= 1, got {scope!r}")
        self.scope = (float(scope[0]), float(scope[1]))

    def sample_lam(self, size: int, *, generator: Optional[torch.Generator],
                   device: torch.device) -> Tensor:
        """Nominal λ = 1 − τ² of a τ drawn in ``scope``; ``mix`` turns it back into τ."""
        assert self.alpha is not None
        u = _random.beta(self.alpha, size, generator=generator, device=device)
        tau = self.scope[0] + u * (self.scope[1] - self.scope[0])
        return 1.0 - tau * tau

    def mix(self, x_a: Tensor, x_b: Tensor, lam: Tensor, *,
            generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        tau = side_ratio(lam, *self.scope)
        return resizemix_images(x_a, x_b, tau, generator=generator)

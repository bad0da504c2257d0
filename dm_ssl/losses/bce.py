"""MBCE and DM(BCE): mixup binary cross-entropy targets (spec §4).

Sigmoid BCE per class, summed over classes (``class_reduction="sum"``, the spec's form; ``"mean"``
matches timm's ``BinaryCrossEntropy``) and reduced over rows. Targets, always clamped to [0, 1]
(spec §8.8):

* MBCE ``one``: ``y = λ e_a + (1−λ) e_b``;
* MBCE ``two``: ``y = e_a + e_b`` (known to hurt: −2 % on ImageNet);
* DM(BCE): ``y = min(1, ξ (g_t(λ) e_a + g_t(1−λ) e_b))``, ``g_t(v) = 1 if v ≥ t else v/t``.
  Paper values: cutting mixers ``t = 1, ξ = 0.8``; interpolation mixers ``t = 0.5, ξ = 1``.

An optional ``target_threshold`` binarises the target as timm's
``BinaryCrossEntropy(target_threshold=...)`` does: ``y ← 1[y > threshold]``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import (
    REDUCTIONS,
    LamLike,
    check_choice,
    check_labels,
    check_lam,
    check_logits,
    check_range,
    check_weight,
    reduce_rows,
    upcast,
)

BCE_MODES = ("one", "two")
CLASS_REDUCTIONS = ("sum", "mean")


def two_component_target(y_a: Tensor, y_b: Tensor, w_a: Tensor, w_b: Tensor,
                         num_classes: int) -> Tensor:
    """Dense target ``w_a e_a + w_b e_b`` clamped to [0, 1] (same-class rows add up)."""
    idx = torch.stack([y_a, y_b], 1).long()
    vals = torch.stack([w_a, w_b], 1)
    target = vals.new_zeros(idx.shape[0], num_classes).scatter_add_(1, idx, vals)
    return target.clamp_(0.0, 1.0)


def ratio_gate(v: Tensor, t: float) -> Tensor:
    """``g_t(v) = 1 if v ≥ t else v / t`` (spec §4)."""
    return torch.where(v >= t, torch.ones_like(v), v / t)


def _bce_rows(z: Tensor, target: Tensor, target_threshold: Optional[float],
              pos_weight: Optional[Tensor], class_reduction: str) -> Tensor:
    if target_threshold is not None:
        target = target.gt(target_threshold).to(target.dtype)
    if pos_weight is not None:
        pos_weight = pos_weight.to(device=z.device, dtype=z.dtype)
    loss = F.binary_cross_entropy_with_logits(z, target, pos_weight=pos_weight,
                                              reduction="none")
    return loss.sum(1) if class_reduction == "sum" else loss.mean(1)


def _check_bce_args(target_threshold: Optional[float], class_reduction: str,
                    reduction: str) -> None:
    if target_threshold is not None:
        check_range(target_threshold, "target_threshold", 0.0, 1.0)
    check_choice(class_reduction, CLASS_REDUCTIONS, "class_reduction")
    check_choice(reduction, REDUCTIONS, "reduction")


def _prepare(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike,
             weight: Optional[Tensor]):
    check_logits(logits)
    n, c = logits.shape
    check_labels(y_a, n, c, "y_a")
    check_labels(y_b, n, c, "y_b")
    z = upcast(logits)
    return z, check_lam(lam, n, z), check_weight(weight, n, z), c


def mixup_bce(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike, mode: str = "one",
              target_threshold: Optional[float] = None, pos_weight: Optional[Tensor] = None,
              weight: Optional[Tensor] = None, reduction: str = "mean",
              class_reduction: str = "sum") -> Tensor:
    """MBCE with the ``one`` (λ-weighted) or ``two`` (two-hot) target of spec §4."""
    check_choice(mode, BCE_MODES, "mode")
    _check_bce_args(target_threshold, class_reduction, reduction)
    z, lam_t, weight, c = _prepare(logits, y_a, y_b, lam, weight)
    if mode == "one":
        target = two_component_target(y_a, y_b, lam_t, 1.0 - lam_t, c)
    else:
        ones = torch.ones_like(lam_t)
        target = two_component_target(y_a, y_b, ones, ones, c)
    rows = _bce_rows(z, target, target_threshold, pos_weight, class_reduction)
    return reduce_rows(rows, weight, reduction)


def decoupled_mixup_bce(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike,
                        t: float = 1.0, xi: float = 0.8,
                        target_threshold: Optional[float] = None,
                        pos_weight: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                        reduction: str = "mean", class_reduction: str = "sum") -> Tensor:
    """DM(BCE): target ``min(1, ξ (g_t(λ) e_a + g_t(1−λ) e_b))`` (spec §4).

    Defaults are the paper's cutting-mixer values (``t=1, ξ=0.8``); use ``t=0.5, xi=1`` for
    Mixup/ManifoldMix.
    """
    check_range(t, "t", 0.0, 1.0, lo_open=True)
    check_range(xi, "xi", 0.0, lo_open=True)
    _check_bce_args(target_threshold, class_reduction, reduction)
    z, lam_t, weight, c = _prepare(logits, y_a, y_b, lam, weight)
    target = two_component_target(y_a, y_b, xi * ratio_gate(lam_t, t),
                                  xi * ratio_gate(1.0 - lam_t, t), c)
    rows = _bce_rows(z, target, target_threshold, pos_weight, class_reduction)
    return reduce_rows(rows, weight, reduction)


class MixupBinaryCrossEntropy(nn.Module):
    """MBCE with its hyper-parameters held for configs; see :func:`mixup_bce`."""

    def __init__(self, mode: str = "one", target_threshold: Optional[float] = None,
                 pos_weight: Optional[Tensor] = None, class_reduction: str = "sum",
                 reduction: str = "mean") -> None:
        super().__init__()
        check_choice(mode, BCE_MODES, "mode")
        _check_bce_args(target_threshold, class_reduction, reduction)
        self.mode, self.target_threshold = mode, target_threshold
        self.class_reduction, self.reduction = class_reduction, reduction
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike,
                weight: Optional[Tensor] = None) -> Tensor:
        return mixup_bce(logits, y_a, y_b, lam, mode=self.mode,
                         target_threshold=self.target_threshold, pos_weight=self.pos_weight,
                         weight=weight, reduction=self.reduction,
                         class_reduction=self.class_reduction)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, target_threshold={self.target_threshold}"


class DecoupledMixupBinaryCrossEntropy(nn.Module):
    """DM(BCE) with its hyper-parameters held for configs; see :func:`decoupled_mixup_bce`."""

    def __init__(self, t: float = 1.0, xi: float = 0.8, target_threshold: Optional[float] = None,
                 pos_weight: Optional[Tensor] = None, class_reduction: str = "sum",
                 reduction: str = "mean") -> None:
        super().__init__()
        check_range(t, "t", 0.0, 1.0, lo_open=True)
        check_range(xi, "xi", 0.0, lo_open=True)
        _check_bce_args(target_threshold, class_reduction, reduction)
        self.t, self.xi, self.target_threshold = float(t), float(xi), target_threshold
        self.class_reduction, self.reduction = class_reduction, reduction
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike,
                weight: Optional[Tensor] = None) -> Tensor:
        return decoupled_mixup_bce(logits, y_a, y_b, lam, t=self.t, xi=self.xi,
                                   target_threshold=self.target_threshold,
                                   pos_weight=self.pos_weight, weight=weight,
                                   reduction=self.reduction,
                                   class_reduction=self.class_reduction)

    def extra_repr(self) -> str:
        return f"t={self.t}, xi={self.xi}, target_threshold={self.target_threshold}"

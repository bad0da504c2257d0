"""MCE: the mixup cross-entropy baseline (spec §2).

``ℓ_MCE = −λ log p_a − (1−λ) log p_b``, optionally label-smoothed: each CE term is computed with
``label_smoothing`` so the target is ``(1−ε)(λ e_a + (1−λ) e_b) + ε/C``, through two
``F.cross_entropy`` calls.
"""

from __future__ import annotations

from typing import Optional

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


def mixup_ce(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike,
             weight: Optional[Tensor] = None, reduction: str = "mean",
             label_smoothing: float = 0.0) -> Tensor:
    """Mixup cross-entropy with per-sample λ (a float or a tensor of shape (N,)).

    ``weight`` (N,) multiplies each row; ``reduction="mean"`` divides by N (spec §3).
    """
    check_logits(logits)
    n, c = logits.shape
    check_labels(y_a, n, c, "y_a")
    check_labels(y_b, n, c, "y_b")
    check_choice(reduction, REDUCTIONS, "reduction")
    check_range(label_smoothing, "label_smoothing", 0.0, 1.0, hi_open=True)
    z = upcast(logits)
    lam_t = check_lam(lam, n, z)
    weight = check_weight(weight, n, z)
    ce_a = F.cross_entropy(z, y_a, reduction="none", label_smoothing=label_smoothing)
    ce_b = F.cross_entropy(z, y_b, reduction="none", label_smoothing=label_smoothing)
    return reduce_rows(lam_t * ce_a + (1.0 - lam_t) * ce_b, weight, reduction)


class MixupCrossEntropy(nn.Module):
    """MCE with its hyper-parameters held for configs; see :func:`mixup_ce`."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        check_choice(reduction, REDUCTIONS, "reduction")
        check_range(label_smoothing, "label_smoothing", 0.0, 1.0, hi_open=True)
        self.label_smoothing, self.reduction = float(label_smoothing), reduction

    def forward(self, logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike,
                weight: Optional[Tensor] = None) -> Tensor:
        return mixup_ce(logits, y_a, y_b, lam, weight=weight, reduction=self.reduction,
                        label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"

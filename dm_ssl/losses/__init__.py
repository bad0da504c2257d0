"""Mixup losses with the decoupled regulariser (spec §2–4). Pure torch: no semilearn import."""

from __future__ import annotations

from typing import Dict, Type

from torch import nn

from .bce import (
    DecoupledMixupBinaryCrossEntropy,
    MixupBinaryCrossEntropy,
    decoupled_mixup_bce,
    mixup_bce,
)
from .dm_ce import (
    DecoupledMixupCrossEntropy,
    DecoupledSoftTargetCrossEntropy,
    component_eta,
    decoupled_mixup_ce,
    decoupled_mixup_ce_soft,
)
from .mixup_ce import MixupCrossEntropy, mixup_ce

#: Config names of the two-component losses ``loss(logits, y_a, y_b, lam, weight=None)``.
LOSSES: Dict[str, Type[nn.Module]] = {
    "mce": MixupCrossEntropy,
    "dm_ce": DecoupledMixupCrossEntropy,
    "mbce": MixupBinaryCrossEntropy,
    "dm_bce": DecoupledMixupBinaryCrossEntropy,
}


def build_loss(name: str, **kwargs) -> nn.Module:
    """Build a mixup loss module by its config name (``mce``, ``dm_ce``, ``mbce``, ``dm_bce``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as err:  # an unknown keyword: name it instead of a bare traceback
        raise ValueError(f"loss {name!r}: {err}") from None


__all__ = [
    "LOSSES",
    "build_loss",
    "component_eta",
    "mixup_ce",
    "decoupled_mixup_ce",
    "decoupled_mixup_ce_soft",
    "mixup_bce",
    "decoupled_mixup_bce",
    "MixupCrossEntropy",
    "DecoupledMixupCrossEntropy",
    "DecoupledSoftTargetCrossEntropy",
    "MixupBinaryCrossEntropy",
    "DecoupledMixupBinaryCrossEntropy",
]

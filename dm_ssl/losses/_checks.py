"""Argument checks shared by the losses: one clear ``ValueError`` naming the bad argument."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

LamLike = Union[float, Tensor]

REDUCTIONS = ("mean", "sum", "none")


def check_logits(logits: Tensor, name: str = "logits") -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"{name} must be a 2-D tensor (N, C), got {shape}")
    if not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {logits.dtype}")
    if logits.shape[1] < 1:
        raise ValueError(f"{name} must have at least one class column")


def check_labels(y: Tensor, n: int, num_classes: int, name: str) -> None:
    if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != n:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"{name} must be a 1-D tensor of length N={n}, got {shape}")
    if y.dtype in (torch.bool,) or y.is_floating_point() or y.is_complex():
        raise ValueError(f"{name} must hold integer class indices, got {y.dtype}")
    if n:
        lo, hi = torch.aminmax(y)  # one reduction: this check sits on the training hot path
        if lo.item() < 0 or hi.item() >= num_classes:
            bad = lo.item() if lo.item() < 0 else hi.item()
            raise ValueError(f"{name} has label {bad} out of range [0, {num_classes})")


def check_lam(lam: LamLike, n: int, like: Tensor, name: str = "lam") -> Tensor:
    """Return ``lam`` as a float tensor of shape (N,) on ``like``'s device, checked in [0, 1]."""
    if isinstance(lam, Tensor):
        if lam.dim() > 1 or (lam.dim() == 1 and lam.shape[0] not in (1, n)):
            raise ValueError(f"{name} must be a scalar or a tensor of shape (N,)=({n},), "
                             f"got {tuple(lam.shape)}")
        lam_t = lam.to(device=like.device, dtype=like.dtype)
    elif isinstance(lam, (int, float)) and not isinstance(lam, bool):
        lam_t = torch.tensor(float(lam), device=like.device, dtype=like.dtype)
    else:
        raise ValueError(f"{name} must be a float or a tensor, got {type(lam).__name__}")
    if lam_t.numel():
        lo, hi = torch.aminmax(lam_t)
        if not (lo.item() >= 0.0 and hi.item() <= 1.0):  # also false for NaN
            raise ValueError(f"{name} must lie in [0, 1]")
    return lam_t.reshape(-1).expand(n) if lam_t.numel() == 1 else lam_t


def check_weight(weight: Optional[Tensor], n: int, like: Tensor) -> Optional[Tensor]:
    if weight is None:
        return None
    if not isinstance(weight, Tensor) or weight.dim() != 1 or weight.shape[0] != n:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 1-D tensor of length N={n}, got {shape}")
    return weight.to(device=like.device, dtype=like.dtype)


def check_choice(value: str, choices: tuple, name: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")


def check_range(value: float, name: str, lo: float, hi: float = float("inf"),
                lo_open: bool = False, hi_open: bool = False) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad_lo = v <= lo if lo_open else v < lo
    bad_hi = v >= hi if hi_open else v > hi
    if bad_lo or bad_hi or v != v:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}, got {value!r}")


def reduce_rows(rows: Tensor, weight: Optional[Tensor], reduction: str) -> Tensor:
    """Weight each row, then reduce. ``mean`` divides by N, masked rows included (spec §3)."""
    if weight is not None:
        rows = rows * weight
    if reduction == "mean":
        return rows.mean() if rows.numel() else rows.sum()
    if reduction == "sum":
        return rows.sum()
    return rows


def upcast(logits: Tensor) -> Tensor:
    """Compute losses in float32 at least: fp16/bf16 logits under autocast lose the tail mass."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits

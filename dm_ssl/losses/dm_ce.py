"""DM(CE): decoupled mixup cross-entropy (spec §3).

For a mixed row with mixed classes ``M`` (each with its share ``λ_i``) and the other classes
``R = {1..C} \\ M``, the decoupled softmax of ``i ∈ M`` leaves the other mixed classes out:

    φ_i = exp(z_i) / (exp(z_i) + Σ_{c∈R} exp(z_c))

    ℓ_DM(CE) = ℓ_MCE + Σ_{i∈M} η_i · (−log φ_i),      η_i = η · g(λ_i) · sel(λ_i)

``ℓ_MCE = −Σ_c T_c log p_c`` is the (optionally label-smoothed) mixup cross-entropy with
target ``T``. The decoupled part keeps one-hot targets: λ only enters through ``η_i``.

Implementation: one masked log-sum-exp over ``R`` per row, ``lse_R``; every other normaliser is a
per-row two-term ``logaddexp`` (``log(e^{lse_R} + e^{z_i})``), so no normaliser is obtained by
subtraction (``log(1 − p_b)`` would cancel exactly when ``p_b → 1``, the hard mixed samples DM is
about). The backward is hand-written: the gradient over ``R`` is one scaled ``softmax_R`` and the
few mixed columns are fixed up by a scatter, so forward + backward pass over the logits about as
often as a plain cross-entropy does.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

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

MODES = ("both", "less", "more")
SCALES = ("none", "pow")


def component_eta(share: Tensor, mixed: Tensor, eta: float, mode: str = "both",
                  thr: float = 0.5, scale: str = "none", t: float = 1.0,
                  k: float = 1.0) -> Tensor:
    """Per-component decoupled weights ``η_i = η · g(λ_i) · sel(λ_i)`` (spec §3).

    ``g`` is ``1`` (``scale="none"``) or ``1 if λ ≥ t else (λ/t)^|k|`` (``scale="pow"``);
    ``sel`` keeps every component (``"both"``), only those with ``λ < thr`` (``"less"``) or only
    those with ``λ ≥ thr`` (``"more"``). ``mixed`` marks the mixed classes of each row; rows with
    fewer than two (same-class rows, λ ∈ {0, 1}) get no decoupled term: they are plain CE rows.
    """
    return _eta_weights(share, mixed & (mixed.sum(1, keepdim=True) >= 2), eta, mode, thr,
                        scale, t, k)


def _eta_weights(share: Tensor, keep: Tensor, eta: float, mode: str, thr: float, scale: str,
                 t: float, k: float) -> Tensor:
    if mode == "less":
        keep = keep & (share < thr)
    elif mode == "more":
        keep = keep & (share >= thr)
    w = keep.to(share.dtype) * float(eta)
    if scale == "pow":
        w = w * torch.where(share >= t, torch.ones_like(share), (share / t).pow(abs(k)))
    return w


def _softplus(x: Tensor) -> Tensor:
    # The default threshold (20) trades exactness for speed; 40 keeps float64 exact.
    return F.softplus(x, threshold=40.0)


class _DecoupledCE(torch.autograd.Function):
    """Per-row ℓ_DM(CE) with a hand-written backward (see the module docstring).

    Inputs (K components per row): ``z`` (N, C); ``idx`` (N, K) component classes, all left
    out of R (a component of share 0 is harmless there: its row has η = 0, and ``lse_all``
    still counts it); ``dup`` (N, K) marks repeats of a class already in the row (``None``: the
    classes of a row are distinct); ``ce_share`` (N, K) MCE target mass per component (index
    form; repeats simply add up) or ``None``; ``eta`` (N, K) or (N, 1) decoupled weights, 0 on
    rows with fewer than two mixed classes; ``mass`` the MCE target's row sum; ``smoothing`` ε
    of the index-form MCE; ``dense_target`` (N, C) the MCE target of the soft form (then
    ``ce_share`` is ``None``).

    Passes over the logits: a copy, two maxima and one fused softmax over R in the forward; one
    scaled copy of that softmax in the backward (the mixed columns go through gather/scatter).
    """

    @staticmethod
    def forward(ctx, z: Tensor, idx: Tensor, dup: Optional[Tensor], ce_share: Optional[Tensor],
                eta: Tensor, mass, smoothing: float, dense_target: Optional[Tensor]) -> Tensor:
        zy = z.gather(1, idx)
        # scatter_ with a source tensor: the scalar-value overload is ~5x slower on CPU
        z_rest = z.clone().scatter_(1, idx, torch.full_like(zy, -math.inf))
        m = z_rest.amax(1)
        sm = torch.softmax(z_rest, 1)                                 # softmax over R, 0 on M
        # log Σ_R exp(z) = max_R z − log max_R softmax_R(z)   (both maxima at the same class)
        lse_r = m - sm.amax(1).log()
        if z.shape[1] <= idx.shape[1]:  # R can be empty (C ≤ K): softmax of -inf rows is NaN
            sm.nan_to_num_(nan=0.0)
            lse_r = torch.where(torch.isinf(m), m, lse_r)
        x = lse_r.unsqueeze(1) - zy                                   # −log φ_i = softplus(x)
        zy_once = zy if dup is None else zy.masked_fill(dup, -math.inf)
        # log(e^{lse_R} + Σ_M e^{z}), shifted by the row max of z: no exponent overflows
        top = torch.maximum(m, zy_once.amax(1))
        lse_all = ((lse_r - top).exp() + (zy_once - top.unsqueeze(1)).exp().sum(1)).log() + top
        if dense_target is None:
            ce = ce_share * zy if smoothing == 0 else ce_share * zy * (1.0 - smoothing)
            rows = (eta * _softplus(x) - ce).sum(1) + lse_all * mass
            if smoothing:
                rows -= z.mean(1).mul_(smoothing)
        else:
            rows = (eta * _softplus(x)).sum(1) + lse_all * mass - (dense_target * z).sum(1)
        ctx.smoothing, ctx.mass = smoothing, mass
        ctx.save_for_backward(sm, idx, dup, zy, x, lse_r, lse_all, eta, ce_share, dense_target)
        return rows

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rows: Tensor):
        sm, idx, dup, zy, x, lse_r, lse_all, eta, ce_share, dense_target = ctx.saved_tensors
        eps = ctx.smoothing
        g = grad_rows
        a = g * ctx.mass                                              # d/d lse_all
        b_rho = eta * g.unsqueeze(1) * torch.sigmoid(x)               # η_i (1 − φ_i), stable
        d_rest = a * (lse_r - lse_all).exp() + b_rho.sum(1)           # d/d lse_R
        p_y = (zy - lse_all.unsqueeze(1)).exp()
        if dup is not None:
            p_y.masked_fill_(dup, 0.0)
        d_zy = a.unsqueeze(1) * p_y - b_rho
        if ce_share is not None:
            d_zy -= ce_share * (g if eps == 0 else g * (1.0 - eps)).unsqueeze(1)
        grad = (sm * d_rest.unsqueeze(1)).scatter_add_(1, idx, d_zy)
        if dense_target is not None:
            grad.addcmul_(dense_target, g.unsqueeze(1), value=-1.0)
        elif eps:
            grad -= (g * (eps / grad.shape[1])).unsqueeze(1)
        return grad, None, None, None, None, None, None, None


def _decoupled_rows(z: Tensor, idx: Tensor, dup: Optional[Tensor], ce_share: Optional[Tensor],
                    eta: Tensor, mass, smoothing: float = 0.0,
                    dense_target: Optional[Tensor] = None) -> Tensor:
    args = (z, idx, dup, ce_share, eta, mass, float(smoothing), dense_target)
    if torch.is_autocast_enabled(z.device.type):
        # The Function computes in the logits' dtype; autocast must not re-cast inside it.
        with torch.autocast(device_type=z.device.type, enabled=False):
            return _DecoupledCE.apply(*args)
    return _DecoupledCE.apply(*args)


def _pair_rows(z: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor, eta: float, mode: str,
               thr: float, scale: str, t: float, k: float, smoothing: float) -> Tensor:
    """Per-row DM(CE) of a two-way mix; the row bookkeeping takes a handful of (N,) ops."""
    idx = torch.stack([y_a, y_b], 1)
    lam_b = 1.0 - lam
    share = torch.stack([lam, lam_b], 1)
    same = y_a == y_b
    dup = torch.stack([torch.zeros_like(same), same], 1)           # b repeats a's class
    # two mixed classes: distinct classes, both shares positive
    two_mixed = ((lam * lam_b) > 0) & ~same
    eta_c = _eta_weights(share, two_mixed.unsqueeze(1), eta, mode, thr, scale, t, k)
    return _decoupled_rows(z, idx, dup, share, eta_c, 1.0, smoothing)


def _check_dm_args(eta: float, mode: str, thr: float, scale: str, t: float, k: float,
                   reduction: str, label_smoothing: float) -> None:
    check_range(eta, "eta", 0.0)
    check_choice(mode, MODES, "mode")
    check_range(thr, "thr", 0.0, 1.0)
    check_choice(scale, SCALES, "scale")
    check_range(t, "t", 0.0, 1.0, lo_open=True)
    check_range(k, "k", -math.inf, math.inf, lo_open=True, hi_open=True)
    check_choice(reduction, REDUCTIONS, "reduction")
    check_range(label_smoothing, "label_smoothing", 0.0, 1.0, hi_open=True)


def decoupled_mixup_ce(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike,
                       eta: float = 0.1, mode: str = "both", thr: float = 0.5,
                       scale: str = "none", t: float = 1.0, k: float = 1.0,
                       weight: Optional[Tensor] = None, reduction: str = "mean",
                       label_smoothing: float = 0.0) -> Tensor:
    """DM(CE) of a two-component mixed batch (spec §3).

    ``ℓ = −Σ_c T_c log p_c − η_a log φ_a − η_b log φ_b`` with ``T = (1−ε)(λ e_a + (1−λ) e_b) + ε/C``
    (``ε = label_smoothing``), ``η_a = η·g(λ)``, ``η_b = η·g(1−λ)`` attached to the components
    (not to class indices, spec §8.1).

    Args:
        logits: (N, C) logits of the mixed batch.
        y_a, y_b: (N,) class indices of components a and b.
        lam: share of component a, a float or a tensor of shape (N,) (per-sample λ, spec §1).
        eta: decoupled weight η ≥ 0 (paper: 0.1 for static mixers, 1 for dynamic ones, B.3).
        mode: ``"both"``, ``"less"`` (only components with λ < thr) or ``"more"`` (λ ≥ thr).
        thr: ratio threshold of ``mode``.
        scale: ``"none"`` (g ≡ 1) or ``"pow"`` (``g(v) = 1 if v ≥ t else (v/t)^|k|``).
        t, k: parameters of ``scale="pow"``.
        weight: optional (N,) per-row weights (masks).
        reduction: ``"mean"`` (divides by N, masked rows included), ``"sum"`` or ``"none"``.
        label_smoothing: ε of the MCE part; the decoupled part keeps one-hot targets.

    Rows with ``y_a == y_b`` are plain CE rows; a component with share 0 is not a mixed class
    (so λ = 1 gives CE on a); λ = 0.5 rows keep their decoupled term (spec §8.2).
    """
    check_logits(logits)
    n, c = logits.shape
    check_labels(y_a, n, c, "y_a")
    check_labels(y_b, n, c, "y_b")
    _check_dm_args(eta, mode, thr, scale, t, k, reduction, label_smoothing)
    z = upcast(logits)
    lam_t = check_lam(lam, n, z)
    weight = check_weight(weight, n, z)
    rows = _pair_rows(z, y_a, y_b, lam_t, eta, mode, thr, scale, t, k, label_smoothing)
    return reduce_rows(rows, weight, reduction)


def decoupled_mixup_ce_soft(logits: Tensor, target: Tensor, eta: float = 0.1,
                            mode: str = "both", thr: float = 0.5, scale: str = "none",
                            t: float = 1.0, k: float = 1.0, weight: Optional[Tensor] = None,
                            reduction: str = "mean", label_smoothing: float = 0.0,
                            eps: float = 1e-6, max_components: int = 8) -> Tensor:
    """DM(CE) on a mixed label matrix, for k ≥ 2 components per row (spec §3).

    ``ℓ = −Σ_c T_c log p_c + Σ_{i∈M} η_i (−log φ_i)``. The MCE part is exactly timm's
    ``SoftTargetCrossEntropy`` on ``T``. The mixed classes of a row are the entries with
    ``λ_i = (T_i − ε_s/C) / (1 − ε_s) > eps``, where ``ε_s = label_smoothing`` is the smoothing
    the target was built with (``timm.data.Mixup(label_smoothing=...)``); ``λ_i`` is the
    component's share.

    Args:
        target: (N, C) mixed label matrix with non-negative rows summing to 1.
        label_smoothing: the smoothing already inside ``target`` (it is not applied again).
        eps: entries whose share is at most ``eps`` are not mixed classes.
        max_components: guard against a smoothed target passed without ``label_smoothing``
            (every class would count as mixed): more mixed classes in a row is an error.
        Other arguments as in :func:`decoupled_mixup_ce`.
    """
    check_logits(logits)
    n, c = logits.shape
    if not isinstance(target, Tensor) or tuple(target.shape) != (n, c):
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must have the shape of logits {(n, c)}, got {shape}")
    _check_dm_args(eta, mode, thr, scale, t, k, reduction, label_smoothing)
    check_range(eps, "eps", 0.0, 1.0)
    z = upcast(logits)
    target = target.to(z.dtype)
    if n and bool(((target < 0) | ~torch.isfinite(target)).any()):
        raise ValueError("target must be finite and non-negative")
    if n and bool(((target.sum(1) - 1.0).abs() > 1e-3).any()):
        raise ValueError("target rows must sum to 1")
    weight = check_weight(weight, n, z)
    share = (target - label_smoothing / c) / (1.0 - label_smoothing)
    n_mixed = int((share > eps).sum(1).max()) if n else 1
    if n_mixed > max_components:
        raise ValueError(
            f"target has a row with {n_mixed} classes above eps={eps} (> max_components="
            f"{max_components}): pass label_smoothing= if the target was smoothed")
    # the top-k classes of a row are distinct; padding entries (share ≤ eps) get no η
    share, idx = share.topk(max(n_mixed, 1), dim=1)
    mixed = share > eps
    # Padding entries must stay in R: point them at the row's top class (a repeat, not counted).
    dup = ~mixed
    dup[:, 0] = False
    idx = torch.where(dup, idx[:, :1], idx)
    eta_c = component_eta(share, mixed, eta, mode, thr, scale, t, k)
    rows = _decoupled_rows(z, idx, dup, None, eta_c, target.sum(1), dense_target=target)
    return reduce_rows(rows, weight, reduction)


class DecoupledMixupCrossEntropy(nn.Module):
    """DM(CE) with its hyper-parameters held for configs; see :func:`decoupled_mixup_ce`."""

    def __init__(self, eta: float = 0.1, mode: str = "both", thr: float = 0.5,
                 scale: str = "none", t: float = 1.0, k: float = 1.0,
                 label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_dm_args(eta, mode, thr, scale, t, k, reduction, label_smoothing)
        self.eta, self.mode, self.thr, self.scale = float(eta), mode, float(thr), scale
        self.t, self.k = float(t), float(k)
        self.label_smoothing, self.reduction = float(label_smoothing), reduction

    def forward(self, logits: Tensor, y_a: Tensor, y_b: Tensor, lam: LamLike,
                weight: Optional[Tensor] = None) -> Tensor:
        return decoupled_mixup_ce(logits, y_a, y_b, lam, eta=self.eta, mode=self.mode,
                                  thr=self.thr, scale=self.scale, t=self.t, k=self.k,
                                  weight=weight, reduction=self.reduction,
                                  label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return (f"eta={self.eta}, mode={self.mode!r}, thr={self.thr}, scale={self.scale!r}, "
                f"t={self.t}, k={self.k}, label_smoothing={self.label_smoothing}")


class DecoupledSoftTargetCrossEntropy(nn.Module):
    """Drop-in for ``timm.loss.SoftTargetCrossEntropy`` after ``timm.data.Mixup``.

    ``criterion(x, target)`` where ``target`` is the mixed (and possibly smoothed) label matrix;
    pass the ``label_smoothing`` the Mixup was built with. With ``eta=0`` it equals
    ``SoftTargetCrossEntropy``. See :func:`decoupled_mixup_ce_soft`.
    """

    def __init__(self, eta: float = 0.1, mode: str = "both", thr: float = 0.5,
                 scale: str = "none", t: float = 1.0, k: float = 1.0,
                 label_smoothing: float = 0.0, eps: float = 1e-6, max_components: int = 8,
                 reduction: str = "mean") -> None:
        super().__init__()
        _check_dm_args(eta, mode, thr, scale, t, k, reduction, label_smoothing)
        check_range(eps, "eps", 0.0, 1.0)
        self.eta, self.mode, self.thr, self.scale = float(eta), mode, float(thr), scale
        self.t, self.k = float(t), float(k)
        self.label_smoothing, self.eps = float(label_smoothing), float(eps)
        self.max_components, self.reduction = int(max_components), reduction

    def forward(self, x: Tensor, target: Tensor, weight: Optional[Tensor] = None) -> Tensor:
        return decoupled_mixup_ce_soft(
            x, target, eta=self.eta, mode=self.mode, thr=self.thr, scale=self.scale, t=self.t,
            k=self.k, weight=weight, reduction=self.reduction,
            label_smoothing=self.label_smoothing, eps=self.eps,
            max_components=self.max_components)

    def extra_repr(self) -> str:
        return (f"eta={self.eta}, mode={self.mode!r}, scale={self.scale!r}, "
                f"label_smoothing={self.label_smoothing}")

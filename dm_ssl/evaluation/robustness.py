"""Robustness and mixed-sample evaluation (spec §9: FGSM error, Table A7; Figure A1). Pure torch.

Models are any ``nn.Module`` returning logits (N, K) or a dict with ``'logits'``. Every
evaluation puts the model (and each submodule) in eval mode and restores each module's previous
mode afterwards. Device and dtype come from the inputs; nothing is moved to a device here
except the labels, which follow ``x``. Loaders yield ``(x, y, ...)`` tuples/lists or dicts with
``'x'``/``'y'`` (or USB's ``'x_lb'``/``'y_lb'``). All accuracies and error rates are in percent.

Definitions
-----------
* FGSM (Goodfellow et al., 2015), one step in ℓ∞ and in *pixel* space:
  ``x_adv = clip(x + ε·sign(∇_x CE(f((x − mean)/std), y)), lo, hi)``, with the summed CE, so
  each row's gradient does not depend on the batch size; ``sign(0) = 0``. FGSM error =
  100 · #{argmax f(x_adv) ≠ y} / N.
* Mixed-sample accuracy (Figure A1), for a mixed input with components a, b:
  top-1 correct iff argmax ∈ {y_a, y_b}; top-2 correct iff the set of the two highest logits
  equals {y_a, y_b}. Convention for y_a == y_b (e.g. a row paired with itself): the ideal
  two-hot target has a single class, so top-2 is correct iff the top-1 prediction equals y_a
  (top-1 and top-2 then agree on that row). Ties among logits follow ``torch.topk``.
* Occlusion accuracy: a box of ``round(H·√f) × round(W·√f)`` pixels (Python ``round``, half
  to even; a square for square images, the image's aspect ratio otherwise, so every f ≤ 1
  fits) is set to ``fill``; its area is within ``0.5·(H+W)·√f + 0.25`` of f·H·W.
  Its top-left corner is uniform over the valid positions (``patch="random"``, one box per
  image, from ``generator``) or the image centre, rounded down (``patch="center"``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dm_ssl.mixers.base import eval_mode, logits_of

__all__ = [
    "eval_mode", "fgsm_attack", "fgsm_error_rate", "mixed_accuracy", "mixed_topk_accuracy",
    "mixed_topk_correct", "occlusion_accuracy", "occlusion_box_size", "occlusion_masks",
]

Stats = Optional[Union[float, Sequence[float], Tensor]]
DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# ---------------------------------------------------------------------------------------------
# helpers


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    return logits_of(model(x))


def _split_batch(batch: Any) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from a ``(x, y, ...)`` tuple/list or a dict with x/y (or x_lb/y_lb)."""
    if isinstance(batch, dict):
        for kx, ky in (("x", "y"), ("x_lb", "y_lb")):
            if kx in batch and ky in batch:
                x, y = batch[kx], batch[ky]
                break
        else:
            raise ValueError(f"batch dict needs keys x/y or x_lb/y_lb, got {sorted(batch)}")
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        x, y = batch[0], batch[1]
    else:
        raise ValueError(f"a batch must be (x, y, ...) or a dict, got {type(batch).__name__}")
    return x, y.to(x.device)


def _stat(v: Stats, x: Tensor) -> Optional[Tensor]:
    """``mean``/``std`` as a tensor broadcasting over channel dim 1 of ``x``."""
    if v is None:
        return None
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if t.dim() == 0 or x.dim() < 2:
        return t
    return t.reshape(1, -1, *([1] * (x.dim() - 2)))


def _normalize(x: Tensor, mean: Stats, std: Stats) -> Tensor:
    """``(x − mean) / std``; either may be None (then it is skipped)."""
    m, s = _stat(mean, x), _stat(std, x)
    if m is not None:
        x = x - m
    if s is not None:
        x = x / s
    return x


def _percent(count: int, total: int) -> float:
    if total == 0:
        raise ValueError("the loader yielded no samples")
    return 100.0 * count / total


# ---------------------------------------------------------------------------------------------
# FGSM


def fgsm_attack(model: nn.Module, x: Tensor, y: Tensor, eps: float = 8 / 255, *,
                clamp: Optional[tuple[float, float]] = (0.0, 1.0), mean: Stats = None,
                std: Stats = None) -> Tensor:
    """One-step ℓ∞ FGSM in pixel space (see the module docstring).

    ``x_adv = clip(x + eps·sign(∇_x Σ_i CE(f((x_i − mean)/std), y_i)), *clamp)``.

    Args:
        model: returns logits or a dict with ``'logits'``; evaluated in eval mode.
        x: pixel-space batch (N, ...), values in ``clamp``'s range.
        y: integer labels (N,).
        eps: step size in pixel units (8/255 in the paper).
        clamp: ``(lo, hi)`` valid pixel range, or None for no clipping.
        mean, std: per-channel normalisation applied before the model (None: none).

    Returns:
        The detached adversarial batch, same shape/dtype/device as ``x``. The model's
        parameter ``.grad`` are left untouched (the gradient is ``torch.autograd.grad`` on x).
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    y = y.to(x.device)
    x_in = x.detach().clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        logits = _logits(model, _normalize(x_in, mean, std))
        loss = F.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_in)
    x_adv = x.detach() + eps * grad.sign()
    if clamp is not None:
        x_adv = x_adv.clamp(clamp[0], clamp[1])
    return x_adv.detach()


def fgsm_error_rate(model: nn.Module, loader_or_batches: Iterable[Any], eps: float = 8 / 255,
                    *, clamp: Optional[tuple[float, float]] = (0.0, 1.0), mean: Stats = None,
                    std: Stats = None) -> float:
    """FGSM error (%) of Table A7: ``100 · #{argmax f(x_adv) ≠ y} / N`` over all batches.

    ``eps = 0`` gives the clean error rate. Arguments as in :func:`fgsm_attack`.
    """
    wrong, total = 0, 0
    with eval_mode(model):
        for batch in loader_or_batches:
            x, y = _split_batch(batch)
            x_adv = fgsm_attack(model, x, y, eps, clamp=clamp, mean=mean, std=std)
            with torch.no_grad():
                pred = _logits(model, _normalize(x_adv, mean, std)).argmax(dim=1)
            wrong += int((pred != y).sum())
            total += y.shape[0]
    return _percent(wrong, total)


# ---------------------------------------------------------------------------------------------
# mixed-sample accuracy (Figure A1)


def mixed_topk_correct(logits: Tensor, y_a: Tensor, y_b: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row booleans ``(top1, top2)`` for mixed samples (definitions: module docstring).

    top-1: ``argmax ∈ {y_a, y_b}``. top-2: ``{top two} == {y_a, y_b}`` if y_a ≠ y_b, else
    ``argmax == y_a``.
    """
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (N, K) with K >= 2, got {tuple(logits.shape)}")
    y_a = y_a.to(logits.device).reshape(-1)
    y_b = y_b.to(logits.device).reshape(-1)
    top = logits.topk(2, dim=1).indices
    p1, p2 = top[:, 0], top[:, 1]
    top1 = (p1 == y_a) | (p1 == y_b)
    same_set = ((p1 == y_a) & (p2 == y_b)) | ((p1 == y_b) & (p2 == y_a))
    top2 = torch.where(y_a == y_b, p1 == y_a, same_set)
    return top1, top2


def mixed_topk_accuracy(logits: Tensor, y_a: Tensor, y_b: Tensor) -> dict[str, float]:
    """``{'top1': %, 'top2': %}`` over the rows of ``logits``; see :func:`mixed_topk_correct`."""
    top1, top2 = mixed_topk_correct(logits, y_a, y_b)
    n = top1.shape[0]
    return {"top1": _percent(int(top1.sum()), n), "top2": _percent(int(top2.sum()), n)}


def mixed_accuracy(model: nn.Module, loader: Iterable[Any], mixer: Any,
                   lam: Optional[float] = 0.5,
                   generator: Optional[torch.Generator] = None) -> dict[str, float]:
    """Mixed-sample top-1/top-2 accuracy (%) of Figure A1, aggregated over all samples.

    Each batch is mixed with ``mixer(x, y, lam=lam, generator=generator)`` (a
    :class:`dm_ssl.mixers.Mixer`, e.g. ``build_mixer('mixup')``; ``lam=None`` lets the mixer
    draw λ) with partners from a random permutation of the batch, the model is run on the
    mixed batch via ``MixResult.forward`` (so feature mixers work), and rows are scored with
    :func:`mixed_topk_correct` against ``(y_a, y_b)``. Mixing happens in the loader's input
    space (for mixup/cutmix this equals pixel-space mixing followed by normalisation).
    """
    c1, c2, total = 0, 0, 0
    with eval_mode(model):
        for batch in loader:
            x, y = _split_batch(batch)
            kwargs: dict[str, Any] = {"lam": lam, "generator": generator}
            if getattr(mixer, "needs_model", False):
                kwargs["model"] = model
            res = mixer(x, y, **kwargs)
            with torch.no_grad():
                out = res.forward(model)
            logits = logits_of(out)
            top1, top2 = mixed_topk_correct(logits, res.y_a, res.y_b)
            c1 += int(top1.sum())
            c2 += int(top2.sum())
            total += top1.shape[0]
    return {"top1": _percent(c1, total), "top2": _percent(c2, total)}


# ---------------------------------------------------------------------------------------------
# occlusion robustness


def occlusion_box_size(fraction: float, h: int, w: int) -> tuple[int, int]:
    """Box ``(round(h·√f), round(w·√f))``: area ≈ f·h·w, square when h == w."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    r = math.sqrt(fraction)
    return min(h, round(h * r)), min(w, round(w * r))


def occlusion_masks(n: int, h: int, w: int, fraction: float, *, patch: str = "random",
                    generator: Optional[torch.Generator] = None,
                    device: Union[str, torch.device, None] = None) -> Tensor:
    """Boolean masks (n, h, w), True inside each image's occluding box.

    Box size from :func:`occlusion_box_size`; top-left corner uniform over the
    ``(h − bh + 1) × (w − bw + 1)`` valid positions, drawn from ``generator`` (on the
    generator's device, then moved), or ``((h − bh) // 2, (w − bw) // 2)`` for ``"center"``.
    """
    if patch not in ("random", "center"):
        raise ValueError(f"patch must be 'random' or 'center', got {patch!r}")
    bh, bw = occlusion_box_size(fraction, h, w)
    if patch == "center":
        top = torch.full((n,), (h - bh) // 2, dtype=torch.long, device=device)
        left = torch.full((n,), (w - bw) // 2, dtype=torch.long, device=device)
    else:
        gdev = generator.device if generator is not None else "cpu"
        top = torch.randint(0, h - bh + 1, (n,), generator=generator, device=gdev).to(device)
        left = torch.randint(0, w - bw + 1, (n,), generator=generator, device=gdev).to(device)
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + bh)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + bw)
    return in_rows[:, :, None] & in_cols[:, None, :]


def occlusion_accuracy(model: nn.Module, loader: Iterable[Any],
                       fractions: Sequence[float] = DEFAULT_FRACTIONS, *,
                       patch: str = "random", fill: float = 0.0,
                       generator: Optional[torch.Generator] = None, mean: Stats = None,
                       std: Stats = None) -> dict[float, float]:
    """Top-1 accuracy (%) under occlusion: ``{fraction: accuracy}``.

    For every batch (N, C, H, W) and fraction f, a box of ≈ f·H·W pixels (all channels;
    :func:`occlusion_masks`) is set to ``fill`` and the model is evaluated on
    ``(x_occ − mean)/std`` (``fill`` is thus in the loader's space, pixels if ``mean``/``std``
    are given). Random boxes are drawn batch by batch, fraction by fraction, from
    ``generator``: the same seed gives the same result. Fraction 0 is the clean accuracy.
    """
    fractions = tuple(float(f) for f in fractions)
    for f in fractions:
        occlusion_box_size(f, 1, 1)  # validates f
    correct = dict.fromkeys(fractions, 0)
    total = 0
    with eval_mode(model), torch.no_grad():
        for batch in loader:
            x, y = _split_batch(batch)
            if x.dim() != 4:
                raise ValueError(f"x must be (N, C, H, W), got {tuple(x.shape)}")
            n, _, h, w = x.shape
            for f in fractions:
                mask = occlusion_masks(n, h, w, f, patch=patch, generator=generator,
                                       device=x.device)
                x_occ = x.masked_fill(mask[:, None], fill)
                pred = _logits(model, _normalize(x_occ, mean, std)).argmax(dim=1)
                correct[f] += int((pred == y).sum())
            total += n
    return {f: _percent(c, total) for f, c in correct.items()}

"""AutoMix (Liu et al., ECCV 2022) and SAMix (Li et al., 2021): learned mixers (spec §5.1).

A Mix Block (OpenMixup's ``PixelMixBlock``) turns feature maps of a *momentum encoder* — an
EMA of the classifier, momentum cosine-ramped from 0.999 to 0.999999 — into a pixel mask
``s`` of the image size; the mixed sample is ``(1 − s) ⊙ x_a + s ⊙ x_b`` (``s`` is the share
of component b). Each call makes two masks, as ``openmixup/models/classifiers/automix.py``:

* the *classifier's* mask, for the requested pairing and λ, detached: the classifier trains on
  it with no gradient reaching the Mix Block; the true share of a, ``λ_i = 1 − mean(s_i)``,
  is ``MixResult.lam`` (so DM(CE) gets the real share; the official loss uses the requested λ);
* the *Mix Block's* mask, for a second λ and (for permutation pairing) a second permutation:
  the momentum encoder (no parameter gradient) scores that mixed batch and the Mix Block
  trains on ``MixResult.aux_loss = w_block · ℓ(k(x_mix), y_a, y_b, λ) + w_mask · L_mask``,
  with no gradient reaching the classifier.

Mix Block (``MixBlock``), on features ``f_a, f_b`` (N, C, h, w) of the two components::

    (SAMix λ encoding)  f_a ← f_a (1 + λ̃ ·m),  f_b ← f_b (1 + (1 − λ̃)·m),
                        λ̃ = (4/3 λ³ − 2 λ² + (k+1) λ) / (k + 1/3)       (``lam_mul_k`` = k)
    v = value(f_b) (N, hw, 1);  q = query(f_a), k = key(f_b) (N, hw, C/r)
    P = softmax(q kᵀ / √(C/r))  (N, hw, hw);   s = sigmoid(up(P v))     (N, 1, H, W)

with SAMix's ``x_qk_concat`` (q and k both from cat(f_a, f_b)), its two-layer value network
(``value_hidden``) and bilinear upsampling. Mask losses (``mask_loss_mode``), with m̄ the mean
of s (over the batch when λ is one per batch, as the official code; per sample otherwise) and
δ the margin: ``L1``: max(|1 − m̄ − λ| − δ, 0); ``L1+Variance``: that − 2·Var(s);
``L2+Variance``: max((1 − m̄ − λ)² − δ², 0) − 2·Var(s); ``Sparsity``: max(mean|s(s − 1)| − δ, 0).

SAMix's "η-balanced" Mix Block loss is, in OpenMixup's code, a soft cross-entropy with class
weights ``max(1[ȳ_c > 0], neg_weight)`` (``neg_weight = 0.5``). Those weights multiply the
terms ``−ȳ_c log p_c``, which are 0 wherever ``ȳ_c = 0``, so for two-class mixed targets the
official loss equals the plain mixup cross-entropy; :func:`class_weighted_soft_ce` computes it
exactly as the official code does (README: Differences from the official code).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _random
from .base import (
    Mixer,
    MixResult,
    Pairing,
    eval_mode,
    frozen_bn_stats,
    lam_dtype,
    logits_of,
    unwrap,
)
from .manifoldmix import find_layer
from .registry import register_mixer

MASK_LOSSES = ("L1", "L1+Variance", "L2+Variance", "Sparsity")
UPSAMPLING = ("nearest", "bilinear", "bicubic")

# the stage whose output feeds the Mix Block: stage 3 of 4 for ResNets (OpenMixup's CIFAR
# R-18/RX-50 ``mask_layer=2``), stage 2 of 3 for WRNs (its WRN-28-8 ``mask_layer=1``)
_MASK_LAYERS = ((("layer1", "layer2", "layer3", "layer4"), "layer3"),
                (("layer1", "layer2", "layer3"), "layer2"),
                (("block1", "block2", "block3"), "block2"))


def detect_mask_layer(model: nn.Module) -> str:
    """``layer3`` for ResNets (layer1..layer4); ``layer2`` / ``block2`` for three-stage nets
    (dm_ssl's small CNN, WRNs). Transformers as OpenMixup's ImageNet configs: a ViT / DeiT's
    middle block (``blocks.5`` of 12, its ``out_indices=(5, 11)``), a Swin's stage-2 output
    after patch merging (7×7×768 for Swin-T: timm's ``layers.3.downsample``)."""
    root = unwrap(model)
    names = {n for n, _ in root.named_modules()}
    found = _transformer(root)
    if found is not None:
        kind, prefix, module = found
        if kind == "vit":
            return f"{prefix}blocks.{max(len(module.blocks) // 2 - 1, 0)}"
        layers = getattr(module, "layers", None)
        if isinstance(layers, nn.Sequential) and len(layers) >= 2 \
                and hasattr(layers[-1], "downsample"):
            return f"{prefix}layers.{len(layers) - 1}.downsample"
    for family, layer in _MASK_LAYERS:
        # at the top or inside a wrapper (timm nets: ``model.layer3``), shallowest first
        prefixes = sorted((n[: -len(family[0])] for n in names
                           if n == family[0] or n.endswith("." + family[0])), key=len)
        for prefix in prefixes:
            if all(prefix + n in names for n in family):
                return prefix + layer
    raise ValueError(f"mask_layer: could not find layer1..layer4 or block1..block3 in "
                     f"{type(root).__name__}; pass mask_layer='<module name>' (the feature map "
                     "the Mix Block reads)")


class _Captured(Exception):
    """Raised by the capture hook to stop a forward once the feature map is taken."""


def _transformer(root: nn.Module) -> Optional[Tuple[str, str, nn.Module]]:
    """The first timm transformer inside ``root``: ``("vit", prefix, module)`` for a ViT /
    DeiT (patch tokens after ``num_prefix_tokens`` prefix tokens, ``blocks``), ``("swin",
    prefix, module)`` for a Swin or another ``output_fmt='NHWC'`` net; None."""
    for name, module in root.named_modules():
        prefix = name + "." if name else ""
        if hasattr(module, "num_prefix_tokens") and isinstance(
                getattr(module, "blocks", None), nn.Sequential):
            return "vit", prefix, module
        if getattr(module, "output_fmt", None) == "NHWC":
            return "swin", prefix, module
    return None


def feature_layout(model: nn.Module) -> str:
    """How ``model``'s intermediate outputs are laid out: ``NCHW`` (CNNs), ``NHWC`` (timm's
    Swin and other ``output_fmt='NHWC'`` nets) or ``tokens:<p>`` (a ViT's ``(N, p + h·w, C)``
    tokens with ``p`` prefix tokens: class / distillation / registers)."""
    found = _transformer(unwrap(model))
    if found is None:
        return "NCHW"
    kind, _, module = found
    return f"tokens:{int(module.num_prefix_tokens)}" if kind == "vit" else "NHWC"


def as_feature_map(out: Tensor, layout: str = "NCHW") -> Tensor:
    """An intermediate output as the Mix Block's (N, C, h, w) map (OpenMixup reshapes a ViT's
    patch tokens, without the class token, to the patch grid the same way)."""
    if layout.startswith("tokens:") and out.dim() == 3:
        tokens = out[:, int(layout.split(":")[1]):]
        side = math.isqrt(tokens.shape[1])
        if side * side != tokens.shape[1]:
            raise ValueError(f"{tokens.shape[1]} patch tokens do not form a square grid")
        return tokens.transpose(1, 2).reshape(out.shape[0], out.shape[2], side, side)
    if layout == "NHWC" and out.dim() == 4:
        return out.permute(0, 3, 1, 2)
    return out


def capture_features(model: nn.Module, layer: str, x: Tensor, layout: str = "NCHW") -> Tensor:
    """The output of ``model.<layer>`` for input ``x`` as a (N, C, h, w) map (see
    :func:`as_feature_map`); the layers after it are not run."""
    module = find_layer(model, layer)
    store: Dict[str, Tensor] = {}

    def hook(_: nn.Module, __: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            out = as_feature_map(out, layout)
        if not isinstance(out, Tensor) or out.dim() != 4:
            raise ValueError(f"mask_layer {layer!r} must output a feature map (N, C, h, w) or "
                             f"ViT tokens, got {type(out).__name__} "
                             f"{tuple(getattr(out, 'shape', ()))}")
        store["f"] = out
        raise _Captured

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Captured:
        pass
    finally:
        handle.remove()
    if "f" not in store:
        raise ValueError(f"mask_layer {layer!r} did not run in the forward pass")
    return store["f"]


def momentum_at(it: int, total: int, base: float = 0.999, end: float = 0.999999,
                scope: Sequence[float] = (0.1, 1.0)) -> float:
    """OpenMixup's ``CosineScheduleHook`` (``warming_up='constant'``): ``base`` before
    ``scope[0]·T``, then ``end − (end − base)·(cos(π t / T_max) + 1)/2`` up to
    ``T_max = scope[1]·T``, ``end`` after."""
    max_it = int(total * scope[1]) if scope[1] < 1 else total
    min_it = int(total * scope[0]) if scope[0] > 0 else 0
    if it < min_it:
        return base
    t = min(it, max_it)
    return end - (end - base) * (math.cos(math.pi * t / max(max_it, 1)) + 1) / 2


def rescale_lam(lam: Tensor, k: float) -> Tensor:
    """SAMix's λ rescaling ``(4/3 λ³ − 2 λ² + (k+1) λ) / (k + 1/3)`` (k ≥ 0; maps 0→0, 1→1)."""
    k = k + 1
    return (4 / 3 * lam ** 3 - 2 * lam ** 2 + k * lam) / (k - 2 / 3)


def mask_loss(mask_b: Tensor, lam: Tensor, mode: str = "L1", margin: float = 0.0,
              per_sample: bool = False) -> Tensor:
    """The Mix Block's mask regulariser (module docstring), ``mask_b`` (N, 1, H, W) the share
    of component b, ``lam`` (N,) the requested share of a."""
    n = mask_b.shape[0]
    lam = lam.to(mask_b.dtype)
    if per_sample:
        m = mask_b.reshape(n, -1).mean(1)
        var = ((mask_b - m.view(n, 1, 1, 1)) ** 2).mean()
        gap = 1 - m - lam
    else:  # one λ per batch: the official form, one batch mean
        m = mask_b.mean()
        var = ((mask_b - m) ** 2).mean()
        gap = 1 - m - lam[0]
    if mode == "L1":
        return torch.clamp(gap.abs() - margin, min=0).mean()
    if mode == "L1+Variance":
        return torch.clamp(gap.abs() - margin, min=0).mean() - 2 * var
    if mode == "L2+Variance":
        return torch.clamp(gap ** 2 - margin ** 2, min=0).mean() - 2 * var
    if mode == "Sparsity":
        return torch.clamp((mask_b * (mask_b - 1)).abs().mean() - margin, min=0)
    raise ValueError(f"mask_loss_mode must be one of {', '.join(MASK_LOSSES)}, got {mode!r}")


def class_weighted_soft_ce(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor,
                           neg_weight: float = 1.0, weight: Optional[Tensor] = None) -> Tensor:
    """OpenMixup's soft CE of the mixed target ``ȳ = λ·1[y_a] + (1 − λ)·1[y_b]`` with class
    weights ``max(1[ȳ > 0], neg_weight)``: ``mean_i −Σ_c w_ic ȳ_ic log softmax(z_i)_c``. The
    weights only meet zero terms on negative classes, so this is the mixup CE (see above).
    ``weight`` (N,) multiplies each row (the mean still divides by N, as FixMatch's mask)."""
    c = logits.shape[1]
    lam = lam.to(logits.dtype).view(-1, 1)
    target = lam * F.one_hot(y_a, c).to(logits.dtype) + (1 - lam) * F.one_hot(y_b, c).to(
        logits.dtype)
    cls_w = (target > 0).to(logits.dtype).clamp(min=neg_weight)
    rows = (-(target * F.log_softmax(logits, dim=-1)) * cls_w).sum(1)
    if weight is not None:
        rows = rows * weight.to(rows.dtype)
    return rows.mean()


class MixBlock(nn.Module):
    """OpenMixup's ``PixelMixBlock`` (AutoMix; SAMix options): feature maps → mask of b."""

    def __init__(self, in_channels: int, reduction: int = 2, use_scale: bool = True,
                 lam_concat: bool = False, lam_concat_v: bool = False, lam_mul: float = 0.0,
                 lam_residual: bool = False, value_hidden: Optional[int] = None,
                 x_qk_concat: bool = False, x_v_concat: bool = False) -> None:
        super().__init__()
        if lam_concat and (lam_concat_v or lam_mul or x_qk_concat):
            raise ValueError("lam_concat excludes lam_concat_v, lam_mul and x_qk_concat "
                             "(each already encodes λ or the pair into q, k)")
        if lam_concat_v and x_v_concat:  # the official code builds a value conv that never fits
            raise ValueError("lam_concat_v and x_v_concat exclude each other (both set v)")
        if not 0 <= float(lam_mul) <= 1:
            raise ValueError(f"lam_mul must be in [0, 1], got {lam_mul!r}")
        self.inter_channels = max(int(in_channels) // int(reduction), 1)
        self.use_scale, self.lam_concat, self.lam_concat_v = use_scale, lam_concat, lam_concat_v
        self.lam_mul, self.lam_residual = float(lam_mul), lam_residual
        self.x_qk_concat, self.x_v_concat = x_qk_concat, x_v_concat
        qk_in = in_channels + 1 if lam_concat else in_channels
        v_in = in_channels + 1 if (lam_concat or lam_concat_v) else in_channels
        if x_qk_concat:
            qk_in = 2 * in_channels
        if x_v_concat:
            v_in = 2 * in_channels
        if value_hidden is None:
            self.value: nn.Module = nn.Conv2d(v_in, 1, 1)
        else:  # SAMix's ConvNeck: conv-BN-ELU, conv (no bias, no last norm)
            self.value = nn.Sequential(
                nn.Conv2d(v_in, int(value_hidden), 1, bias=False),
                nn.BatchNorm2d(int(value_hidden)), nn.ELU(),
                nn.Conv2d(int(value_hidden), 1, 1, bias=False))
        self.key = nn.Conv2d(qk_in, self.inter_channels, 1) if x_qk_concat else None
        self.query = nn.Conv2d(qk_in, self.inter_channels, 1)
        for m in self.modules():  # OpenMixup's init_weights(init_linear='normal')
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, f_a: Tensor, f_b: Tensor, lam: Tensor, size: Tuple[int, int],
                up_mode: str = "nearest", lam_mul_k: float = -1.0) -> Tensor:
        """Mask of component b, (N, 1, *size) in (0, 1); ``lam`` (N,) the share of a."""
        n, _, h, w = f_a.shape
        lam = lam.to(f_a.dtype).view(n, 1, 1, 1)
        if self.lam_mul > 0:
            lam_r = rescale_lam(lam, lam_mul_k) if lam_mul_k >= 0 else lam
            if self.lam_residual:
                f_a, f_b = f_a * (1 + lam_r * self.lam_mul), f_b * (1 + (1 - lam_r) * self.lam_mul)
            else:
                f_a, f_b = f_a * lam_r, f_b * (1 - lam_r)
        if self.lam_concat:
            block = lam.expand(n, 1, h, w)
            f_a, f_b = torch.cat([f_a, block], 1), torch.cat([f_b, 1 - block], 1)
        v = torch.cat([f_a, f_b], 1) if self.x_v_concat else f_b
        if self.lam_concat_v:
            v = torch.cat([f_b, 1 - lam.expand(n, 1, h, w)], 1)
        v = self.value(v).reshape(n, 1, -1).permute(0, 2, 1)          # (N, hw, 1)
        if self.x_qk_concat:
            f_a = f_b = torch.cat([f_a, f_b], 1)
        q = self.query(f_a).reshape(n, self.inter_channels, -1).permute(0, 2, 1)
        k = (self.key or self.query)(f_b).reshape(n, self.inter_channels, -1)
        att = torch.matmul(q.float(), k.float())                       # fp32, as the official
        if self.use_scale:
            att = att / self.inter_channels ** 0.5
        mask = torch.matmul(att.softmax(-1), v.float()).reshape(n, 1, h, w)
        mask = F.interpolate(mask, size=size, mode=up_mode)
        return torch.sigmoid(mask)


def _choices(value: Union[Any, Sequence[Any]], name: str, allowed: Optional[Sequence[str]] = None
             ) -> Tuple[Any, ...]:
    out = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not out:
        raise ValueError(f"{name} must not be empty")
    if allowed is not None and any(v not in allowed for v in out):
        raise ValueError(f"{name} must be one of {', '.join(allowed)} (or a list), got {value!r}")
    return out


@register_mixer("automix")
class AutoMix(Mixer):
    """AutoMix with OpenMixup's CIFAR-100 ResNet-18 defaults (``r18_l2_a2_near_L1_01``).

    Args:
        alpha: Beta(α, α) of both λ draws (official 2).
        mask_layer: module whose output feeds the Mix Block; None: ``layer3`` / ``block2``.
        momentum, end_momentum, momentum_scope: the momentum encoder's cosine schedule.
        mask_loss: weight of the mask loss (0.1); ``mask_loss_mode``, ``mask_loss_margin``;
            ``mask_loss_decay='cosine'`` anneals the weight to 0 over the run (ImageNet configs).
        block_loss_weight: weight of the Mix Block's mixup loss (``head_mix_k``, 1).
        neg_weight: class weight of negative classes in that loss (SAMix 0.5; see above).
        lam_margin: λ or 1 − λ at most this → the classifier gets a plain Mixup (0.08).
        mask_adjust: probability of rescaling the classifier's mask to the requested λ (0).
        switch_off: OpenMixup's ``switch_off`` (its ImageNet ViT configs 0.8): the Mix Block's
            mixup loss (and the momentum encoder's forward of its sample) runs with probability
            ``switch_off · c`` per step, ``c`` the mask-loss cosine factor (1 without
            ``mask_loss_decay``); the mask loss always. 0 (default): every step.
        upsampling: ``nearest`` (AutoMix) / ``bilinear`` (SAMix), or a list to draw from.
        reduction, use_scale, lam_concat, lam_concat_v, lam_mul, lam_mul_k, lam_residual,
        value_hidden, x_qk_concat, x_v_concat: the Mix Block's options (:class:`MixBlock`).
    """

    needs_model = True
    floating_only = True
    learned = True

    def __init__(self, alpha: Optional[float] = 2.0, bias_to_a: bool = False,
                 per_sample: bool = False, mask_layer: Optional[str] = None,
                 momentum: float = 0.999, end_momentum: float = 0.999999,
                 momentum_scope: Sequence[float] = (0.1, 1.0), mask_loss: float = 0.1,
                 mask_loss_mode: str = "L1", mask_loss_margin: float = 0.1,
                 mask_loss_decay: str = "none",
                 block_loss_weight: float = 1.0, neg_weight: float = 1.0,
                 lam_margin: float = 0.08, mask_adjust: float = 0.0, switch_off: float = 0.0,
                 upsampling: Union[str, Sequence[str]] = "nearest", reduction: int = 2,
                 use_scale: bool = True, lam_concat: bool = False, lam_concat_v: bool = False,
                 lam_mul: float = 0.0, lam_mul_k: Union[float, Sequence[float]] = -1.0,
                 lam_residual: bool = False, value_hidden: Optional[int] = None,
                 x_qk_concat: bool = False, x_v_concat: bool = False) -> None:
        super().__init__(alpha, bias_to_a, per_sample)
        if not 0 <= momentum <= end_momentum <= 1:
            raise ValueError(f"need 0 <= momentum <= end_momentum <= 1, got {momentum!r}, "
                             f"{end_momentum!r}")
        scope = tuple(float(s) for s in momentum_scope)
        if len(scope) != 2 or not 0 <= scope[0] <= scope[1] <= 1:
            raise ValueError(f"momentum_scope must be [start, end] in [0, 1], "
                             f"got {momentum_scope!r}")
        if mask_loss_decay not in ("none", "cosine"):
            raise ValueError(f"mask_loss_decay must be none or cosine, got {mask_loss_decay!r}")
        if mask_loss_mode not in MASK_LOSSES:
            raise ValueError(f"mask_loss_mode must be one of {', '.join(MASK_LOSSES)}, "
                             f"got {mask_loss_mode!r}")
        for name, value, lo, hi in (("mask_loss", mask_loss, 0, math.inf),
                                    ("mask_loss_margin", mask_loss_margin, 0, 1),
                                    ("block_loss_weight", block_loss_weight, 0, math.inf),
                                    ("neg_weight", neg_weight, 0, 1),
                                    ("lam_margin", lam_margin, 0, 0.5),
                                    ("mask_adjust", mask_adjust, 0, 1),
                                    ("switch_off", switch_off, 0, 1)):
            if not lo <= float(value) <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
        self.mask_layer = mask_layer
        self.momentum, self.end_momentum, self.momentum_scope = momentum, end_momentum, scope
        self.mask_loss, self.mask_loss_mode = float(mask_loss), mask_loss_mode
        self.mask_loss_decay = mask_loss_decay
        self._progress = 0.0  # it / total of the current step (set by schedule)
        self.mask_loss_margin = float(mask_loss_margin)
        self.block_loss_weight, self.neg_weight = float(block_loss_weight), float(neg_weight)
        self.lam_margin, self.mask_adjust = float(lam_margin), float(mask_adjust)
        self.switch_off = float(switch_off)
        self.feature_layout = "NCHW"  # set from the network in setup
        self.upsampling = _choices(upsampling, "upsampling", UPSAMPLING)
        self.lam_mul_k = tuple(min(float(k), 10.0) if k >= 0 else -1.0
                               for k in _choices(lam_mul_k, "lam_mul_k"))
        self.block_options = dict(reduction=int(reduction), use_scale=bool(use_scale),
                                  lam_concat=bool(lam_concat), lam_concat_v=bool(lam_concat_v),
                                  lam_mul=float(lam_mul), lam_residual=bool(lam_residual),
                                  value_hidden=value_hidden, x_qk_concat=bool(x_qk_concat),
                                  x_v_concat=bool(x_v_concat))
        self.block: Optional[MixBlock] = None
        self.encoder: Optional[nn.Module] = None
        self.encoder_head: Optional[nn.Module] = None
        self.register_buffer("updated_to", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        keys = ("alpha", "mask_layer", "momentum", "end_momentum", "mask_loss",
                "mask_loss_mode", "lam_margin", "upsampling", "neg_weight", "switch_off")
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)

    # -- the network-dependent parts ------------------------------------------------------------
    def setup(self, model: nn.Module, input_shape: Sequence[int],
              head: Optional[nn.Module] = None) -> None:
        """The momentum encoder (a frozen copy of ``model`` and of ``head``, the mix head, when
        the mixed loss has one) and the Mix Block, sized from one dry forward."""
        net = unwrap(model)
        self.mask_layer = self.mask_layer or detect_mask_layer(net)
        self.encoder = copy.deepcopy(net).requires_grad_(False)
        self.encoder_head = (None if head is None
                             else copy.deepcopy(head).requires_grad_(False))
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        probe = torch.zeros(2, *input_shape, device=device)
        self.feature_layout = feature_layout(net)
        with torch.no_grad(), eval_mode(self.encoder):
            feat = capture_features(self.encoder, self.mask_layer, probe, self.feature_layout)
        self.block = MixBlock(feat.shape[1], **self.block_options).to(device)

    def _require_setup(self) -> Tuple[nn.Module, MixBlock]:
        if self.encoder is None or self.block is None:
            raise RuntimeError(f"{self.name}: call setup(model, input_shape) first (the mixing "
                               "pipeline does when it is built)")
        return self.encoder, self.block

    @torch.no_grad()
    def schedule(self, it: int, total: int, model: Optional[nn.Module] = None,
                 head: Optional[nn.Module] = None) -> None:
        """Apply the momentum update of the steps before ``it`` not yet applied: after step t
        the encoder moves to ``m_t·k + (1 − m_t)·q`` (OpenMixup runs it after each step; here
        it runs before the next step's masks, which reads the same parameters)."""
        encoder, _ = self._require_setup()
        if model is None:
            raise ValueError(f"{self.name}.schedule needs the online network (model=...)")
        self._progress = min(max(it / max(total, 1), 0.0), 1.0)
        if it <= int(self.updated_to):
            return
        m = momentum_at(it - 1, total, self.momentum, self.end_momentum, self.momentum_scope)
        pairs = [(encoder, unwrap(model))]
        if self.encoder_head is not None and head is not None:
            pairs.append((self.encoder_head, head))
        for k_mod, q_mod in pairs:
            k_params, q_params = list(k_mod.parameters()), list(q_mod.parameters())
            if len(k_params) != len(q_params):
                raise RuntimeError(f"{self.name}: the momentum encoder no longer matches the "
                                   "network it was copied from")
            for p_k, p_q in zip(k_params, q_params):
                p_k.mul_(m).add_(p_q.detach(), alpha=1 - m)
            # the encoder normalises with batch statistics in training (its running ones are
            # never updated there); it carries the online ones for eval-mode use (--mixed)
            for b_k, b_q in zip(k_mod.buffers(), q_mod.buffers()):
                b_k.copy_(b_q)
        self.updated_to.fill_(it)

    def predict_k(self, x: Tensor) -> Tensor:
        """The momentum encoder's logits (its mix head's when there is one)."""
        encoder, _ = self._require_setup()
        out = encoder(x)
        if self.encoder_head is not None:
            return self.encoder_head(out["feat"])
        return logits_of(out)

    # -- one mixing call ------------------------------------------------------------------------
    def mix(self, x_a: Tensor, x_b: Tensor, lam: Tensor, *,
            generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError(f"{self.name} mixes through mix_batch (it needs the model)")

    def mix_batch(self, x: Tensor, y: Tensor, pair: Pairing, lam: Tensor, *,
                  generator: Optional[torch.Generator], model: Optional[nn.Module],
                  weight: Optional[Tensor] = None) -> MixResult:
        encoder, block = self._require_setup()
        n, size, dev = x.shape[0], tuple(x.shape[2:]), x.device
        # the Mix Block's own λ and pairing (a second draw, as the official lam[0], index_mb)
        lam_mb = (lam if self.alpha is None else
                  self.sample_lam(n if self.per_sample else 1, generator=generator,
                                  device=dev).expand(n))
        index_mb = (None if pair.index is None
                    else _random.randperm(n, generator=generator, device=dev))
        up = self.upsampling[int(_random.randint(len(self.upsampling), 1, generator=generator))
                             ] if len(self.upsampling) > 1 else self.upsampling[0]
        k_mul = self.lam_mul_k[int(_random.randint(len(self.lam_mul_k), 1, generator=generator))
                               ] if len(self.lam_mul_k) > 1 else self.lam_mul_k[0]
        adjust = (self.mask_adjust > 0 and
                  float(_random.rand(1, generator=generator, device=dev)) < self.mask_adjust)
        with torch.no_grad(), frozen_bn_stats(encoder):
            inputs = x if pair.index is not None else torch.cat([x, pair.x_b])
            feat = capture_features(encoder, self.mask_layer, inputs, self.feature_layout)
        f_a = feat[:n]
        if pair.index is None:
            f_b_bb = f_b_mb = feat[n:]
            x_b_mb, y_b_mb = pair.x_b, pair.y_b
        else:
            f_b_bb, f_b_mb = feat[pair.index], feat[index_mb]
            x_b_mb, y_b_mb = x[index_mb], y[index_mb.to(y.device)]

        # the classifier's mask: no gradient to the Mix Block
        with torch.no_grad():
            s_bb = block(f_a, f_b_bb, lam, size, up, k_mul)
            if adjust:
                s_bb = _adjust_to_lam(s_bb, lam)
            plain = (lam <= self.lam_margin) | (lam >= 1 - self.lam_margin)
            if bool(plain.any()):  # degenerate λ: plain Mixup, as the official lam_margin
                s_bb = torch.where(plain.view(n, 1, 1, 1), (1 - lam).to(s_bb.dtype).view(
                    n, 1, 1, 1).expand_as(s_bb), s_bb)
        s_bb = s_bb.to(x.dtype)
        mixed = x * (1 - s_bb) + pair.x_b * s_bb
        lam_eff = 1 - s_bb.reshape(n, -1).double().mean(1)

        if not self.training:  # evaluation (mixed-sample accuracy): no Mix Block loss
            return MixResult(x=mixed, y_a=y, y_b=pair.y_b, lam=lam_eff.to(lam_dtype(x)),
                             index=pair.index)
        # the Mix Block's loss: through the momentum encoder, no gradient to the classifier
        s_mb = block(f_a, f_b_mb, lam_mb, size, up, k_mul)
        lam_mb_f = lam_mb.to(torch.float32)
        cosine = (0.5 * (1 + math.cos(math.pi * self._progress))
                  if self.mask_loss_decay == "cosine" else 1.0)  # OpenMixup's cos_annealing
        train_block = (self.switch_off <= 0 or float(
            _random.rand(1, generator=generator, device=dev)) <= self.switch_off * cosine)
        loss_mask = mask_loss(s_mb, lam_mb_f, self.mask_loss_mode, self.mask_loss_margin,
                              per_sample=self.per_sample)
        aux = self.mask_loss * cosine * loss_mask   # cosine: CustomCosineAnnealingHook
        logs = {"mixblock_mask_loss": loss_mask.item(),
                "mixblock_lam_gap": (lam_eff - lam.double()).abs().mean().item()}
        if train_block:
            x_mb = x.detach() * (1 - s_mb.to(x.dtype)) + x_b_mb.detach() * s_mb.to(x.dtype)
            with frozen_bn_stats(encoder):
                logits_k = self.predict_k(x_mb).float()
            if weight is not None and pair.index is not None:  # rows follow their partners
                weight = weight * weight[index_mb.to(weight.device)]
            loss_block = class_weighted_soft_ce(logits_k, y, y_b_mb, lam_mb_f, self.neg_weight,
                                                weight=weight)
            aux = aux + self.block_loss_weight * loss_block
            logs["mixblock_loss"] = loss_block.item()
        return MixResult(x=mixed, y_a=y, y_b=pair.y_b, lam=lam_eff.to(lam_dtype(x)),
                         index=pair.index, aux_loss=aux, logs=logs)


def _adjust_to_lam(s: Tensor, lam: Tensor, eps: float = 1e-8) -> Tensor:
    """OpenMixup's ``mask_adjust``: rescale each mask so the share of a is the requested λ
    (the share that is too large is scaled down). The official code compares with the Mix
    Block's λ (``lam[0]``); here it is the classifier's own λ."""
    n = s.shape[0]
    a = (1 - s).clamp(eps, 1 - eps)                       # share of a per pixel
    mean = a.reshape(n, -1).mean(1)
    lam = lam.to(s.dtype)
    larger, smaller = (mean > lam + eps).view(n, 1, 1, 1), (mean < lam - eps).view(n, 1, 1, 1)
    a_down = a * (lam / mean).view(n, 1, 1, 1)
    b_down = (1 - a) * ((1 - lam) / (1 - mean)).view(n, 1, 1, 1)
    s_new = torch.where(larger, 1 - a_down, s)
    return torch.where(smaller, b_down, s_new)


@register_mixer("samix")
class SAMix(AutoMix):
    """SAMix: AutoMix plus SAMix's λ encoding (``lam_mul``, residual, k = 0.25), its
    non-linear value network (256 → 128 → 1), q/k from both feature maps, bilinear
    upsampling, the L1+Variance mask loss and ``neg_weight = 0.5`` in the Mix Block's loss
    (OpenMixup's ``r18_l2_a2_bili_val_dp0_mul_x_cat_L1_var_01``)."""

    def __init__(self, alpha: Optional[float] = 2.0, bias_to_a: bool = False,
                 per_sample: bool = False, *, upsampling: Union[str, Sequence[str]] = "bilinear",
                 lam_mul: float = 1.0, lam_mul_k: Union[float, Sequence[float]] = 0.25,
                 lam_residual: bool = True, value_hidden: Optional[int] = 128,
                 x_qk_concat: bool = True, mask_loss_mode: str = "L1+Variance",
                 neg_weight: float = 0.5, **kwargs: Any) -> None:
        super().__init__(alpha, bias_to_a, per_sample, upsampling=upsampling, lam_mul=lam_mul,
                         lam_mul_k=lam_mul_k, lam_residual=lam_residual,
                         value_hidden=value_hidden, x_qk_concat=x_qk_concat,
                         mask_loss_mode=mask_loss_mode, neg_weight=neg_weight, **kwargs)

"""Pure geometry of the mixers (spec §5): boxes, Fourier masks, saliency. No state, no classes.

Conventions: boxes are int64 tensors of shape (N, 4) holding half-open ``[y0, y1, x0, x1]``
in pixels; masks are bool tensors; λ is a float tensor of shape (N,). Everything is
vectorised over the batch and stays on the device of its inputs.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _random

# ITU-R 601 luma weights, the grey conversion OpenCV's saliency uses (RGB order here).
_LUMA = (0.299, 0.587, 0.114)


def rand_bbox(height: int, width: int, lam: Tensor, *, centers: Optional[Tensor] = None,
              generator: Optional[torch.Generator] = None) -> Tensor:
    """One CutMix box per sample, of side ``floor(H·√(1−λ)) × floor(W·√(1−λ))``.

    Unclipped area ≈ (1−λ)·H·W (timm's ``rand_bbox``); the centre is uniform over the
    pixels unless ``centers`` (N, 2) = (cy, cx) is given, and the box is clipped to the image.
    Unlike timm, the unclipped box spans exactly ``cut`` pixels even when ``cut`` is odd.

    Returns (N, 4) int64 ``[y0, y1, x0, x1]``; use :func:`box_area` for the true pasted area.
    """
    lam = lam.to(torch.float64)
    n, device = lam.shape[0], lam.device
    ratio = torch.sqrt(1.0 - lam)
    cut_h = torch.floor(height * ratio).long()
    cut_w = torch.floor(width * ratio).long()
    if centers is None:
        cy = _random.randint(height, n, generator=generator, device=device)
        cx = _random.randint(width, n, generator=generator, device=device)
    else:
        cy, cx = centers.to(device=device, dtype=torch.long).unbind(1)
    y0 = cy - cut_h // 2
    x0 = cx - cut_w // 2
    ys = torch.stack([y0, y0 + cut_h], 1).clamp(0, height)
    xs = torch.stack([x0, x0 + cut_w], 1).clamp(0, width)
    return torch.cat([ys, xs], 1)


def rand_inner_box(height: int, width: int, tau: Tensor, *,
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """One box per sample of side ``floor(τ·H) × floor(τ·W)`` (at least 1 px), fully inside.

    The top-left corner is uniform over the positions where the whole box fits, so nothing
    is clipped (ResizeMix pastes the *whole* resized source there). Returns (N, 4) int64.
    """
    tau = tau.to(torch.float64)
    n, device = tau.shape[0], tau.device
    box_h = torch.floor(height * tau).long().clamp(1, height)
    box_w = torch.floor(width * tau).long().clamp(1, width)
    u = _random.rand((2, n), generator=generator, device=device)
    y0 = torch.minimum(torch.floor(u[0] * (height - box_h + 1)).long(), height - box_h)
    x0 = torch.minimum(torch.floor(u[1] * (width - box_w + 1)).long(), width - box_w)
    return torch.stack([y0, y0 + box_h, x0, x0 + box_w], 1)


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Bool mask (N, 1, H, W), True inside each sample's box (by broadcasting, no loop)."""
    ys = torch.arange(height, device=boxes.device)
    xs = torch.arange(width, device=boxes.device)
    in_y = (ys >= boxes[:, 0:1]) & (ys < boxes[:, 1:2])
    in_x = (xs >= boxes[:, 2:3]) & (xs < boxes[:, 3:4])
    return (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1)


def box_area(boxes: Tensor) -> Tensor:
    """Pixel area of each (already clipped) box, int64 (N,)."""
    return (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])


def fourier_mask(n: int, height: int, width: int, *, decay_power: float = 3.0,
                 generator: Optional[torch.Generator] = None,
                 device: Optional[torch.device] = None) -> Tensor:
    """N grey low-frequency masks (N, H, W), float32, one per sample (FMix, spec §5).

    A complex Gaussian spectrum scaled by ``1 / max(f, 1/max(H, W))^δ``, with f the radial
    frequency of each rfft bin, then ``irfft2`` back to pixels (Harris et al., 2020).
    A larger decay power δ keeps fewer high frequencies, giving blobbier masks.
    """
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    freq = torch.sqrt(fy * fy + fx * fx).clamp_min(1.0 / max(height, width))
    scale = (freq ** -decay_power).to(device=device, dtype=torch.float32)
    param = _random.randn((n, 2, height, width // 2 + 1), generator=generator, device=device)
    spectrum = torch.complex(param[:, 0], param[:, 1]) * scale
    return torch.fft.irfft2(spectrum, s=(height, width))


def binarise_mask(mask: Tensor, lam: Tensor) -> Tensor:
    """Bool (N, H, W): each sample's top ``round(λ_i·H·W)`` pixels of ``mask`` set True.

    Exactly that many pixels per row, ties broken by a stable sort, so the mask mean is
    ``round(λ·H·W)/(H·W)`` for every sample; ranks come from one batched argsort.
    """
    n = mask.shape[0]
    flat = mask.reshape(n, -1)
    hw = flat.shape[1]
    keep = torch.round(lam.to(device=flat.device, dtype=torch.float64) * hw).long()
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw, device=flat.device).expand(n, hw))
    return (rank < keep[:, None]).reshape(mask.shape)


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    k = torch.exp(-(r * r) / (2 * sigma * sigma))
    return k / k.sum()


def spectral_residual_saliency(x: Tensor, size: Optional[int] = 64, blur_size: int = 5,
                               blur_sigma: float = 8.0) -> Tensor:
    """Spectral-residual saliency (Hou & Zhang, CVPR 2007) of each image, (N, H, W) in [0, 1].

    With grey image g and ``F = FFT(g)``:  ``R = log|F| − mean3×3(log|F|)``,
    ``S = blur(|IFFT(exp(R + i·arg F))|²)``. As OpenCV's ``StaticSaliencySpectralResidual``
    (which the SaliencyMix authors call) the map is computed at ``size × size`` (None: native
    size), blurred with a 5×5 Gaussian of σ=8 and resized back to H×W. The 3×3 mean filter
    wraps around because the spectrum is periodic; |F| is floored at 1e-3 of its mean before
    the log. Batched; float32 (float64 for float64 x).
    """
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    img = x.to(work)
    if c == 3:
        luma = torch.tensor(_LUMA, dtype=work, device=x.device).view(1, 3, 1, 1)
        grey = (img * luma).sum(1, keepdim=True)
    else:
        grey = img.mean(1, keepdim=True)
    if size is not None and (h, w) != (size, size):
        grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=size < max(h, w))
    tiny = torch.finfo(work).tiny
    spectrum = torch.fft.fft2(grey)
    amp = spectrum.abs()
    # floor the amplitude relative to its mean: exact spectral zeros (flat synthetic images)
    # would otherwise give log ≈ −18 and boost their neighbours into a spurious peak; the
    # relative floor also keeps the map independent of the image's brightness scale
    log_amp = torch.log(amp + 1e-3 * amp.mean(dim=(2, 3), keepdim=True) + tiny)
    residual = log_amp - F.avg_pool2d(F.pad(log_amp, (1, 1, 1, 1), mode="circular"), 3, 1)
    recon = torch.fft.ifft2(torch.polar(torch.exp(residual), spectrum.angle()))
    sal = recon.abs().square()
    k = _gaussian_kernel(blur_size, blur_sigma, work, x.device)
    p = blur_size // 2
    sal = F.conv2d(F.pad(sal, (p, p, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    sal = F.conv2d(F.pad(sal, (0, 0, p, p), mode="replicate"), k.view(1, 1, -1, 1))
    if sal.shape[-2:] != (h, w):
        sal = F.interpolate(sal, size=(h, w), mode="bilinear", align_corners=False)
    sal = sal / sal.amax(dim=(2, 3), keepdim=True).clamp_min(tiny)
    return sal[:, 0]


def saliency_peak(x: Tensor, size: Optional[int] = 64) -> Tensor:
    """(N, 2) int64 ``(cy, cx)``: the argmax of :func:`spectral_residual_saliency` per image."""
    w = x.shape[-1]
    flat = spectral_residual_saliency(x, size=size).flatten(1).argmax(1)
    return torch.stack([flat // w, flat % w], 1)


def side_ratio(lam: Tensor, low: float, high: float) -> Tensor:
    """ResizeMix side ratio ``τ = clamp(√(1−λ), low, high)``: pasted area ≈ (1−λ)·H·W."""
    return torch.sqrt(1.0 - lam.to(torch.float64)).clamp(low, high)


__all__ = ["rand_bbox", "rand_inner_box", "box_mask", "box_area", "fourier_mask",
           "binarise_mask", "spectral_residual_saliency", "saliency_peak", "side_ratio"]

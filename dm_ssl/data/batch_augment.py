"""USB's weak and strong augmentation on image batches, drawn per sample, on any device.

USB augments one PIL image at a time in its data-loader workers; here a whole ``(N, C, H, W)``
batch (uint8, or float in [0, 1]) is transformed at once, on whatever device it lives on, and
every sample still gets its own draw (spec §7's classic-CV pipeline, issue #12):

``weak``
    a random crop from the image reflect-padded by ``pad`` (``int(s·(1 − crop_ratio))``: 4 at
    32²) and, with ``hflip``, a horizontal flip with probability ½ (:mod:`.transforms`).
``strong``
    the weak geometry, then USB's ``RandAugment(3, 5)``
    (``semilearn/datasets/augmentation/randaugment.py``, 0.3.2): ``n = 3`` ops drawn
    uniformly, with replacement, from :data:`OPS`, each with a magnitude uniform in its range,
    then Cutout: a square of side ``U[0, ½) · W`` at a random place, filled with
    (125, 123, 114) (its grey value on 1-channel images, which USB's loader sends through RGB).

=============  ===============  ===========================================================
op             magnitude        what PIL does, and how it is batched here
=============  ===============  ===========================================================
AutoContrast   –                per channel ``int((x − lo) · 255 / (hi − lo))``
Brightness     [0.05, 0.95]     ``Image.blend(black, img, v)`` (truncated, as PIL's blend)
Color          [0.05, 0.95]     blend with the grey image (PIL's integer ITU-R 601-2 luma)
Contrast       [0.05, 0.95]     blend with the grey mean ``int(mean(L) + 0.5)``
Equalize       –                PIL's per-channel LUT, from per-image histograms
                                (one ``scatter_add`` for the batch)
Identity       –
Posterize      [4, 8)           keep the top ``int(v)`` bits
Rotate         [−30°, 30°]      about the centre, nearest, black fill
Sharpness      [0.05, 0.95]     blend with PIL's SMOOTH 3×3 filter (border pixels kept)
ShearX         [−0.3, 0.3]      input x = x + v·y, nearest, black fill
ShearY         [−0.3, 0.3]      input y = y + v·x
Solarize       [0, 256)         ``255 − x`` where ``x ≥ v``
TranslateX     [−0.3, 0.3]      by ``v · W`` pixels, nearest, black fill
TranslateY     [−0.3, 0.3]      by ``v · H`` pixels
=============  ===============  ===========================================================

The geometric ops of one op position are one gather with per-sample affine matrices, sampled
at the output pixels' centres and floored exactly as PIL's ``Image.transform(AFFINE,
NEAREST)``; the colour ops work on the 256 integer levels, rounding as PIL does, so the
batch equals PIL's result exactly or, where PIL's float32 arithmetic differs in the last
bit (the blends, SMOOTH), within one level (``tests/data/test_batch_augment.py``).

All draws come from the ``generator`` argument (on its own device; None: torch's global CPU
generator). They are distributed as USB's, not USB's stream: USB draws from Python's
``random`` and numpy's global state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dm_ssl.mixers import _random  # generator-aware draws (on the generator's device)

#: USB's ``augment_list()``: name -> (min, max) of the magnitude
OPS: Dict[str, Tuple[float, float]] = {
    "AutoContrast": (0, 1), "Brightness": (0.05, 0.95), "Color": (0.05, 0.95),
    "Contrast": (0.05, 0.95), "Equalize": (0, 1), "Identity": (0, 1), "Posterize": (4, 8),
    "Rotate": (-30, 30), "Sharpness": (0.05, 0.95), "ShearX": (-0.3, 0.3),
    "ShearY": (-0.3, 0.3), "Solarize": (0, 256), "TranslateX": (-0.3, 0.3),
    "TranslateY": (-0.3, 0.3),
}
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
CUTOUT_FILL = (125, 123, 114)  # USB's CutoutAbs colour
#: its grey value: PIL's RGB -> L of CUTOUT_FILL (USB's loader takes grey images through RGB)
CUTOUT_FILL_GREY = (125 * 19595 + 123 * 38470 + 114 * 7471 + 0x8000) >> 16


# -- levels ---------------------------------------------------------------------------------
def to_levels(x: Tensor) -> Tensor:
    """uint8 or float-in-[0, 1] images as float32 integer levels 0..255 (what PIL works on)."""
    if x.dtype == torch.uint8:
        return x.float()
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point in [0, 1], got {x.dtype}")
    return (x.float() * 255).round_().clamp_(0, 255)


def from_levels(levels: Tensor, like: Tensor) -> Tensor:
    """Back to ``like``'s dtype (uint8, or float in [0, 1])."""
    if like.dtype == torch.uint8:
        return levels.to(torch.uint8)
    return (levels / 255).to(like.dtype)


def _check(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")


def _per(v: Tensor) -> Tensor:
    return v.reshape(-1, 1, 1, 1)


# -- colour ops (on levels; ``v`` is (N,) float64) --------------------------------------------
def _blend(degenerate: Tensor, img: Tensor, factor: Tensor) -> Tensor:
    """PIL's ``Image.blend`` for factors in [0, 1]: ``(UINT8)(d + a·(i − d))`` in float32."""
    a = _per(factor.to(torch.float32))
    return torch.trunc(degenerate + a * (img - degenerate)).clamp_(0, 255)


def _grey(x: Tensor) -> Tensor:
    """PIL's RGB -> L, ``(299 R + 587 G + 114 B) / 1000`` in 16-bit fixed point, (N, 1, H, W)."""
    if x.shape[1] == 1:
        return x
    q = x.to(torch.int32)
    luma = (q[:, 0] * 19595 + q[:, 1] * 38470 + q[:, 2] * 7471 + 0x8000) >> 16
    return luma.unsqueeze(1).to(x.dtype)


#: PIL's ``255.0 / (hi - lo)`` for each span, correctly rounded (a vectorised torch division
#: may use a reciprocal and miss the last bit, which moves ``int()`` across an integer)
_SPAN_SCALE = [0.0] + [255.0 / d for d in range(1, 256)]


def _lookup(x: Tensor, lut: Tensor) -> Tensor:
    """``lut[n·c, x]`` per image channel: ``lut`` is (N·C, 256)."""
    n, c, h, w = x.shape
    index = x.reshape(n * c, h * w).long()
    return lut.gather(1, index).reshape(n, c, h, w).to(x.dtype)


def autocontrast(x: Tensor, v: Optional[Tensor] = None) -> Tensor:
    """PIL's ``ImageOps.autocontrast`` (cutoff 0): its LUT per image channel, in double."""
    n, c = x.shape[:2]
    lo = x.amin(dim=(2, 3)).reshape(-1, 1).double()
    hi = x.amax(dim=(2, 3)).reshape(-1, 1).double()
    table = torch.tensor(_SPAN_SCALE, dtype=torch.float64, device=x.device)
    scale = table[(hi - lo).clamp(0, 255).long()]
    levels = torch.arange(256, dtype=torch.float64, device=x.device)
    lut = torch.trunc(levels * scale + (-lo * scale)).clamp_(0, 255)
    lut = torch.where(hi <= lo, levels, lut).to(x.dtype)       # one level: unchanged
    return _lookup(x, lut)


def brightness(x: Tensor, v: Tensor) -> Tensor:
    return _blend(torch.zeros_like(x), x, v)


def color(x: Tensor, v: Tensor) -> Tensor:
    return _blend(_grey(x).expand_as(x), x, v)


def contrast(x: Tensor, v: Tensor) -> Tensor:
    grey = _grey(x)
    total, count = grey.sum(dim=(1, 2, 3), dtype=torch.int64), grey[0].numel()
    degenerate = ((2 * total + count) // (2 * count)).to(x.dtype)  # int(mean + 0.5), exactly
    return _blend(_per(degenerate).expand_as(x), x, v)


def equalize(x: Tensor, v: Optional[Tensor] = None) -> Tensor:
    """PIL's ``ImageOps.equalize`` per image and channel: ``lut[i] = (step // 2 + #{x < i})
    // step`` with ``step = (n − #{x = max}) // 255``; identity when ``step`` is 0."""
    n, c, h, w = x.shape
    q = x.reshape(n * c, h * w).long()
    rows = torch.arange(n * c, device=x.device)[:, None] * 256
    hist = torch.bincount((q + rows).reshape(-1), minlength=n * c * 256).reshape(n * c, 256)
    last = hist.gather(1, q.amax(dim=1, keepdim=True))       # count of the top level
    step = (h * w - last) // 255
    below = hist.cumsum(1) - hist                            # #{x < i}
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp_(0, 255)
    levels = torch.arange(256, device=x.device)
    lut = torch.where(step > 0, lut, levels).to(x.dtype)     # one level only, or step 0
    return _lookup(x, lut)


def identity(x: Tensor, v: Optional[Tensor] = None) -> Tensor:
    return x


def posterize(x: Tensor, v: Tensor) -> Tensor:
    bits = v.floor().clamp(1, 8).long()
    mask = (256 - (1 << (8 - bits))).to(torch.int32)
    return (x.to(torch.int32) & _per(mask)).to(x.dtype)


def sharpness(x: Tensor, v: Tensor) -> Tensor:
    """Blend with PIL's SMOOTH (``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``, border kept):
    ``round((Σ₃ₓ₃ + 4·centre) / 13)`` in exact integer steps (13 is odd: no ties), which is
    what Pillow's float kernel rounds to."""
    h, w = x.shape[2:]
    total = 4 * x[:, :, 1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            total = total + x[:, :, dy:dy + h - 2, dx:dx + w - 2]
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = torch.div(2 * total + 13, 26, rounding_mode="floor")
    return _blend(degenerate, x, v)


def solarize(x: Tensor, v: Tensor) -> Tensor:
    return torch.where(x < _per(v.to(x.dtype)), x, 255 - x)


COLOUR: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "AutoContrast": autocontrast, "Brightness": brightness, "Color": color,
    "Contrast": contrast, "Equalize": equalize, "Identity": identity, "Posterize": posterize,
    "Sharpness": sharpness, "Solarize": solarize,
}


# -- geometric ops --------------------------------------------------------------------------
def _rotation_matrices(v: Tensor, h: int, w: int) -> Tensor:
    """Batched ``Rotate`` matrices (no Python loop over samples)."""
    angle = -torch.deg2rad(torch.remainder(v.double(), 360.0))
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    return torch.stack([torch.stack([cos, sin, -cos * cx - sin * cy + cx], -1),
                        torch.stack([-sin, cos, sin * cx - cos * cy + cy], -1)], 1)


def _fix(v: Tensor) -> Tensor:
    """Pillow's 16.16 fixed point: ``FLOOR(v * 65536.0 + 0.5)``."""
    return torch.floor(v * 65536.0 + 0.5).long()


def warp_nearest(x: Tensor, matrices: Tensor, fill: float = 0.0) -> Tensor:
    """``Image.transform(size, AFFINE, data, NEAREST)`` per sample: output pixel ``(x, y)``
    takes the input pixel at ``floor(M · (x + ½, y + ½, 1))``, ``fill`` where that is outside.

    As Pillow computes it (``libImaging/Geometry.c``): a pure scale/translation
    (``b = d = 0``) in double precision, anything else in 16.16 fixed point
    (``affine_fixed``: coefficients ``floor(v · 2¹⁶ + ½)``, the offsets taken at the first
    pixel centre), which decides the pixels on the edges of the warp."""
    n, c, h, w = x.shape
    m = matrices.to(device=x.device, dtype=torch.float64)
    ys = torch.arange(h, dtype=torch.float64, device=x.device)[:, None]
    xs = torch.arange(w, dtype=torch.float64, device=x.device)
    a, b, off_x = (m[:, 0, k, None, None] for k in range(3))
    d, e, off_y = (m[:, 1, k, None, None] for k in range(3))
    # the scale path (ImagingScaleAffine)
    xi = torch.floor(off_x + a * 0.5 + xs * a).long().expand(n, h, w)
    yi = torch.floor(off_y + e * 0.5 + ys * e).long().expand(n, h, w)
    # the fixed-point path (affine_fixed); >> 16 is the arithmetic shift Pillow does
    xs_i, ys_i = xs.long(), ys.long()
    fx = (_fix(off_x + a * 0.5 + b * 0.5) + ys_i * _fix(b) + xs_i * _fix(a)) >> 16
    fy = (_fix(off_y + d * 0.5 + e * 0.5) + ys_i * _fix(e) + xs_i * _fix(d)) >> 16
    scale = ((m[:, 0, 1] == 0) & (m[:, 1, 0] == 0))[:, None, None]
    xi, yi = torch.where(scale, xi, fx), torch.where(scale, yi, fy)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(n, 1, h * w)
    out = x.reshape(n, c, h * w).gather(2, index.expand(n, c, h * w)).reshape(n, c, h, w)
    return torch.where(inside.unsqueeze(1), out, torch.full_like(out, fill))


def geometric_matrices(op_index: Tensor, v: Tensor, h: int, w: int) -> Tensor:
    """(N, 2, 3) matrices for samples whose ops are ``GEOMETRIC[op_index]``."""
    n = op_index.shape[0]
    eye = torch.zeros(n, 2, 3, dtype=torch.float64, device=v.device)
    eye[:, 0, 0] = eye[:, 1, 1] = 1.0
    v = v.double()
    shear_x, shear_y, move_x, move_y = (eye.clone() for _ in range(4))
    shear_x[:, 0, 1] = v
    shear_y[:, 1, 0] = v
    move_x[:, 0, 2] = v * w
    move_y[:, 1, 2] = v * h
    stack = torch.stack([_rotation_matrices(v, h, w), shear_x, shear_y, move_x, move_y], 1)
    return stack[torch.arange(n, device=v.device), op_index.to(v.device)]


def apply_op(x: Tensor, name: str, v: Tensor | float) -> Tensor:
    """One of :data:`OPS` with given magnitudes (``v``: a number or (N,)), on a batch of
    levels (see :func:`to_levels`), for every sample."""
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; known: {', '.join(OPS)}")
    v = torch.as_tensor(v, dtype=torch.float64, device=x.device).expand(x.shape[0])
    if name in COLOUR:
        return COLOUR[name](x, v)
    index = torch.full((x.shape[0],), GEOMETRIC.index(name), device=x.device)
    return warp_nearest(x, geometric_matrices(index, v, x.shape[2], x.shape[3]))


# -- Cutout ---------------------------------------------------------------------------------
def cutout_boxes(v: Tensor, cx: Tensor, cy: Tensor, h: int, w: int) -> Tensor:
    """USB's ``Cutout(img, v)`` boxes ``(x0, y0, x1, y1)``, inclusive, (N, 4) int64.

    ``v`` the magnitude in [0, ½) (side ``v · W``), ``cx, cy`` the centres USB draws with
    ``np.random.uniform(w)``, ``np.random.uniform(h)`` (which is U(1, w]: ``low = w``,
    ``high = 1``). ImageDraw truncates the float corners. ``v = 0`` is no box (x1 < x0)."""
    side = v.double() * w
    x0 = torch.clamp(cx.double() - side / 2, min=0).floor()
    y0 = torch.clamp(cy.double() - side / 2, min=0).floor()
    x1 = torch.clamp(x0 + side, max=w).floor()
    y1 = torch.clamp(y0 + side, max=h).floor()
    boxes = torch.stack([x0, y0, x1, y1], -1).long()
    boxes[v <= 0] = torch.tensor([0, 0, -1, -1], device=boxes.device)
    return boxes


def cutout(x: Tensor, boxes: Tensor) -> Tensor:
    """Fill each sample's inclusive box with USB's colour (its grey value for 1 channel)."""
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    b = boxes.to(x.device)
    inside = (((rows >= b[:, 1, None]) & (rows <= b[:, 3, None]))[:, :, None]
              & ((cols >= b[:, 0, None]) & (cols <= b[:, 2, None]))[:, None, :])
    fill = CUTOUT_FILL if c == 3 else (CUTOUT_FILL_GREY,)
    colour = torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    return torch.where(inside.unsqueeze(1), colour, x)


# -- weak geometry --------------------------------------------------------------------------
def crop(x: Tensor, pad: int, top: Tensor, left: Tensor) -> Tensor:
    """Each sample's ``(H, W)`` window at ``(top, left)`` of the image reflect-padded by
    ``pad`` (torchvision's ``RandomCrop(padding=pad, padding_mode='reflect')``)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad > 0 else x
    wp = w + 2 * pad
    rows = top.to(x.device).long()[:, None] + torch.arange(h, device=x.device)
    cols = left.to(x.device).long()[:, None] + torch.arange(w, device=x.device)
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w)
    flat = padded.reshape(n, c, -1).gather(2, index.expand(n, c, h * w))
    return flat.reshape(n, c, h, w)


def weak_levels(x: Tensor, pad: int, hflip: bool,
                generator: Optional[torch.Generator]) -> Tensor:
    """Random crop (pad ``pad``, reflect) and flip (p = ½) per sample, on levels."""
    n, _, h, w = x.shape
    offsets = _random.randint(2 * pad + 1, (2, n), generator=generator, device=x.device)
    out = crop(x, pad, offsets[0], offsets[1])
    if hflip:
        flip = _random.rand(n, generator=generator, device=x.device) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


@dataclass
class RandAugmentDraws:
    """One batch's RandAugment draws, as USB makes them per image: ``ops`` (N, n) indices into
    the op list, ``u`` (N, n) the U[0, 1) behind each magnitude (``lo + (hi − lo) · u``),
    ``cutout`` (N,) the Cutout magnitude in [0, ½), ``cx, cy`` (N,) its centre."""

    ops: Tensor
    u: Tensor
    cutout: Tensor
    cx: Tensor
    cy: Tensor


def draw_rand_augment(n: int, h: int, w: int, n_ops: int = 3, *,
                      generator: Optional[torch.Generator] = None,
                      device: Optional[torch.device] = None, num_ops: int = len(OPS),
                      cutout_max: float = 0.5) -> RandAugmentDraws:
    """Per-sample draws of USB's ``RandAugment.__call__``: ``random.choices`` (uniform, with
    replacement), ``random.random()`` per magnitude, ``random.random() · ½`` for Cutout and
    numpy's ``uniform(w)``, ``uniform(h)`` (U(1, w], U(1, h]) for its centre."""
    device = torch.device("cpu") if device is None else device
    ops = _random.randint(num_ops, (n, n_ops), generator=generator, device=device)
    u = _random.rand((n, n_ops), generator=generator, device=device)
    cut = _random.rand((3, n), generator=generator, device=device)
    return RandAugmentDraws(ops, u, cut[0] * cutout_max, w + (1.0 - w) * cut[1],
                            h + (1.0 - h) * cut[2])


def apply_rand_augment(x: Tensor, draws: RandAugmentDraws,
                       ops: Sequence[str] = tuple(OPS)) -> Tensor:
    """RandAugment with given draws on levels: op position by position, each sample its own
    op and magnitude, then each sample's Cutout.

    Per position the samples that drew one colour op are transformed together, and all the
    samples that drew a geometric op go through one warp."""
    n, _, h, w = x.shape
    names = tuple(ops)
    lo = torch.tensor([OPS[k][0] for k in names], dtype=torch.float64, device=x.device)
    hi = torch.tensor([OPS[k][1] for k in names], dtype=torch.float64, device=x.device)
    which = draws.ops.to(x.device)
    mags = lo[which] + (hi - lo)[which] * draws.u.to(x.device)
    geo_of = torch.tensor([GEOMETRIC.index(k) if k in GEOMETRIC else -1 for k in names],
                          device=x.device)
    out = x
    for p in range(which.shape[1]):
        k, v = which[:, p], mags[:, p]
        nxt = out.clone()
        rows = (geo_of[k] >= 0).nonzero().squeeze(1)
        if rows.numel():
            matrices = geometric_matrices(geo_of[k][rows], v[rows], h, w)
            nxt[rows] = warp_nearest(out[rows], matrices)
        for j, name in enumerate(names):
            if name in GEOMETRIC or name == "Identity":
                continue
            rows = (k == j).nonzero().squeeze(1)
            if rows.numel():
                nxt[rows] = COLOUR[name](out[rows], v[rows])
        out = nxt
    return cutout(out, cutout_boxes(draws.cutout.to(x.device), draws.cx.to(x.device),
                                    draws.cy.to(x.device), h, w))


class BatchAugment:
    """USB's classic-CV weak or strong view of a batch, per sample, on the batch's device.

    Args:
        strong: add RandAugment(``n_ops``, ·) with Cutout after the weak geometry.
        pad: the crop's reflect padding (USB: ``int(img_size · (1 − crop_ratio))``).
        hflip: random horizontal flips.
        mean, std: when given, the output is normalised float (as ``ToTensor`` →
            ``Normalize``); else it has the input's dtype (uint8, or float in [0, 1]).
    """

    def __init__(self, strong: bool, pad: int = 4, hflip: bool = True, n_ops: int = 3,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None) -> None:
        if pad < 0 or n_ops < 0:
            raise ValueError(f"pad and n_ops must be >= 0, got {pad}, {n_ops}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.strong, self.pad, self.hflip, self.n_ops = strong, int(pad), bool(hflip), n_ops
        self.mean, self.std = mean, std

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check(x)
        levels = weak_levels(to_levels(x), self.pad, self.hflip, generator)
        if self.strong:
            n, _, h, w = levels.shape
            draws = draw_rand_augment(n, h, w, self.n_ops, generator=generator,
                                      device=levels.device)
            levels = apply_rand_augment(levels, draws)
        if self.mean is None:
            return from_levels(levels, x)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (levels / 255 - mean) / std

    def __repr__(self) -> str:
        kind = f"strong, RandAugment({self.n_ops}) + Cutout" if self.strong else "weak"
        return f"{type(self).__name__}({kind}, pad={self.pad}, hflip={self.hflip})"

"""USB's weak and strong augmentation on image batches, drawn per sample, on any device.

USB augments one PIL image at a time in its data-loader workers; here a whole ``(N, C, H, W)``
batch (uint8, or float in [0, 1]) is transformed at once, on whatever device it lives on, and
every sample still gets its own draw (spec §7's classic-CV pipeline, issue #12):

``weak``
    a random crop from the image reflect-padded by ``pad`` (``int(s·(1 − crop_ratio))``: 4 at
    32²) and, with ``hflip``, a horizontal flip with probability ½ (:mod:`.transforms`).
    ``padding_mode="constant"`` pads with black instead: the supervised recipe's
    ``RandomCrop(s, padding=4)`` + flip (:mod:`.supervised`).
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

RandAugment has two paths with the same result (:func:`apply_rand_augment`): on the CPU each
op runs on the samples that drew it; on an accelerator every sample goes through every stage
and ``torch.where`` picks its op, so a batch is queued without one host sync.

All draws come from the ``generator`` argument (on its own device; None: torch's global CPU
generator). They are distributed as USB's, not USB's stream: USB draws from Python's
``random`` and numpy's global state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
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


@lru_cache(maxsize=256)  # a few per device: op lists, colours, mean / std
def constant(values: Tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A read-only tensor of host ``values`` on ``device``, made once per device: building it
    from a Python list at every batch is a host-to-device copy, which on CUDA waits for the
    stream (a sync per constant per batch)."""
    return torch.tensor(values, dtype=dtype, device=device)


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
_SPAN_SCALE = (0.0,) + tuple(255.0 / d for d in range(1, 256))


def _lookup(x: Tensor, lut: Tensor) -> Tensor:
    """``lut[n·c, x]`` per image channel: ``lut`` is (N·C, 256)."""
    n, c, h, w = x.shape
    index = x.reshape(n * c, h * w).long()
    return lut.gather(1, index).reshape(n, c, h, w).to(x.dtype)


# Two kinds of colour op, which is what lets an op position run as one fixed sequence of
# batched kernels whatever each sample drew (:func:`apply_rand_augment`):
# - table ops map the 256 levels through a table per image channel (N·C, 256);
# - blend ops are PIL's ``Image.blend`` of the image with a "degenerate" image.
def _levels(x: Tensor) -> Tensor:
    return torch.arange(256, dtype=x.dtype, device=x.device)


def _per_channel(table: Tensor, c: int) -> Tensor:
    """(N, 256) per-image tables as (N·C, 256) per-channel ones."""
    return table[:, None, :].expand(-1, c, -1).reshape(-1, table.shape[-1])


def autocontrast_table(x: Tensor, v: Optional[Tensor] = None) -> Tensor:
    """PIL's ``ImageOps.autocontrast`` (cutoff 0): its LUT per image channel, in double."""
    lo = x.amin(dim=(2, 3)).reshape(-1, 1).double()
    hi = x.amax(dim=(2, 3)).reshape(-1, 1).double()
    table = constant(_SPAN_SCALE, torch.float64, x.device)
    scale = table[(hi - lo).clamp(0, 255).long()]
    levels = torch.arange(256, dtype=torch.float64, device=x.device)
    lut = torch.trunc(levels * scale + (-lo * scale)).clamp_(0, 255)
    return torch.where(hi <= lo, levels, lut).to(x.dtype)       # one level: unchanged


def equalize_table(x: Tensor, v: Optional[Tensor] = None) -> Tensor:
    """PIL's ``ImageOps.equalize`` per image and channel: ``lut[i] = (step // 2 + #{x < i})
    // step`` with ``step = (n − #{x = max}) // 255``; identity when ``step`` is 0."""
    n, c, h, w = x.shape
    q = x.reshape(n * c, h * w).long()
    rows = torch.arange(n * c, device=x.device)[:, None] * 256
    # a fixed-size scatter, not bincount: CUDA's bincount reads the input's max (a sync)
    hist = torch.zeros(n * c * 256, dtype=torch.long, device=x.device).scatter_add_(
        0, (q + rows).reshape(-1), torch.ones_like(q).reshape(-1)).reshape(n * c, 256)
    last = hist.gather(1, q.amax(dim=1, keepdim=True))       # count of the top level
    step = (h * w - last) // 255
    below = hist.cumsum(1) - hist                            # #{x < i}
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp_(0, 255)
    levels = torch.arange(256, device=x.device)
    return torch.where(step > 0, lut, levels).to(x.dtype)    # one level only, or step 0


def posterize_levels(v: Tensor, dtype: torch.dtype) -> Tensor:
    """Posterize's ``(*v.shape, 256)`` tables: keep the top ``int(v)`` bits."""
    bits = v.floor().clamp(1, 8).long()
    mask = 256 - (1 << (8 - bits))
    return (torch.arange(256, device=v.device) & mask[..., None]).to(dtype)


def solarize_levels(v: Tensor, dtype: torch.dtype) -> Tensor:
    """Solarize's ``(*v.shape, 256)`` tables: ``255 − x`` where ``x ≥ v``."""
    levels = torch.arange(256, dtype=dtype, device=v.device)
    return torch.where(levels < v.to(dtype)[..., None], levels, 255 - levels)


#: the table ops whose table depends on the magnitude alone, not on the image
LEVEL_TABLES: Dict[str, Callable[[Tensor, torch.dtype], Tensor]] = {
    "Posterize": posterize_levels, "Solarize": solarize_levels,
}


def _channel_tables(levels: Callable[[Tensor, torch.dtype], Tensor]
                    ) -> Callable[[Tensor, Tensor], Tensor]:
    """A :data:`LEVEL_TABLES` builder as a table op: its per-image tables per channel."""
    return lambda x, v: _per_channel(levels(v.to(x.device), x.dtype), x.shape[1])


def black(x: Tensor, grey: Optional[Tensor] = None) -> Tensor:
    """Brightness's degenerate image."""
    return torch.zeros_like(x)


def grey_image(x: Tensor, grey: Optional[Tensor] = None) -> Tensor:
    """Color's: the grey image (``grey``: :func:`_grey` of ``x`` when already computed)."""
    return (_grey(x) if grey is None else grey).expand_as(x)


def grey_mean(x: Tensor, grey: Optional[Tensor] = None) -> Tensor:
    """Contrast's: the grey mean ``int(mean(L) + 0.5)``, computed exactly in integers."""
    grey = _grey(x) if grey is None else grey
    total, count = grey.sum(dim=(1, 2, 3), dtype=torch.int64), grey[0].numel()
    return _per(((2 * total + count) // (2 * count)).to(x.dtype)).expand_as(x)


def smooth(x: Tensor, grey: Optional[Tensor] = None) -> Tensor:
    """Sharpness's: PIL's SMOOTH (``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``, border kept),
    ``round((Σ₃ₓ₃ + 4·centre) / 13)`` in exact integer steps (13 is odd: no ties), which is
    what Pillow's float kernel rounds to."""
    h, w = x.shape[2:]
    total = 4 * x[:, :, 1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            total = total + x[:, :, dy:dy + h - 2, dx:dx + w - 2]
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = torch.div(2 * total + 13, 26, rounding_mode="floor")
    return degenerate


TABLES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "AutoContrast": autocontrast_table, "Equalize": equalize_table,
    **{name: _channel_tables(levels) for name, levels in LEVEL_TABLES.items()},
}
DEGENERATE: Dict[str, Callable[..., Tensor]] = {
    "Brightness": black, "Color": grey_image, "Contrast": grey_mean, "Sharpness": smooth,
}


def _table_op(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda x, v: _lookup(x, TABLES[name](x, v))


def _blend_op(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda x, v: _blend(DEGENERATE[name](x), x, v)


def identity(x: Tensor, v: Optional[Tensor] = None) -> Tensor:
    return x


#: every colour op as ``op(levels, v)``
COLOUR: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    **{k: _table_op(k) for k in TABLES}, **{k: _blend_op(k) for k in DEGENERATE},
    "Identity": identity,
}


# -- geometric ops --------------------------------------------------------------------------
def affine_coefficients(kind: Tensor, v: Tensor, h: int, w: int) -> Tensor:
    """``(a, b, c, d, e, f)`` of the inverse map ``x_in = a x + b y + c``, ``y_in = d x + e y
    + f`` that PIL's ``transform(AFFINE)`` is given for the op ``GEOMETRIC[kind]`` with
    magnitude ``v`` (any shape; ``kind`` −1: the identity), shape ``(*v.shape, 6)``, double.

    Rotate is PIL's ``rotate(v)`` about the centre ``(w/2, h/2)``; shears and translations
    are USB's matrices (``v · w`` / ``v · h`` pixels). All kinds are computed for every
    sample and the drawn one picked: a fixed number of kernels, no host sync."""
    v = v.double()
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    angle = -torch.deg2rad(torch.remainder(v, 360.0))
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    kinds = torch.stack([
        torch.stack([cos, sin, -cos * cx - sin * cy + cx, -sin, cos, sin * cx - cos * cy + cy]),
        torch.stack([one, v, zero, zero, one, zero]),          # ShearX
        torch.stack([one, zero, zero, v, one, zero]),          # ShearY
        torch.stack([one, zero, v * w, zero, one, zero]),      # TranslateX
        torch.stack([one, zero, zero, zero, one, v * h]),      # TranslateY
        torch.stack([one, zero, zero, zero, one, zero]),       # the identity (kind -1)
    ])                                                         # (6 kinds, 6, *shape)
    pick = torch.where(kind < 0, len(GEOMETRIC), kind).to(v.device)
    chosen = kinds.gather(0, pick.expand(1, 6, *pick.shape))[0]
    return chosen.movedim(0, -1)


def geometric_matrices(op_index: Tensor, v: Tensor, h: int, w: int) -> Tensor:
    """``(*v.shape, 2, 3)`` matrices of the ops ``GEOMETRIC[op_index]`` (−1: identity)."""
    return affine_coefficients(op_index, v, h, w).unflatten(-1, (2, 3))


def _fix(v: Tensor) -> Tensor:
    """Pillow's 16.16 fixed point: ``FLOOR(v * 65536.0 + 0.5)``."""
    return torch.floor(v * 65536.0 + 0.5).long()


def warp_index(matrices: Tensor, h: int, w: int) -> Tensor:
    """Source pixel of each output pixel, ``(*batch, h·w)`` int64 into the flattened image,
    ``h·w`` where it falls outside (see :func:`warp_nearest`).

    Output pixel ``(x, y)`` takes the input pixel at ``floor(M · (x + ½, y + ½, 1))``, as
    Pillow computes it (``libImaging/Geometry.c``): a pure scale/translation (``b = d = 0``)
    in double precision, anything else in 16.16 fixed point (``affine_fixed``: coefficients
    ``floor(v · 2¹⁶ + ½)``, the offsets taken at the first pixel centre), which decides the
    pixels on the edges of the warp."""
    m = matrices.double()
    ys = torch.arange(h, dtype=torch.float64, device=m.device)[:, None]
    xs = torch.arange(w, dtype=torch.float64, device=m.device)
    a, b, off_x = (m[..., 0, k, None, None] for k in range(3))
    d, e, off_y = (m[..., 1, k, None, None] for k in range(3))
    # the scale path (ImagingScaleAffine)
    xi = torch.floor(off_x + a * 0.5 + xs * a).long()
    yi = torch.floor(off_y + e * 0.5 + ys * e).long()
    # the fixed-point path (affine_fixed); >> 16 is the arithmetic shift Pillow does
    xs_i, ys_i = xs.long(), ys.long()
    fx = (_fix(off_x + a * 0.5 + b * 0.5) + ys_i * _fix(b) + xs_i * _fix(a)) >> 16
    fy = (_fix(off_y + d * 0.5 + e * 0.5) + ys_i * _fix(e) + xs_i * _fix(d)) >> 16
    scale = (b == 0) & (d == 0)
    xi, yi = torch.where(scale, xi, fx), torch.where(scale, yi, fy)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    return torch.where(inside, yi * w + xi, h * w).flatten(-2)


def gather_pixels(x: Tensor, index: Tensor, fill: float = 0.0) -> Tensor:
    """``x``'s pixels at ``index`` ((N, h·w), from :func:`warp_index`), ``fill`` at ``h·w``:
    one gather from the flattened images with a fill pixel appended."""
    n, c, h, w = x.shape
    flat = torch.cat([x.reshape(n, c, h * w), x.new_full((n, c, 1), fill)], 2)
    return flat.gather(2, index[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def warp_nearest(x: Tensor, matrices: Tensor, fill: float = 0.0) -> Tensor:
    """``Image.transform(size, AFFINE, data, NEAREST)`` per sample (``matrices`` (N, 2, 3)),
    ``fill`` where the source falls outside the image."""
    h, w = x.shape[2:]
    return gather_pixels(x, warp_index(matrices.to(x.device), h, w), fill)


def apply_op(x: Tensor, name: str, v: Tensor | float) -> Tensor:
    """One of :data:`OPS` with given magnitudes (``v``: a number or (N,)), on a batch of
    levels (see :func:`to_levels`), for every sample."""
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; known: {', '.join(OPS)}")
    v = torch.as_tensor(v, dtype=torch.float64, device=x.device).expand(x.shape[0])
    if name in COLOUR:
        return COLOUR[name](x, v)
    kind = torch.full((x.shape[0],), GEOMETRIC.index(name), device=x.device)
    return warp_nearest(x, geometric_matrices(kind, v, x.shape[2], x.shape[3]))


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
    none = constant((0, 0, -1, -1), torch.long, boxes.device)
    return torch.where((v <= 0)[:, None], none, boxes)     # where, not a masked write (a sync)


def cutout(x: Tensor, boxes: Tensor) -> Tensor:
    """Fill each sample's inclusive box with USB's colour (its grey value for 1 channel)."""
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    b = boxes.to(x.device)
    inside = (((rows >= b[:, 1, None]) & (rows <= b[:, 3, None]))[:, :, None]
              & ((cols >= b[:, 0, None]) & (cols <= b[:, 2, None]))[:, None, :])
    fill = CUTOUT_FILL if c == 3 else (CUTOUT_FILL_GREY,)
    colour = constant(fill, x.dtype, x.device).view(1, c, 1, 1)
    return torch.where(inside.unsqueeze(1), colour, x)


# -- weak geometry --------------------------------------------------------------------------
PADDING_MODES = ("reflect", "constant")


def crop(x: Tensor, pad: int, top: Tensor, left: Tensor, padding_mode: str = "reflect"
         ) -> Tensor:
    """Each sample's ``(H, W)`` window at ``(top, left)`` of the image padded by ``pad``
    (torchvision's ``RandomCrop(padding=pad, padding_mode=padding_mode)``; ``constant`` pads
    with 0, torchvision's default fill)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=padding_mode) if pad > 0 else x
    wp = w + 2 * pad
    rows = top.to(x.device).long()[:, None] + torch.arange(h, device=x.device)
    cols = left.to(x.device).long()[:, None] + torch.arange(w, device=x.device)
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w)
    flat = padded.reshape(n, c, -1).gather(2, index.expand(n, c, h * w))
    return flat.reshape(n, c, h, w)


def weak_levels(x: Tensor, pad: int, hflip: bool, generator: Optional[torch.Generator],
                padding_mode: str = "reflect") -> Tensor:
    """Random crop (pad ``pad``, ``padding_mode``) and flip (p = ½) per sample, on levels."""
    n, _, h, w = x.shape
    offsets = _random.randint(2 * pad + 1, (2, n), generator=generator, device=x.device)
    out = crop(x, pad, offsets[0], offsets[1], padding_mode)
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


def _geometric_kinds(names: Tuple[str, ...], device: torch.device) -> Tensor:
    """Each op's index in :data:`GEOMETRIC` (−1: a colour op), on ``device``."""
    return constant(tuple(GEOMETRIC.index(a) if a in GEOMETRIC else -1 for a in names),
                    torch.long, device)


def _rand_augment_rows(x: Tensor, which: Tensor, mags: Tensor,
                       names: Tuple[str, ...]) -> Tensor:
    """RandAugment's op positions, each op run on the samples that drew it (the CPU path).

    At each position the samples that drew one colour op are gathered and transformed
    together, and all those that drew a geometric op go through one warp: the least work,
    but finding the rows reads the draws on the host."""
    h, w = x.shape[2:]
    kind_of = _geometric_kinds(names, x.device)
    out = x
    for p in range(which.shape[1]):
        k, v = which[:, p], mags[:, p]
        kind, nxt = kind_of[k], out.clone()
        rows = (kind >= 0).nonzero().squeeze(1)
        if rows.numel():
            nxt[rows] = warp_nearest(out[rows], geometric_matrices(kind[rows], v[rows], h, w))
        for j, name in enumerate(names):
            if name in COLOUR and name != "Identity":
                rows = (k == j).nonzero().squeeze(1)
                if rows.numel():
                    nxt[rows] = COLOUR[name](out[rows], v[rows])
        out = nxt
    return out


def _rand_augment_sync_free(x: Tensor, which: Tensor, mags: Tensor,
                            names: Tuple[str, ...]) -> Tensor:
    """What :func:`_rand_augment_rows` computes, without a host sync (the accelerator path).

    Every sample goes through every stage of a position, an identity for it unless it drew
    that stage's kind of op: one warp (the identity matrix for the other ops, which PIL's
    nearest sampling maps exactly onto the input), one table lookup (the identity table),
    one blend (factor 1, exact on integer levels). Each sample's op is picked with
    ``torch.where``, never by gathering rows, so nothing is read on the host: on CUDA the
    augmentation is queued without a sync, the same kernels for every batch. What depends
    on the draws alone (the warps' source pixels, Posterize / Solarize tables, blend
    factors) is computed for all positions at once."""
    n, c, h, w = x.shape
    positions = which.shape[1]
    onehot = which[..., None] == torch.arange(len(names), device=x.device)   # (N, P, J)
    drew = {name: onehot[..., j] for j, name in enumerate(names)}           # (N, P) each
    geometric = [a for a in names if a in GEOMETRIC]
    image_tables = [a for a in names if a in TABLES and a not in LEVEL_TABLES]
    level_tables = [a for a in names if a in LEVEL_TABLES]
    blends = [a for a in names if a in DEGENERATE]
    if geometric:
        kind = _geometric_kinds(names, x.device)[which]
        index = warp_index(geometric_matrices(kind, mags, h, w), h, w)      # (N, P, h·w)
    if level_tables or image_tables:
        tables = _levels(x).expand(n, positions, 256)
        for a in level_tables:
            tables = torch.where(drew[a][..., None], LEVEL_TABLES[a](mags, x.dtype), tables)
    if blends:
        is_blend = torch.stack([drew[a] for a in blends]).any(0)
        factor = torch.where(is_blend, mags, 1.0)
    out = x
    for p in range(positions):
        if geometric:
            out = gather_pixels(out, index[:, p])
        if level_tables or image_tables:
            table = tables[:, p, None, :].expand(n, c, 256)
            for a in image_tables:
                table = torch.where(drew[a][:, p, None, None],
                                    TABLES[a](out, mags[:, p]).view(n, c, 256), table)
            out = _lookup(out, table.reshape(n * c, 256))
        if blends:
            grey = _grey(out) if {"Color", "Contrast"} & set(blends) else None
            degenerate = torch.zeros_like(out)
            for a in blends:
                if DEGENERATE[a] is not black:
                    degenerate = torch.where(_per(drew[a][:, p]), DEGENERATE[a](out, grey),
                                             degenerate)
            out = _blend(degenerate, out, factor[:, p])
    return out


def apply_rand_augment(x: Tensor, draws: RandAugmentDraws, ops: Sequence[str] = tuple(OPS),
                       sync_free: Optional[bool] = None) -> Tensor:
    """RandAugment with given draws on levels: op position by position, each sample its own
    op and magnitude, then each sample's Cutout.

    ``sync_free`` (default: on any device but the CPU) runs every stage on every sample and
    picks each sample's result with ``torch.where`` (:func:`_rand_augment_sync_free`): no
    host sync and a fixed kernel sequence, for more arithmetic; else each op runs on the
    samples that drew it (:func:`_rand_augment_rows`), the fastest on a CPU. Both give the
    same images."""
    n, _, h, w = x.shape
    names = tuple(ops)
    unknown = [a for a in names if a not in OPS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"ops must be distinct names of {', '.join(OPS)}; got {list(names)}")
    lo = constant(tuple(OPS[a][0] for a in names), torch.float64, x.device)
    hi = constant(tuple(OPS[a][1] for a in names), torch.float64, x.device)
    which = draws.ops.to(x.device)
    mags = lo[which] + (hi - lo)[which] * draws.u.to(x.device)
    sync_free = x.device.type != "cpu" if sync_free is None else sync_free
    out = (_rand_augment_sync_free if sync_free else _rand_augment_rows)(x, which, mags, names)
    return cutout(out, cutout_boxes(draws.cutout.to(x.device), draws.cx.to(x.device),
                                    draws.cy.to(x.device), h, w))


class BatchAugment:
    """USB's classic-CV weak or strong view of a batch, per sample, on the batch's device.

    Args:
        strong: add RandAugment(``n_ops``, ·) with Cutout after the weak geometry.
        pad: the crop's padding (USB: ``int(img_size · (1 − crop_ratio))``).
        hflip: random horizontal flips.
        padding_mode: ``reflect`` (USB's SSL views) or ``constant`` (black: the supervised
            recipe's ``RandomCrop(s, padding=4)``).
        mean, std: when given, the output is normalised float (as ``ToTensor`` →
            ``Normalize``); else it has the input's dtype (uint8, or float in [0, 1]).
        sync_free: RandAugment without host syncs (see :func:`apply_rand_augment`); None:
            on any device but the CPU.
    """

    def __init__(self, strong: bool, pad: int = 4, hflip: bool = True, n_ops: int = 3,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 sync_free: Optional[bool] = None, padding_mode: str = "reflect") -> None:
        if pad < 0 or n_ops < 0:
            raise ValueError(f"pad and n_ops must be >= 0, got {pad}, {n_ops}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.strong, self.pad, self.hflip, self.n_ops = strong, int(pad), bool(hflip), n_ops
        self.mean, self.std, self.sync_free = mean, std, sync_free
        self.padding_mode = padding_mode

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check(x)
        levels = weak_levels(to_levels(x), self.pad, self.hflip, generator, self.padding_mode)
        if self.strong:
            n, _, h, w = levels.shape
            draws = draw_rand_augment(n, h, w, self.n_ops, generator=generator,
                                      device=levels.device)
            levels = apply_rand_augment(levels, draws, sync_free=self.sync_free)
        if self.mean is None:
            return from_levels(levels, x)
        mean = constant(tuple(self.mean), torch.float32, x.device).view(1, -1, 1, 1)
        std = constant(tuple(self.std), torch.float32, x.device).view(1, -1, 1, 1)
        return (levels / 255 - mean) / std

    def __repr__(self) -> str:
        kind = f"strong, RandAugment({self.n_ops}) + Cutout" if self.strong else "weak"
        return (f"{type(self).__name__}({kind}, pad={self.pad} {self.padding_mode}, "
                f"hflip={self.hflip})")

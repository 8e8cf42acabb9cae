"""Overlay (watermark) one image on every image of a batch, with Pillow's integer arithmetic.

The overlay is taken as RGBA (L -> (L, L, L, 255), LA -> (L, L, L, A), RGB -> alpha 255), its
alpha scaled by ``opacity`` as ``int(a * opacity + 0.5)``, then put on the base in the base's mode:

* L and RGB bases: ``base.paste(overlay_in_base_mode, (x, y), mask=alpha)``, Paste.c's
  ``BLEND``: ``v = DIV255(base * (255 - m) + over * m)`` with ``DIV255(t) = ((t + 128) >> 8 + t + 128) >> 8``;
* LA and RGBA bases: ``Image.alpha_composite(base, layer)``, AlphaComposite.c's fixed point
  (7 fractional bits); where the overlay's alpha is 0 the base is kept.

L and LA take the overlay's luma ``(19595 r + 38470 g + 7471 b + 0x8000) >> 16`` (``convert``).
"""

from __future__ import annotations

import math

import torch

from kernels._checks import CHANNELS, check_images
from kernels.color import grayscale

#: Elements (B x C x rows x W) blended at once: the int32 temporaries of one block of rows stay
#: a few MB whatever the image's size.
_BLOCK_ELEMENTS = 1 << 22


def overlay(images: torch.Tensor, over: torch.Tensor, x: int = 0, y: int = 0, opacity: float = 1.0,
            tile: bool = False) -> torch.Tensor:
    """``over`` put on every image at ``(x, y)`` (its top-left corner; clipped to the image), or
    repeated over the whole image from the top-left corner when ``tile``.

    Args:
        images: uint8 ``(B, C, H, W)``, the bases.
        over: uint8 ``(C', h, w)``, C' 1..4 (L, LA, RGB, RGBA), on any device.
        x, y: where its top-left pixel goes, in pixels; may be negative or past the image.
        opacity: 0..1, multiplies its alpha as ``int(a * opacity + 0.5)``.
        tile: cover the image with copies at ``(i * w, j * h)`` (``x`` and ``y`` unused).

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device.

    >>> base = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    >>> dot = torch.tensor([255, 255, 255, 128], dtype=torch.uint8).view(4, 1, 1)
    >>> overlay(base, dot, 1, 0)[0, 0].tolist()
    [[0, 128], [0, 0]]
    """
    check_images(images)
    if not isinstance(over, torch.Tensor) or over.dtype != torch.uint8 or over.ndim != 3 or over.shape[0] not in CHANNELS:
        raise ValueError(f"over must be a uint8 (C, h, w) tensor with C in 1..4, got {getattr(over, 'shape', over)!r}")
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must be 0..1, got {opacity!r}")
    _, c, height, width = images.shape
    colour, alpha = _in_base_mode(over.to(images.device), c, opacity)  # (c, h, w), (h, w)
    h, w = alpha.shape
    if tile:
        reps = (math.ceil(height / h), math.ceil(width / w))
        colour = colour.repeat(1, *reps)[:, :height, :width]
        alpha = alpha.repeat(*reps)[:height, :width]
        x = y = 0
        h, w = height, width
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    out = images.clone()
    if x1 <= x0 or y1 <= y0:
        return out  # wholly outside the image
    colour = colour[:, y0 - y : y1 - y, x0 - x : x1 - x].to(torch.int32).unsqueeze(0)
    alpha = alpha[y0 - y : y1 - y, x0 - x : x1 - x].to(torch.int32)
    blend = _paste if c % 2 else _alpha_composite
    rows = max(1, _BLOCK_ELEMENTS // max(1, images.shape[0] * c * (x1 - x0)))
    for top in range(0, y1 - y0, rows):
        part = slice(top, top + rows)
        region = images[:, :, y0 + top : min(y1, y0 + top + rows), x0:x1]
        out[:, :, y0 + top : min(y1, y0 + top + rows), x0:x1] = blend(region, colour[:, :, part], alpha[part])
    return out


def _in_base_mode(over: torch.Tensor, channels: int, opacity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The overlay as RGBA, its alpha scaled by ``opacity``, then in the base's mode: its colour
    planes for a ``channels``-channel base (alpha included for LA and RGBA) and its alpha."""
    c = over.shape[0]
    rgb = over[:1].expand(3, -1, -1) if c < 3 else over[:3]
    raw_alpha = over[-1] if c % 2 == 0 else torch.full_like(over[0], 255)
    table = torch.tensor([int(a * float(opacity) + 0.5) for a in range(256)], dtype=torch.uint8, device=over.device)
    alpha = table[raw_alpha.long()]
    if channels < 3:
        grey = over[:1] if c < 3 else grayscale(rgb.unsqueeze(0))[0]
        colour = grey if channels == 1 else torch.cat([grey, alpha.unsqueeze(0)])
    else:
        colour = rgb if channels == 3 else torch.cat([rgb, alpha.unsqueeze(0)])
    return colour, alpha


def _div255(t: torch.Tensor) -> torch.Tensor:
    """Pillow's ``DIV255``/``SHIFTFORDIV255``: ``((t >> 8) + t) >> 8``, in place."""
    return t.add_(t >> 8).bitwise_right_shift_(8)


def _paste(base: torch.Tensor, over: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Paste.c's ``paste_mask_L``: every channel ``DIV255(base * (255 - m) + over * m + 128)``."""
    m = mask.view(1, 1, *mask.shape)
    t = base.to(torch.int32).mul_(255 - m).add_(over * m).add_(128)
    return _div255(t).to(torch.uint8)


def _alpha_composite(dst: torch.Tensor, src: torch.Tensor, src_alpha: torch.Tensor) -> torch.Tensor:
    """AlphaComposite.c: ``src`` (colour planes and alpha, int32) over ``dst`` (uint8, alpha last)."""
    sa = src_alpha.view(1, 1, *src_alpha.shape)
    da = dst[:, -1:].to(torch.int32)
    out_a255 = da.mul_(255 - sa).add_(sa * 255)  # sa * 255 + da * (255 - sa)
    coef1 = (sa * (255 * 255 * 128)).floor_divide(out_a255.clamp(min=1))  # fits int32: < 2 ** 31
    coef2 = 255 * 128 - coef1
    colour = src[:, :-1].mul(coef1).add_(dst[:, :-1].to(torch.int32).mul_(coef2)).add_(0x80 << 7)
    colour = _div255(colour).bitwise_right_shift_(7)
    alpha = _div255(out_a255.add_(0x80))
    out = torch.cat([colour, alpha], dim=1).to(torch.uint8)
    return torch.where(sa == 0, dst, out)

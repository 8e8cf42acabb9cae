"""Pillow's ``convert("L")`` and ``ImageEnhance`` (Brightness, Contrast, Color, Sharpness) on uint8
batches.

Pillow's arithmetic, which these kernels reproduce exactly (0 levels apart on real photos):

* ``convert("L")`` (``src/libImaging/Convert.c``, ``rgb2l``/``rgba2l``) is integer fixed point:
  ``L = (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16``; the weights sum to 65536, so a gray
  pixel keeps its level and halves round up. RGBA ignores alpha; LA and L keep their L band.
  Kornia's ``rgb_to_grayscale`` uses float weights (0.299, 0.587, 0.114) without Pillow's rounding,
  so it is not used.
* ``ImageEnhance`` is "degenerate image + ``Image.blend``" (``src/libImaging/Blend.c``):
  ``out = (uint8)(in1 + alpha * (in2 - in1))`` in float32 (``alpha`` is a C ``float``), with
  ``in1`` the degenerate image and ``in2`` the image; for a factor outside [0, 1] the float is first
  clipped to 0..255; the cast truncates. Brightness blends with black (Kornia's
  ``adjust_brightness`` adds instead of scaling, so it is not used), Contrast with a flat image of
  ``int(mean + 0.5)`` where ``mean`` is the ``ImageStat`` mean of ``convert("L")``, Color with the
  image's own grayscale (``convert("L").convert(mode)``), Sharpness with ``filter(SMOOTH)`` (its
  border pixels are the image's: :func:`kernels.filters.apply_filter`). The degenerate image carries
  the image's alpha, so the blend leaves alpha unchanged; for L and LA images Color is the identity.
"""

from __future__ import annotations

import math
import struct

import torch

from kernels._checks import check_images, color_channels, has_alpha, per_image
from kernels.filters import apply_filter

# Convert.c's L24 weights, 16-bit fixed point: they sum to 65536.
_LUMA_WEIGHTS = (19595, 38470, 7471)


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """Pillow's L of a float32 ``(B, 3, H, W)`` batch holding integers 0..255 -> ``(B, 1, H, W)``.

    Every product and partial sum is an integer below 2**24 (at most 255 * 65536 + 32768), so
    float32 computes Convert.c's integer formula exactly, and the division by 65536 is exact too.
    Written as elementwise products on purpose: a matmul/einsum may run in TF32 on CUDA and lose
    the low bits.
    """
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    wr, wg, wb = _LUMA_WEIGHTS
    acc = r * wr
    # add_ with alpha: no temporary per channel. Fused or not, every product and sum is an exact
    # integer in float32, so the result cannot depend on how it is evaluated.
    acc.add_(g, alpha=wg).add_(b, alpha=wb).add_(0x8000)
    return acc.mul_(1.0 / 65536).floor_()


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Pillow's ``convert("L")``: one luma channel per image.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4 (L, LA, RGB, RGBA), values 0..255.

    Returns:
        A new uint8 ``(B, 1, H, W)`` tensor on the input's device. RGB and RGBA give
        ``(R * 19595 + G * 38470 + B * 7471 + 32768) >> 16`` (alpha is dropped, as
        ``ImageOps.grayscale`` and ``convert("L")`` drop it); L is copied; LA gives its L band.

    Example:
        >>> x = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
        >>> grayscale(x).flatten().tolist()
        [76]
    """
    check_images(images)
    if images.shape[1] < 3:
        return images[:, 0:1].clone()
    # Convert.c's integer formula itself, in int32 (faster than the float32 route of _luma on a CPU:
    # BENCHMARKS.md, "Why the kernels' constants"), in blocks of rows so the int32 temporary stays small.
    wr, wg, wb = _LUMA_WEIGHTS
    out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8, device=images.device)
    for rows in _row_blocks(images, _piece_pixels(images.device)):
        acc = images[:, 0:1, rows].to(torch.int32).mul_(wr)
        acc.add_(images[:, 1:2, rows], alpha=wg).add_(images[:, 2:3, rows], alpha=wb).add_(0x8000)
        out[:, :, rows] = acc.bitwise_right_shift_(16)
    return out


#: Pixels per plane in one piece of :func:`adjust` and :func:`grayscale` on the CPU (float32 or
#: int32 buffers of a few MB), and elsewhere (CUDA: larger pieces, fewer kernel launches).
CPU_PIECE_PIXELS_LARGE = 1 << 20
CUDA_PIECE_PIXELS = 1 << 22


def _piece_pixels(device: torch.device) -> int:
    return CPU_PIECE_PIXELS_LARGE if device.type == "cpu" else CUDA_PIECE_PIXELS


def _row_blocks(images: torch.Tensor, pixels: int) -> list[slice]:
    """Slices of rows (dim 2) of ``(B, C, H, W)`` with about ``pixels`` pixels of the batch each."""
    b, _, h, w = images.shape
    rows = max(1, min(h, pixels // max(1, b * w)))
    return [slice(top, top + rows) for top in range(0, h, rows)]


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as ``Image.blend`` passes it to C (``"f"``)."""
    return struct.unpack("f", struct.pack("f", value))[0]


#: An enhancement factor: one for every image, or float32 ``(B, 1, 1, 1)``, one per image.
Factor = float | torch.Tensor


def _check_factor(name: str, value: object, images: torch.Tensor) -> Factor | None:
    """None, or the factor as the float32 Pillow computes with (a number, or for a ``(B,)`` tensor
    a float32 ``(B, 1, 1, 1)`` tensor on the images' device); ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        factors = per_image(name, value, images.shape[0]).to(torch.float32)  # C's double -> float
        if not bool(torch.isfinite(factors).all()):
            raise ValueError(f"{name} must be finite numbers (float32 range), got {value.tolist()!r}")
        return factors.view(-1, 1, 1, 1).to(images.device, non_blocking=True)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a finite number or None, got {value!r}")
    try:
        factor = _float32(float(value))
    except OverflowError:
        factor = math.inf
    if not math.isfinite(factor):
        raise ValueError(f"{name} must be a finite number (float32 range) or None, got {value!r}")
    return factor


def _blend(degenerate: torch.Tensor, image: torch.Tensor, factor: Factor, truncate: bool = True) -> torch.Tensor:
    """Blend.c on float32 tensors of integers, in place on ``image``: result holds integers 0..255.

    ``degenerate + factor * (image - degenerate)`` with each step rounded to float32 as C does
    (separate ops, no fused multiply-add), then clipped to 0..255 and truncated. Within [0, 1]
    Pillow skips the clip because the value is already in range, so one rule covers both branches.
    ``truncate=False`` leaves the truncation to the caller's conversion to uint8 (the same, on
    values already clipped to 0..255), saving a pass.
    """
    image.sub_(degenerate).mul_(factor).add_(degenerate).clamp_(0.0, 255.0)
    return image.floor_() if truncate else image


def _luma_total(luma: torch.Tensor) -> torch.Tensor:
    """The exact sum of each image's levels in float32 ``(B, 1, H, W)`` ``luma``: float64 ``(B, 1, 1, 1)``."""
    if luma.shape[-1] * 255 < 2**24:
        # A row's sum and every partial sum of it are integers below 2**24: exact in float32,
        # and this skips converting the whole image to float64 first.
        luma = luma.sum(dim=-1, keepdim=True)
    return luma.sum(dim=(1, 2, 3), keepdim=True, dtype=torch.float64)


def _mean_level(total: torch.Tensor, pixels: int) -> torch.Tensor:
    """``int(ImageStat.Stat(L).mean[0] + 0.5)`` from each image's exact level sum: float32, same shape.

    ImageStat sums the levels exactly (Python ints) and divides as doubles; float64 holds the sum
    exactly (below 2**53), so ``floor(sum / n + 0.5)`` here is the same double arithmetic.
    """
    return (total / pixels).add_(0.5).floor_().to(torch.float32)


def _brighten(x: torch.Tensor, factor: Factor | None, truncate: bool) -> torch.Tensor:
    """Brightness in place on float32 integers, clipped to 0..255 and, with ``truncate``, truncated.
    Blend with black: ``0 + factor * (x - 0)`` rounds exactly as ``factor * x``."""
    if factor is not None:
        x.mul_(factor).clamp_(0.0, 255.0)
        if truncate:
            x.floor_()
    return x


def _contrast_and_color(x: torch.Tensor, means: torch.Tensor | None, contrast: Factor | None,
                        saturation: Factor | None) -> torch.Tensor:
    """Contrast (blend with the mean levels ``means``), then Color (blend with the luma), in place;
    the last step is left untruncated for the conversion to uint8."""
    if contrast is not None:
        _blend(means, x, contrast, truncate=saturation is not None)
    if saturation is not None:
        _blend(_luma(x), x, saturation, truncate=False)
    return x


#: Pixels per plane in one piece of :func:`adjust` on the CPU when it asks for saturation.
CPU_PIECE_PIXELS = 1 << 16


def _adjust_in_pieces(x: torch.Tensor, out: torch.Tensor, brightness: Factor | None,
                      contrast: Factor | None, saturation: Factor | None) -> None:
    """:func:`adjust` of the uint8 colour planes ``x`` ``(B, C, H, W)`` into ``out[:, :C]``, a few
    rows of the batch at a time through one reused float32 buffer, so no step holds a float copy of
    the whole image. On the CPU with saturation the pieces are small: Color's blends, against a
    per-pixel luma, then run in cache (BENCHMARKS.md, "Why the kernels' constants"). Contrast's mean
    needs a pass of its own first (brightness is applied again in the second pass)."""
    b, c, h, w = x.shape
    small = saturation is not None and x.device.type == "cpu"
    pieces = _row_blocks(x, CPU_PIECE_PIXELS if small else _piece_pixels(x.device))
    rows = pieces[0].stop - pieces[0].start
    buffer = torch.empty(b * c * rows * w, dtype=torch.float32, device=x.device)
    last_truncates = contrast is not None or saturation is not None

    def brightened(part: slice) -> torch.Tensor:
        piece = x[:, :, part]
        return _brighten(buffer[: piece.numel()].view(piece.shape).copy_(piece), brightness, last_truncates)

    means, f = None, None
    if contrast is not None:
        totals = torch.zeros((b, 1, 1, 1), dtype=torch.float64, device=x.device)
        for part in pieces:
            f = brightened(part)
            totals += _luma_total(_luma(f) if c == 3 else f)
        means = _mean_level(totals, h * w)
    for part in pieces:
        # One piece: the buffer still holds it brightened from the mean's pass.
        f = f if len(pieces) == 1 and f is not None else brightened(part)
        # Each step truncates to integers, except the last: the conversion to uint8 does that.
        out[:, :c, part] = _contrast_and_color(f, means, contrast, saturation)


def _sharpen(planes: torch.Tensor, factor: Factor) -> None:
    """Sharpness in place on uint8 colour planes ``(B, C, H, W)`` (a view): blend with
    ``filter(SMOOTH)`` (a uint8 copy; float32 only for a few rows at a time)."""
    degenerate = apply_filter(planes, "smooth")
    pieces = _row_blocks(planes, _piece_pixels(planes.device))
    rows = pieces[0].stop - pieces[0].start
    buffer = torch.empty(2 * planes[:, :, :rows].numel(), dtype=torch.float32, device=planes.device)
    for part in pieces:
        piece = planes[:, :, part]
        image = buffer[: piece.numel()].view(piece.shape).copy_(piece)
        smooth = buffer[piece.numel() : 2 * piece.numel()].view(piece.shape).copy_(degenerate[:, :, part])
        planes[:, :, part] = _blend(smooth, image, factor, truncate=False)


def adjust(
    images: torch.Tensor,
    brightness: float | torch.Tensor | None = None,
    contrast: float | torch.Tensor | None = None,
    saturation: float | torch.Tensor | None = None,
    sharpness: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Pillow's ``ImageEnhance`` Brightness, then Contrast, then Color, then Sharpness, each
    ``.enhance(factor)``.

    Each factor is optional (None skips that step; 1.0 is the identity); 0 gives black, a flat gray
    of the mean luma, and the grayscale image respectively; above 1 extrapolates. Like Pillow, any
    finite factor is accepted, negative ones included. Each step rounds to 8 bits before the next,
    as three successive Pillow calls do; the contrast mean is taken per image, after brightness.
    Each factor may also be a ``(B,)`` tensor of numbers, image i's factor in row i: every image is
    then adjusted as it is with its own factor given as a number.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4 (L, LA, RGB, RGBA), values 0..255.
        brightness: factor for ``ImageEnhance.Brightness`` (blend with black), or None.
        contrast: factor for ``ImageEnhance.Contrast`` (blend with the mean luma), or None.
        saturation: factor for ``ImageEnhance.Color`` (blend with the grayscale), or None. No effect
            on L and LA images, as in Pillow.
        sharpness: factor for ``ImageEnhance.Sharpness`` (blend with ``filter(SMOOTH)``), or None;
            0 gives the smoothed image, 2 a sharpened one.

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device; alpha is the input's.

    Example:
        >>> x = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
        >>> adjust(x, brightness=1.2, contrast=0.5)[0, :, 0, 0].tolist()
        [120, 120, 120]
    """
    check_images(images)
    factors = {
        "brightness": _check_factor("brightness", brightness, images),
        "contrast": _check_factor("contrast", contrast, images),
        "saturation": _check_factor("saturation", saturation, images),
        "sharpness": _check_factor("sharpness", sharpness, images),
    }
    b, c = factors["brightness"], factors["contrast"]
    s = factors["saturation"] if images.shape[1] >= 3 else None  # Color is the identity on L/LA
    sharp = factors["sharpness"]
    if b is None and c is None and s is None and sharp is None:
        return images.clone()

    x = color_channels(images)
    out = torch.empty(images.shape, dtype=torch.uint8, device=images.device)
    if b is None and c is None and s is None:
        out[:, : x.shape[1]] = x
    else:
        _adjust_in_pieces(x, out, b, c, s)
    if sharp is not None and images.shape[0]:
        # Sharpness needs each pixel's neighbours after the other steps: a pass of its own.
        _sharpen(out[:, : x.shape[1]], sharp)
    if has_alpha(images):
        out[:, -1:] = images[:, -1:]
    return out

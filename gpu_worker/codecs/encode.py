"""Encode uint8 ``(B, C, H, W)`` batches to JPEG, PNG, WebP or GIF files.

=========  ===================================================================================
format     how
=========  ===================================================================================
JPEG       ``torchvision.io.encode_jpeg`` on a list of images, one call: nvjpeg when the batch
           is on CUDA and has 3 channels (4:4:4 chroma), libjpeg-turbo on the CPU otherwise
           (4:2:0 chroma; torchvision's nvjpeg encoder takes 3 channels only, so grey batches
           are encoded on the CPU). Alpha is first flattened onto white, on the batch's device.
PNG        ``torchvision.io.encode_png`` (CPU, zlib level 6) for 1 and 3 channels; Pillow for 2
           and 4 (torchvision refuses them). Lossless: decoding gives the tensor back exactly.
GIF        Pillow, one frame (gpu_worker.codecs.animation.encode_gif): at most 256 colours.
WEBP       Pillow (libwebp), ``quality`` applies; alpha kept. ``lossless=True`` keeps every
           pixel exactly, the colour under fully transparent pixels included. WebP has no grey
           mode: 1 and 2 channels are stored as RGB and RGBA.
=========  ===================================================================================
"""

from __future__ import annotations

import io
import math
import re

import torch
import torchvision.io as tvio
from PIL import Image

from gpu_worker.codecs.animation import encode_gif
from gpu_worker.errors import EncodeError
from gpu_worker.formats import OUTPUT_FORMATS
from kernels._checks import check_images

__all__ = ["FORMATS", "encode", "flatten_alpha"]

#: Output formats, as the caller spells them (canonical names of gpu_worker.formats).
FORMATS = tuple(OUTPUT_FORMATS)

_PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _clean(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^[^,]*, \S+\.(?:cpp|h|cu):\d+, ", "", msg)


#: Most elements of a block of rows :func:`flatten_alpha` widens to int32 at a time on the CPU;
#: other devices take larger blocks (fewer kernel launches).
_FLATTEN_BLOCK_ELEMENTS = 1 << 18
_CUDA_FLATTEN_BLOCK_ELEMENTS = 1 << 24


def flatten_alpha(image: torch.Tensor) -> torch.Tensor:
    """Composite LA/RGBA onto white: ``(..., C, H, W)`` uint8, C even -> C - 1 channels.

    ``out = round(c * a / 255 + 255 * (255 - a) / 255)``, computed exactly in integers as
    ``255 - round(a * (255 - c) / 255)`` (no ties: 255 is odd) on the tensor's device, in blocks
    of rows so the int32 temporaries stay small. Equals Pillow's
    ``Image.alpha_composite(white, img).convert("RGB")`` within 1 level.
    """
    *lead, c, h, w = image.shape
    out = torch.empty((*lead, c - 1, h, w), dtype=torch.uint8, device=image.device)
    limit = _FLATTEN_BLOCK_ELEMENTS if image.device.type == "cpu" else _CUDA_FLATTEN_BLOCK_ELEMENTS
    rows = max(1, min(h, limit // max(1, math.prod(lead) * c * w)))
    for top in range(0, h, rows):
        part = image[..., top : top + rows, :]
        alpha = part[..., -1:, :, :].to(torch.int32)
        shade = (255 - part[..., :-1, :, :].to(torch.int32)).mul_(alpha).add_(127).floor_divide_(255)
        out[..., top : top + rows, :] = shade.neg_().add_(255)
    return out


def _check_args(images: torch.Tensor, format: str, quality: int, lossless: bool) -> None:
    check_images(images)
    if format not in FORMATS:
        raise EncodeError(f"unsupported output format {format!r}; use one of {', '.join(FORMATS)}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise EncodeError(f"quality must be an integer from 1 to 100, got {quality!r}")
    if lossless and format == "JPEG":
        raise EncodeError("lossless applies to WEBP only (PNG is always lossless); JPEG is lossy")
    h, w = images.shape[-2:]
    max_side = OUTPUT_FORMATS[format].max_side
    if max(h, w) > max_side:
        raise EncodeError(f"image is {w}x{h}; {format} stores at most {max_side} pixels a side")


def _encode_jpeg(images: torch.Tensor, quality: int, nvjpeg: bool) -> list[bytes]:
    if images.shape[1] % 2 == 0:
        images = flatten_alpha(images)  # in blocks of rows: int32 temporaries stay small
    if images.device.type == "cuda" and images.shape[1] == 3 and nvjpeg:
        encoded = tvio.encode_jpeg([img.contiguous() for img in images], quality=quality)
        # The files live on the GPU: one copy to the host for all of them, then split.
        sizes = [int(t.numel()) for t in encoded]
        flat = torch.cat(encoded).cpu().numpy().tobytes()
        out, start = [], 0
        for n in sizes:
            out.append(flat[start : start + n])
            start += n
        return out
    host = images.cpu()
    encoded = tvio.encode_jpeg([img.contiguous() for img in host], quality=quality)
    return [t.numpy().tobytes() for t in encoded]


def _pil_image(img: torch.Tensor) -> Image.Image:
    """CPU uint8 (C, H, W) -> PIL image of the matching mode.

    The pixels go to Pillow as one interleaved ``(H, W, C)`` array (no copy when ``img`` is
    channels-last already); L and RGBA images share that array's memory (``frombuffer``), LA and
    RGB are copied once into Pillow's 4-byte pixels.
    """
    c, h, w = img.shape
    mode = _PIL_MODES[c]
    array = img.permute(1, 2, 0).contiguous().numpy()
    if mode in ("L", "RGBA"):
        return Image.frombuffer(mode, (w, h), array, "raw", mode, 0, 1)
    return Image.frombytes(mode, (w, h), array)


def _encode_png(images: torch.Tensor) -> list[bytes]:
    out = []
    for img in images.cpu():
        if img.shape[0] in (1, 3):
            out.append(tvio.encode_png(img.contiguous(), compression_level=6).numpy().tobytes())
        else:
            buf = io.BytesIO()
            _pil_image(img).save(buf, "PNG", compress_level=6)
            out.append(buf.getvalue())
    return out


def _encode_webp(images: torch.Tensor, quality: int, lossless: bool) -> list[bytes]:
    out = []
    for img in images.cpu():
        im = _pil_image(img)
        if im.mode in ("L", "LA"):
            im = im.convert("RGBA" if im.mode == "LA" else "RGB")
        buf = io.BytesIO()
        if lossless:
            im.save(buf, "WEBP", lossless=True, quality=quality, exact=True)
        else:
            im.save(buf, "WEBP", quality=quality)
        out.append(buf.getvalue())
    return out


def encode(images: torch.Tensor, format: str, quality: int = 85, *, lossless: bool = False,
           nvjpeg: bool = True) -> list[bytes]:
    """Encode each image of a batch to a file of ``format``.

    Args:
        images: uint8 ``(B, C, H, W)``, values 0..255, C in 1..4 (alpha last when C is even),
            on any device. Not modified.
        format: "JPEG", "PNG" or "WEBP" (the caller normalises the case).
        quality: 1..100, for JPEG and WEBP (for lossless WebP it is the compression effort).
            Ignored for PNG.
        lossless: WEBP only: store every pixel exactly.
        nvjpeg: JPEG of RGB images on CUDA: encode with nvjpeg on the device (fast; not the same
            file as libjpeg-turbo's: up to a few levels apart once decoded). False: copy to the
            host and encode with libjpeg-turbo, as Pillow does.

    Returns:
        ``B`` encoded files (bytes), in batch order; ``[]`` for an empty batch.

    Raises:
        EncodeError: unknown format, quality out of range, image too large for the format, or
            the encoder failed.

    Example:
        >>> files = encode(batch, "JPEG", quality=90)  # doctest: +SKIP
    """
    _check_args(images, format, quality, lossless)
    if images.shape[0] == 0:
        return []
    try:
        if format == "JPEG":
            return _encode_jpeg(images, quality, nvjpeg)
        if format == "PNG":
            return _encode_png(images)
        if format == "GIF":  # (gpu_worker.codecs.animation writes GIF, still and animated)
            return [encode_gif(image) for image in images]
        return _encode_webp(images, quality, lossless)
    except EncodeError:
        raise
    except (RuntimeError, ValueError, OSError) as e:
        raise EncodeError(f"{format} encoding failed: {_clean(e)}") from None

"""Encode uint8 ``(B, C, H, W)`` batches to JPEG, PNG, WebP, AVIF or GIF files.

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
AVIF, GIF  Pillow, on the host: `gpu_worker.codecs.encode_more`.
=========  ===================================================================================

The EXIF, XMP and ICC profile a result keeps (`gpu_worker.codecs.containers.Kept`) are written
into its file: by the AVIF encoder, and into the JPEG, PNG and WebP containers right after
encoding (`gpu_worker.codecs.containers.embed`), so a ``max_bytes`` search counts them.
`stored_colours` says whether a file holds grey or RGB (the profile must describe that).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence

import torch
import torchvision.io as tvio
from PIL import Image

from gpu_worker.codecs.encode_more import encode_avif, encode_gif
from gpu_worker.codecs.containers import Kept, embed
from gpu_worker.errors import EncodeError
from gpu_worker.formats import OUTPUT_FORMATS, QUALITY_RANGE, formats_with
from gpu_worker.interop import MODE_OF_CHANNELS
from kernels._checks import check_images

__all__ = ["FORMATS", "encode", "flatten_alpha", "stored_colours"]

#: Output formats, as the caller spells them (canonical names of gpu_worker.formats).
FORMATS = tuple(OUTPUT_FORMATS)

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


def stored_colours(format: str, channels: int) -> int:
    """How many colour channels (1: grey, 3: RGB) a ``format`` file of a ``channels``-channel
    image holds, as the encoders here write it: WebP has no grey mode (grey is stored as RGB) and
    AVIF stores LA as RGBA; the others keep grey grey. Alpha is not counted."""
    colours = channels - 1 if channels % 2 == 0 else channels
    if colours == 1 and (format == "WEBP" or (format == "AVIF" and channels == 2)):
        return 3
    return colours


def _check_args(images: torch.Tensor, format: str, quality: int, lossless: bool, speed: int | None) -> None:
    check_images(images)
    if format not in FORMATS:
        raise EncodeError(f"unsupported output format {format!r}; use one of {', '.join(FORMATS)}")
    low, high = QUALITY_RANGE
    if isinstance(quality, bool) or not isinstance(quality, int) or not low <= quality <= high:
        raise EncodeError(f"quality must be an integer from {low} to {high}, got {quality!r}")
    spec = OUTPUT_FORMATS[format]
    if lossless and not spec.lossless:
        raise EncodeError(f"lossless applies to {', '.join(formats_with('lossless'))} only, not {format}")
    if speed is not None:
        if spec.speed is None:
            raise EncodeError(f"speed applies to {', '.join(formats_with('speed'))} only, not {format}")
        if isinstance(speed, bool) or not isinstance(speed, int) or not spec.speed[0] <= speed <= spec.speed[1]:
            raise EncodeError(f"speed must be an integer from {spec.speed[0]} to {spec.speed[1]}, got {speed!r}")
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
    mode = MODE_OF_CHANNELS[c]
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
           nvjpeg: bool = True, speed: int | None = None,
           metadata: Sequence[Kept] | None = None) -> list[bytes]:
    """Encode each image of a batch to a file of ``format``.

    Args:
        images: uint8 ``(B, C, H, W)``, values 0..255, C in 1..4 (alpha last when C is even),
            on any device. Not modified.
        format: "JPEG", "PNG", "WEBP", "AVIF" or "GIF" (the caller normalises the case).
        quality: 1..100, for JPEG, WEBP and AVIF (for lossless WebP it is the compression
            effort). Ignored for PNG and GIF.
        lossless: WEBP only: store every pixel exactly.
        nvjpeg: JPEG of RGB images on CUDA: encode with nvjpeg on the device (fast; not the same
            file as libjpeg-turbo's: up to a few levels apart once decoded). False: copy to the
            host and encode with libjpeg-turbo, as Pillow does.
        speed: AVIF only: libavif's speed, 0 (slowest) to 10; None: the format's default.
        metadata: per image, the EXIF, XMP and ICC profile to write into its file (JPEG, PNG,
            WebP, AVIF; what a JPEG cannot hold is left out: `containers.writable`); None
            writes none.

    Returns:
        ``B`` encoded files (bytes), in batch order; ``[]`` for an empty batch.

    Raises:
        EncodeError: unknown format, quality out of range, image too large for the format, or
            the encoder failed.

    Example:
        >>> files = encode(batch, "JPEG", quality=90)  # doctest: +SKIP
    """
    _check_args(images, format, quality, lossless, speed)
    if images.shape[0] == 0:
        return []
    if metadata is not None and len(metadata) != images.shape[0]:
        raise EncodeError(f"metadata has {len(metadata)} entries for {images.shape[0]} images")
    try:
        if format == "AVIF":
            return encode_avif(images, quality, OUTPUT_FORMATS["AVIF"].speed[2] if speed is None else speed, metadata)
        if format == "GIF":
            return encode_gif(images)
        if format == "JPEG":
            files = _encode_jpeg(images, quality, nvjpeg)
        elif format == "PNG":
            files = _encode_png(images)
        else:
            files = _encode_webp(images, quality, lossless)
        if metadata is not None:
            files = [embed(data, format, kept) for data, kept in zip(files, metadata)]
        return files
    except EncodeError:
        raise
    except (RuntimeError, ValueError, OSError) as e:
        raise EncodeError(f"{format} encoding failed: {_clean(e)}") from None

"""Encode uint8 ``(B, C, H, W)`` batches to JPEG, PNG, WebP, AVIF or GIF files.

`encode` checks the arguments against the formats table (`gpu_worker.formats`) and calls the
function the table names for the format and the batch's device (`OutputFormat.encoders`,
resolved by `encoder`). The JPEG, PNG and WebP encoders are here:

=========  ===================================================================================
format     how
=========  ===================================================================================
JPEG       ``torchvision.io.encode_jpeg`` on a list of images, one call: nvjpeg when the batch
           is on CUDA and has 3 channels (4:4:4 chroma), libjpeg-turbo on the CPU otherwise
           (4:2:0 chroma; torchvision's nvjpeg encoder takes 3 channels only, so grey batches
           are encoded on the CPU). Alpha is first flattened onto white, on the batch's device.
PNG        ``torchvision.io.encode_png`` (CPU, zlib level 6) for 1 and 3 channels; Pillow for 2
           and 4 (torchvision refuses them). Lossless: decoding gives the tensor back exactly.
WEBP       Pillow (libwebp), ``quality`` applies; alpha kept. ``lossless=True`` keeps every
           pixel exactly, the colour under fully transparent pixels included. WebP has no grey
           mode: 1 and 2 channels are stored as RGB and RGBA.
AVIF, GIF  Pillow, on the host: `gpu_worker.codecs.encode_more`.
=========  ===================================================================================

The EXIF, XMP and ICC profile a result keeps (`gpu_worker.codecs.containers.Kept`) are written
into its file by its encoder: the AVIF encoder hands them to libavif, the JPEG, PNG and WebP ones
write them into the container right after encoding (`gpu_worker.codecs.containers.embed`), so a
``max_bytes`` search counts them. `stored_colours` says whether a file holds grey or RGB (the
profile must describe that), from the table's ``stored_as``.
"""

from __future__ import annotations

import functools
import importlib
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torchvision.io as tvio
from PIL import Image

from gpu_worker.codecs.containers import Kept, embed
from gpu_worker.errors import EncodeError
from gpu_worker.formats import OUTPUT_FORMATS, QUALITY_RANGE, formats_with
from gpu_worker.interop import MODE_OF_CHANNELS
from kernels._checks import check_images

__all__ = ["FORMATS", "EncodeOptions", "as_stored", "encode", "encoder", "flatten_alpha", "stored_colours"]

#: Output formats, as the caller spells them (canonical names of gpu_worker.formats).
FORMATS = tuple(OUTPUT_FORMATS)

@dataclass(frozen=True)
class EncodeOptions:
    """What an encode function (`OutputFormat.encoders`) is asked for, checked by `encode`.

    Attributes:
        quality: 1..100 where the format has a quality (for lossless WebP, the compression
            effort); the others ignore it.
        lossless: store every pixel exactly (formats with ``lossless``).
        speed: the encoder's speed (formats with ``speed``: the job's or the format's default);
            None for the others.
        metadata: per image, the EXIF, XMP and ICC profile to write into its file (already cut
            to what the format holds: `gpu_worker.codecs.containers.writable`); None writes none.
    """

    quality: int = 85
    lossless: bool = False
    speed: Optional[int] = None
    metadata: Optional[Sequence[Kept]] = None


@functools.cache
def encoder(reference: str) -> Callable:
    """The function a formats-table reference ``"module:function"`` names (imported on first use)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


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
    image holds, as its encoder writes it (the table's ``stored_as``: WebP has no grey mode, AVIF
    stores LA as RGBA). Alpha is not counted."""
    mode = MODE_OF_CHANNELS[channels]
    return 1 if OUTPUT_FORMATS[format].stored_as.get(mode, mode) in ("L", "LA") else 3


def as_stored(im: Image.Image, format: str) -> Image.Image:
    """A Pillow image converted to the mode a ``format`` file holds it in (``stored_as``)."""
    target = OUTPUT_FORMATS[format].stored_as.get(im.mode)
    return im.convert(target) if target is not None else im


def _with_metadata(files: list[bytes], format: str, options: EncodeOptions) -> list[bytes]:
    """The files with each one's kept EXIF, XMP and profile written into its container."""
    if options.metadata is None:
        return files
    return [embed(data, format, kept) for data, kept in zip(files, options.metadata)]


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


def encode_jpeg(images: torch.Tensor, options: EncodeOptions) -> list[bytes]:
    """JPEG files by libjpeg-turbo on the host (4:2:0); alpha first flattened onto white on the
    batch's device."""
    if images.shape[1] % 2 == 0:
        images = flatten_alpha(images)  # in blocks of rows: int32 temporaries stay small
    encoded = tvio.encode_jpeg([img.contiguous() for img in images.cpu()], quality=options.quality)
    return _with_metadata([t.numpy().tobytes() for t in encoded], "JPEG", options)


def encode_jpeg_nvjpeg(images: torch.Tensor, options: EncodeOptions) -> list[bytes]:
    """JPEG files of a batch on CUDA by nvjpeg (4:4:4), one call; grey goes to `encode_jpeg`
    (torchvision's nvjpeg encoder takes 3 channels only)."""
    if images.shape[1] % 2 == 0:
        images = flatten_alpha(images)
    if images.shape[1] != 3:
        return encode_jpeg(images, options)
    encoded = tvio.encode_jpeg([img.contiguous() for img in images], quality=options.quality)
    # The files live on the GPU: one copy to the host for all of them, then split.
    sizes = [int(t.numel()) for t in encoded]
    flat = torch.cat(encoded).cpu().numpy().tobytes()
    out, start = [], 0
    for n in sizes:
        out.append(flat[start : start + n])
        start += n
    return _with_metadata(out, "JPEG", options)


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


def encode_png(images: torch.Tensor, options: EncodeOptions) -> list[bytes]:
    """PNG files (zlib level 6) on the host: libpng through torchvision for 1 and 3 channels,
    Pillow for 2 and 4 (torchvision refuses them)."""
    out = []
    for img in images.cpu():
        if img.shape[0] in (1, 3):
            out.append(tvio.encode_png(img.contiguous(), compression_level=6).numpy().tobytes())
        else:
            buf = io.BytesIO()
            _pil_image(img).save(buf, "PNG", compress_level=6)
            out.append(buf.getvalue())
    return _with_metadata(out, "PNG", options)


def encode_webp(images: torch.Tensor, options: EncodeOptions) -> list[bytes]:
    """WebP files by libwebp through Pillow on the host, grey as RGB (``stored_as``)."""
    out = []
    for img in images.cpu():
        im = as_stored(_pil_image(img), "WEBP")
        buf = io.BytesIO()
        if options.lossless:
            im.save(buf, "WEBP", lossless=True, quality=options.quality, exact=True)
        else:
            im.save(buf, "WEBP", quality=options.quality)
        out.append(buf.getvalue())
    return _with_metadata(out, "WEBP", options)


def encode(images: torch.Tensor, format: str, quality: int = 85, *, lossless: bool = False,
           nvjpeg: bool = True, speed: int | None = None,
           metadata: Sequence[Kept] | None = None) -> list[bytes]:
    """Encode each image of a batch to a file of ``format``.

    Args:
        images: uint8 ``(B, C, H, W)``, values 0..255, C in 1..4 (alpha last when C is even),
            on any device. Not modified.
        format: a canonical name of the formats table, ``OUTPUT_FORMATS`` ("JPEG"; the caller
            normalises the case).
        quality: 1..100, for the formats with ``quality`` (for lossless WebP it is the
            compression effort); the others ignore it.
        lossless: formats with ``lossless`` (WEBP): store every pixel exactly.
        nvjpeg: a batch on CUDA in a format with a GPU encoder (``encoders["cuda"]``: JPEG's
            nvjpeg, RGB only): encode it there (fast; not the same file as libjpeg-turbo's: up
            to a few levels apart once decoded). False: the host's encoder (``encoders["cpu"]``:
            libjpeg-turbo, as Pillow).
        speed: formats with a ``speed`` (AVIF: libavif's, 0 slowest to 10); None: the format's
            default.
        metadata: per image, the EXIF, XMP and ICC profile to write into its file, as
            `containers.writable` cuts it to what the format holds (the table's ``metadata``
            and ``icc``); None writes none.

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
    spec = OUTPUT_FORMATS[format]
    device = "cuda" if images.device.type == "cuda" and nvjpeg and spec.gpu_encoder else "cpu"
    options = EncodeOptions(quality, lossless, spec.speed[2] if spec.speed and speed is None else speed, metadata)
    try:
        return encoder(spec.encoders[device])(images, options)
    except EncodeError:
        raise
    except (RuntimeError, ValueError, OSError) as e:
        raise EncodeError(f"{format} encoding failed: {_clean(e)}") from None

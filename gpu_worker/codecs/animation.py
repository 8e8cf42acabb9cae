"""Animations as one stack: every frame of an animated GIF, WebP or APNG read into a uint8
``(F, C, H, W)`` tensor, and a stack written back as an animated GIF or WebP.

When an animation is kept (`kept`: the source has more than one frame and the output format can
hold several, ``OutputFormat.animation`` in gpu_worker.formats), the job's stages read every
frame with `decode_frames`, run each operation once over the whole stack (as over a batch of
images), and write the result with `encode_frames`. Other output formats get the first frame, as
for any still image.

Frames are what Pillow presents: ``im.seek(i)`` then ``im.convert("RGBA")``, i.e. each frame
already composited over the ones before it by the file's disposal and blending rules, at the
canvas size. So the stack always has 4 channels (RGBA), whatever the source's palette or mode,
and every frame is a whole picture. Writing it back, each frame is stored whole too (the writers
may crop it to what changed), with the source's durations (ms), loop count and, for GIF, its
disposal methods.

Limits, from the header before any pixel is decoded (`check_limits`): the frame count against
``MAX_ANIMATION_FRAMES`` and ``frames * width * height`` against ``MAX_DECODED_PIXELS``. The
frame count is Pillow's ``n_frames``: WebP and APNG state it in their headers (WebP's demuxer
reads the frame headers, APNG's acTL chunk); for GIF, Pillow walks the file's blocks to count
the image descriptors, skipping the LZW data without decoding it. That walk reads at most
``MAX_SOURCE_BYTES`` (the fetch's limit), on the host. A file holding fewer frames than its
header claims fails when the missing frame is read, with a `DecodeError`.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image

from gpu_worker.codecs.containers import Kept
from gpu_worker.codecs.encode_more import quantize_for_gif
from gpu_worker.codecs.decode import apply_orientation
from gpu_worker.codecs.encode import EncodeOptions, encoder
from gpu_worker.codecs.probe import SourceInfo, open_image
from gpu_worker.errors import DecodeError, EncodeError, LimitExceeded
from gpu_worker.formats import OUTPUT_FORMATS, SOURCE_FORMATS, formats_with, source_name
from gpu_worker.interop import MODE_OF_CHANNELS

__all__ = ["ANIMATION_DECODER", "Timing", "check_limits", "decode_frames", "encode_frames",
           "encode_gif_frames", "encode_webp_frames", "is_animation",
           "kept", "stacked_info"]

#: ``SourceInfo.decoder`` of a source whose frames are all read (`stacked_info`).
ANIMATION_DECODER = "pillow.frames"

#: Formats whose animations are read frame by frame (Pillow's names; APNG is "PNG").
ANIMATED_SOURCES = tuple(p for f in SOURCE_FORMATS if f.animated for p in f.plugins)

#: APNG's dispose_op (0 none, 1 background, 2 previous) as GIF's disposal (1, 2, 3).
_APNG_TO_GIF_DISPOSAL = {0: 1, 1: 2, 2: 3}

@dataclass(frozen=True)
class Timing:
    """How an animation plays, as read from its source.

    Attributes:
        durations: each frame's display time, ms (GIF stores tens of ms).
        loop: times the animation plays (0: forever) as the source states it; None when the file
            says nothing (a GIF without the NETSCAPE extension, which plays once).
        disposal: each frame's GIF disposal method (0 unspecified, 1 keep, 2 restore to the
            background, 3 restore to the previous frame); APNG's dispose_op mapped to these;
            None for WebP, whose reader does not report it.
    """

    durations: tuple[int, ...]
    loop: Optional[int]
    disposal: Optional[tuple[int, ...]]


def is_animation(info: SourceInfo) -> bool:
    """Whether the source holds several frames of an animation (GIF, WebP, APNG)."""
    return info.frames > 1 and info.format in ANIMATED_SOURCES


def kept(info: SourceInfo, output_format: str) -> bool:
    """Whether every frame is kept: an animated source and an output format that holds animation."""
    return is_animation(info) and OUTPUT_FORMATS[output_format].animation


def stacked_info(info: SourceInfo) -> SourceInfo:
    """``info`` as the stack of all its frames is decoded: 4 channels, `ANIMATION_DECODER`."""
    return dataclasses.replace(info, channels=4, decoder=ANIMATION_DECODER)


def check_limits(info: SourceInfo, max_frames: int, max_pixels: int) -> None:
    """Refuse, from the header, an animation with more than ``max_frames`` frames
    (``MAX_ANIMATION_FRAMES``) or more than ``max_pixels`` pixels in all its frames
    (``frames * width * height`` against ``MAX_DECODED_PIXELS``); 0 means no limit."""
    if max_frames and info.frames > max_frames:
        raise LimitExceeded(f"{_name(info)} animation has {info.frames:,} frames, over the frame limit "
                            f"MAX_ANIMATION_FRAMES={max_frames:,}")
    total = info.frames * info.width * info.height
    if max_pixels and total > max_pixels:
        raise LimitExceeded(f"{_name(info)} animation is {info.frames:,} frames of {info.width}x{info.height} = "
                            f"{total:,} pixels, over the decoded-pixel limit MAX_DECODED_PIXELS={max_pixels:,}")


def _name(info: SourceInfo) -> str:
    if info.format == "PNG":
        return "APNG"
    return source_name(info.format)


# ---------------------------------------------------------------------------------------------
# Reading


def _disposal(im: Image.Image) -> Optional[int]:
    """The current frame's disposal as GIF numbers it, or None where the reader does not say."""
    if im.format == "GIF":
        return int(getattr(im, "disposal_method", 0) or 0)
    if im.format == "PNG" and "disposal" in im.info:
        return _APNG_TO_GIF_DISPOSAL.get(int(im.info["disposal"]), 1)
    return None


def read_frames(data: bytes, info: SourceInfo) -> tuple[np.ndarray, Timing]:
    """Every frame of an animation as Pillow presents it -> uint8 ``(F, H, W, 4)`` array (stored
    orientation) and its `Timing`. ``info`` is its `probe` (F = ``info.frames``).

    Raises:
        DecodeError: a truncated or corrupt frame, fewer frames than the header says, or a
            frame of another size than the canvas.
    """
    h, w, count = info.stored_height, info.stored_width, info.frames
    out = np.empty((count, h, w, 4), dtype=np.uint8)
    durations: list[int] = []
    disposals: list[Optional[int]] = []
    im = open_image(data)
    try:
        loop = im.info.get("loop")
        for i in range(count):
            try:
                im.seek(i)
            except EOFError:
                raise DecodeError(f"{_name(info)} holds {i} frames, but its header says {count}: "
                                  "the file is truncated or corrupt") from None
            frame = im.convert("RGBA")  # loads the frame: WebP sets its duration here
            if frame.size != (w, h):
                raise DecodeError(f"{_name(info)} frame {i} is {frame.width}x{frame.height}, but the "
                                  f"canvas is {w}x{h}: the file is corrupt")
            out[i] = np.asarray(frame)
            durations.append(max(0, int(im.info.get("duration", 0) or 0)))
            disposals.append(_disposal(im))
            if loop is None:
                loop = im.info.get("loop")
    finally:
        im.close()
    disposal = None if any(d is None for d in disposals) else tuple(int(d) for d in disposals)
    return out, Timing(tuple(durations), None if loop is None else int(loop), disposal)


def decode_frames(data: bytes, info: SourceInfo, device: torch.device | str) -> tuple[torch.Tensor, Timing]:
    """Decode every frame of an animation onto ``device``.

    Args:
        data: the encoded GIF, WebP or APNG.
        info: its `probe` (the caller has checked `check_limits` on it).
        device: where the stack goes.

    Returns:
        uint8 ``(F, 4, H, W)`` on ``device`` (RGBA; the EXIF orientation, if any, applied to
        every frame, so ``H, W == info.height, info.width``) and the animation's `Timing`.

    Raises:
        DecodeError: the file is truncated or corrupt (the message names the format).
    """
    try:
        frames, timing = read_frames(bytes(data), info)
    except (DecodeError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a frame's decoder names the format
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DecodeError(f"{_name(info)} animation could not be decoded: {message[:200]}") from None
    stack = torch.from_numpy(frames).permute(0, 3, 1, 2)  # channels-last strides, no copy
    device = torch.device(device)
    stack = stack.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else stack.to(device)
    return apply_orientation(stack, info.orientation), timing


# ---------------------------------------------------------------------------------------------
# Writing


def _pil_frames(frames: torch.Tensor, opaque_as_rgb: bool) -> list[Image.Image]:
    """uint8 ``(F, C, H, W)`` -> F Pillow images of one mode. Grey becomes RGB(A) (neither GIF's
    writer with several frames nor WebP keeps a grey mode); with ``opaque_as_rgb`` an alpha plane
    that is 255 everywhere is dropped (Pillow then quantizes RGB, by median cut)."""
    host = frames.cpu()
    c = host.shape[1]
    if opaque_as_rgb and c in (2, 4) and bool((host[:, -1] == 255).all()):
        host, c = host[:, :-1], c - 1
    array = host.permute(0, 2, 3, 1).contiguous().numpy()
    mode = MODE_OF_CHANNELS[c]
    images = [Image.fromarray(a[:, :, 0] if c == 1 else a, mode) for a in array]
    if mode in ("L", "LA"):
        images = [im.convert("RGBA" if mode == "LA" else "RGB") for im in images]
    return images




def written_frames(data: bytes) -> int:
    """How many frames an animated file written by `encode_frames` holds (read from its blocks;
    no pixel is decoded)."""
    with Image.open(io.BytesIO(data)) as im:
        return getattr(im, "n_frames", 1)


def encode_frames(frames: torch.Tensor, format: str, timing: Timing, quality: int = 85, *,
                  lossless: bool = False, kept: Optional[Kept] = None) -> bytes:
    """Write a stack of frames as one animated file, by the format's ``animation_encoder``
    (gpu_worker.formats): `encode_gif_frames`, `encode_webp_frames`.

    Args:
        frames: uint8 ``(F, C, H, W)``, C in 1..4, on any device. Not modified.
        format: a format that holds animation ("GIF", "WEBP").
        timing: the source's durations (F of them), loop and disposal (`read_frames`).
        quality: WebP's quality (with ``lossless``, its compression effort); GIF has none.
        lossless: WebP only: every frame stored exactly (the colour under transparent pixels too).
        kept: the EXIF, XMP and ICC profile to write where the format holds them
            (`gpu_worker.codecs.containers.writable` leaves GIF nothing); None writes none.

    Returns:
        The file (see each format's writer).

    Raises:
        EncodeError: a format that holds no animation, a durations list of another length, a
            frame too large for the format, or the encoder failed.
    """
    if frames.dim() != 4 or frames.dtype != torch.uint8 or not 1 <= frames.shape[1] <= 4:
        raise EncodeError(f"frames must be uint8 (F, C, H, W) with C in 1..4, got {tuple(frames.shape)} {frames.dtype}")
    spec = OUTPUT_FORMATS.get(format)
    if spec is None or not spec.animation:
        raise EncodeError(f"{format} holds no animation; {' and '.join(formats_with('animation'))} do")
    count, _, h, w = frames.shape
    if len(timing.durations) != count:
        raise EncodeError(f"{count} frames but {len(timing.durations)} durations")
    if max(h, w) > spec.max_side:
        raise EncodeError(f"image is {w}x{h}; {format} stores at most {spec.max_side} pixels a side")
    options = EncodeOptions(quality, lossless, metadata=None if kept is None else [kept])
    return encoder(spec.animation_encoder)(frames, timing, options)


def encode_gif_frames(frames: torch.Tensor, timing: Timing, options: EncodeOptions) -> bytes:
    """An animated GIF of checked ``(F, C, H, W)`` frames: each frame quantized to at most 256
    colours by Pillow's median cut (`encode_more.quantize_for_gif`: alpha becomes 0 or 255), the source's loop, and
    its disposal for opaque frames; frames with transparent pixels are written with disposal 2
    (restore to the background) each, the only one that shows whole frames exactly. GIF has no
    quality and holds no metadata."""
    images = _pil_frames(frames, opaque_as_rgb=True)
    transparent = images[0].mode == "RGBA"
    params: dict = {}
    if timing.loop is not None:
        params["loop"] = timing.loop
    if transparent:
        # Frames with transparent pixels: each frame is a whole picture, and a GIF frame can
        # only turn a pixel transparent again by clearing the one before it (disposal 2).
        params["disposal"] = 2
    elif timing.disposal is not None:
        params["disposal"] = list(timing.disposal)
    return _save([quantize_for_gif(im) for im in images], "GIF", timing, params)


def encode_webp_frames(frames: torch.Tensor, timing: Timing, options: EncodeOptions) -> bytes:
    """An animated WebP of checked ``(F, C, H, W)`` frames: libwebp's animation encoder through
    Pillow (``minimize_size`` off, every frame a whole picture to it) at ``options.quality``,
    lossless (the colour under transparent pixels kept) with ``options.lossless``, with the kept
    EXIF, XMP and ICC profile of ``options.metadata`` (one entry); played once unless the
    source says otherwise."""
    params: dict = {"loop": 1 if timing.loop is None else timing.loop, "quality": options.quality}
    if options.lossless:
        params.update(lossless=True, exact=True)
    kept = options.metadata[0] if options.metadata else None
    if kept is not None:
        params.update({name: value for name, value in (("exif", kept.exif), ("xmp", kept.xmp),
                                                        ("icc_profile", kept.icc)) if value is not None})
    return _save(_pil_frames(frames, opaque_as_rgb=False), "WEBP", timing, params)


def _save(images: list[Image.Image], format: str, timing: Timing, params: dict) -> bytes:
    """Pillow's writer of ``format`` with every frame and the source's durations."""
    buf = io.BytesIO()
    try:
        images[0].save(buf, format, save_all=True, append_images=images[1:], duration=list(timing.durations),
                       **params)
    except (OSError, ValueError, RuntimeError) as e:
        raise EncodeError(f"{format} animation encoding failed: {str(e)[:200] or type(e).__name__}") from None
    return buf.getvalue()

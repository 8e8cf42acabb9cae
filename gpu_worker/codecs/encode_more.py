"""AVIF and GIF results, through Pillow's encoders on the host.

=========  ===================================================================================
format     how
=========  ===================================================================================
AVIF       Pillow's AVIF plugin (libavif with AOM): ``quality`` 1-100, ``speed`` 0 (slowest,
           smallest) to 10 (fastest); 4:2:0 chroma, grey (1 channel) as 4:0:0 and decoded back
           as grey; LA is stored as RGBA. The EXIF, XMP and ICC profile a result keeps are handed
           to the encoder (which writes an EXIF orientation as the container's ``irot``/``imir``;
           ours is 1; the profile goes into the ``colr`` box).
GIF        A palette of at most 256 colours chosen by Pillow's quantizer (median cut,
           ``Image.quantize``); grey is stored with its own 256 levels (exact). With alpha (LA,
           RGBA): 255 colours for the pixels whose alpha is 128 or more (quantized from those
           pixels only) and one transparent entry (index 255) for the rest; GIF has no partial
           transparency. Still GIFs and animation frames go through the same quantizer.
=========  ===================================================================================

Each is the format's encoder in the formats table (`gpu_worker.formats`, ``encoders["cpu"]``):
it takes a CPU-or-device uint8 ``(B, C, H, W)`` batch and the checked `EncodeOptions`, and
returns B files (one Pillow call per image; the caller runs images in parallel,
`gpu_worker.cpu_pool`).
"""

from __future__ import annotations

import io
import numpy as np
import torch
from PIL import Image

from gpu_worker.codecs.containers import EXIF_HEADER, Kept
from gpu_worker.codecs.encode import EncodeOptions, as_stored
from gpu_worker.interop import MODE_OF_CHANNELS

__all__ = ["encode_avif", "encode_gif", "GIF_TRANSPARENT_INDEX"]

#: The palette entry that is transparent in a GIF of an image with alpha.
GIF_TRANSPARENT_INDEX = 255
#: GIF's alpha is one bit: alpha at or above this is opaque in a GIF, below it transparent.
GIF_ALPHA_THRESHOLD = 128


def _pil(img: torch.Tensor) -> Image.Image:
    """uint8 (C, H, W) on the host -> a Pillow image of the matching mode (one copy)."""
    array = img.permute(1, 2, 0).contiguous().numpy()
    c = array.shape[2]
    return Image.fromarray(array[:, :, 0] if c == 1 else array, MODE_OF_CHANNELS[c])


def encode_avif(images: torch.Tensor, options: EncodeOptions) -> list[bytes]:
    """AVIF files of a uint8 ``(B, C, H, W)`` batch at ``options.quality`` (1-100) and
    ``options.speed`` (0-10), each with its ``options.metadata`` (EXIF as TIFF bytes, XMP, ICC
    profile) handed to the encoder."""
    out = []
    for i, img in enumerate(images.cpu()):
        im = as_stored(_pil(img), "AVIF")
        kept = options.metadata[i] if options.metadata is not None else Kept()
        extra = {}
        if kept.exif is not None:
            extra["exif"] = EXIF_HEADER + kept.exif
        if kept.xmp is not None:
            extra["xmp"] = kept.xmp
        if kept.icc is not None:
            extra["icc_profile"] = kept.icc
        buf = io.BytesIO()
        im.save(buf, "AVIF", quality=options.quality, speed=options.speed, **extra)
        out.append(buf.getvalue())
    return out


def quantize_for_gif(im: Image.Image) -> Image.Image:
    """A Pillow ``L``, ``LA``, ``RGB`` or ``RGBA`` image (a still, or one frame of an animation)
    as the palette image a GIF stores (see the module docstring); the transparent entry, when
    there is one, is in ``info["transparency"]``. Grey stays grey (exact); colours are quantized
    by Pillow's median cut, and the colour under transparent pixels spends no palette entry.
    (Pillow's own RGBA conversion, a fast octree over RGBA, can leave no entry whose alpha is
    exactly 0, and then transparent pixels come out opaque.)"""
    if im.mode == "L":
        return im
    if im.mode == "RGB":
        return im.quantize(256)
    array = np.asarray(im.convert("RGBA"))
    clear = array[..., 3] < GIF_ALPHA_THRESHOLD
    if not clear.any():
        return Image.fromarray(array[..., :3]).quantize(256)
    rgb = array[..., :3].copy()
    rgb[clear] = rgb[~clear][0] if (~clear).any() else 0
    colours = Image.fromarray(rgb, "RGB").quantize(GIF_TRANSPARENT_INDEX)  # at most 255 entries: 0..254
    indices = np.array(colours, dtype=np.uint8)
    indices[clear] = GIF_TRANSPARENT_INDEX
    palette = (colours.getpalette() or [])[: GIF_TRANSPARENT_INDEX * 3]
    out = Image.fromarray(indices, "P")
    out.putpalette(palette + [0] * (768 - len(palette)))
    out.info["transparency"] = GIF_TRANSPARENT_INDEX
    return out


def encode_gif(images: torch.Tensor, options: EncodeOptions) -> list[bytes]:
    """GIF files of a uint8 ``(B, C, H, W)`` batch (see the module docstring); GIF has no
    quality and holds no metadata (the table's ``quality``, ``metadata``, ``icc``)."""
    out = []
    for img in images.cpu():
        im = quantize_for_gif(_pil(img))
        buf = io.BytesIO()
        if "transparency" in im.info:
            im.save(buf, "GIF", transparency=im.info["transparency"], optimize=False)
        else:
            im.save(buf, "GIF", optimize=False)
        out.append(buf.getvalue())
    return out

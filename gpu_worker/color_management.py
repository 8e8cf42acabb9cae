"""Embedded ICC profiles: reading them, and converting sources to sRGB.

The reference is LittleCMS through Pillow::

    ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"),
                              renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode=im.mode)

with alpha passed through, and grey profiles to grey (`reference`). How the worker gets there:

- RGB and grey sources: LittleCMS transforms, once per profile on the host, every colour the
  source can hold (all 2**24 RGB triplets, or the 256 grey levels) into a table
  (`srgb_table`); the device applies it with one gather per pixel (`kernels.apply_color_table`),
  so the pixels are LittleCMS's own, bit for bit. Tables are cached by the profile's SHA-256,
  :data:`CACHE_TABLES` per device (an RGB table is 48 MB). A 3D lattice with interpolation would
  be smaller but misses by up to 17 levels (BENCHMARKS.md, "ICC profiles").
- "Is it sRGB?": decided by what the profile does, not by its name: a profile whose conversion
  to sRGB moves none of about 140,000 test colours (a lattice of every fifth level, and every
  level along the cube's edges and its grey axis) by more than one level needs no conversion
  (`_is_identity`; every sRGB profile, whatever its description or version). Cached by the
  profile's hash: a few milliseconds, once per profile.
- CMYK sources: Pillow decodes them on the host (Adobe's inverted CMYK is inverted back there),
  and LittleCMS converts them through their profile at once (`cmyk_to_srgb`): no CMYK table of
  every colour would fit. Without a profile they keep Pillow's ``convert("RGB")``.

A profile that LittleCMS cannot read is an error naming the profile (`ProfileError`). A
profile for another colour space than the image's (an RGB profile in a grey JPEG, which some
tools write) is ignored, as browsers and Pillow ignore it.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageCms

from gpu_worker.errors import DecodeError
from kernels.color_table import apply_color_table

__all__ = ["CACHE_TABLES", "ProfileError", "SourceProfile", "cmyk_to_srgb", "profile_for", "read_profile",
           "reference", "srgb_table", "to_srgb"]

#: RGB tables (48 MB each) kept per device; grey ones (256 bytes) are counted alike.
CACHE_TABLES = 4
#: Profile verdicts ("the identity within one level") remembered, by hash.
CACHE_VERDICTS = 1024
#: RGB colours LittleCMS transforms per call while a table is built (the rest of the memory a
#: build needs is the 48 MB table itself).
_BUILD_SLICE = 1 << 22

#: The profile's colour space (its header's, as Pillow reports it, stripped) -> channels of
#: the decoded image it applies to (alpha aside).
_COLOUR_CHANNELS = {"RGB": 3, "GRAY": 1}

_SRGB = ImageCms.createProfile("sRGB")
_INTENT = ImageCms.Intent.PERCEPTUAL


class ProfileError(DecodeError):
    """The source's embedded ICC profile cannot be read or used."""


@dataclass(frozen=True, eq=False)
class SourceProfile:
    """An embedded ICC profile, opened by LittleCMS.

    Attributes:
        data: the profile's bytes, as embedded.
        digest: SHA-256 of ``data`` (hex): the key of every cache here.
        description: the profile's description tag ('' when it has none).
        color_space: its data colour space: "RGB", "GRAY", "CMYK", ...
        profile: Pillow's handle on the LittleCMS profile.
    """

    data: bytes
    digest: str
    description: str
    color_space: str
    profile: ImageCms.ImageCmsProfile

    def applies_to(self, mode: str, channels: int) -> bool:
        """Whether the profile describes a decoded image of Pillow ``mode`` with ``channels``
        channels (alpha included): a CMYK profile a CMYK source, RGB colour, GRAY grey."""
        if mode == "CMYK":
            return self.color_space == "CMYK"
        colour = channels - 1 if channels % 2 == 0 else channels
        return _COLOUR_CHANNELS.get(self.color_space) == colour


def read_profile(data: bytes) -> SourceProfile:
    """Open the profile ``data`` with LittleCMS (its header and tag directory; no table yet).

    Raises:
        ProfileError: LittleCMS cannot read it; the message names the embedded ICC profile.
    """
    data = bytes(data)
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
        core = profile.profile
        space = core.xcolor_space.strip()
        description = (core.profile_description or "").strip()
    except Exception as exc:  # noqa: BLE001 - whatever LittleCMS says, the profile is unusable
        raise ProfileError(f"the image's embedded ICC profile ({len(data)} bytes) is corrupt: "
                           f"{str(exc) or type(exc).__name__}") from None
    return SourceProfile(data, hashlib.sha256(data).hexdigest(), description, space, profile)


def profile_for(icc: bytes | None, mode: str, channels: int) -> SourceProfile | None:
    """The profile that applies to a source (`SourceInfo`'s ``icc_profile``, ``mode`` and
    ``channels``): None when it has none, or one for another colour space (ignored).

    Raises:
        ProfileError: the embedded profile cannot be read.
    """
    if not icc:
        return None
    source = read_profile(icc)
    return source if source.applies_to(mode, channels) else None


def _transform(source: SourceProfile, in_mode: str, out_mode: str) -> ImageCms.ImageCmsTransform:
    try:
        return ImageCms.buildTransform(source.profile, _SRGB, in_mode, out_mode, renderingIntent=_INTENT)
    except Exception as exc:  # noqa: BLE001 - a profile LittleCMS opened but cannot use
        raise ProfileError(f"the image's embedded ICC profile {source.description!r} cannot be used "
                           f"for a conversion to sRGB: {str(exc) or type(exc).__name__}") from None


def _probe_colours() -> np.ndarray:
    """The colours the identity test transforms: a lattice of every fifth level (52**3), and all
    256 levels along the six edges of the cube from black and the grey axis. uint8 ``(N, 3)``."""
    levels = np.arange(0, 256, 5, dtype=np.uint8)
    lattice = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    ramp = np.arange(256, dtype=np.uint8)[:, None]
    zero = np.zeros_like(ramp)
    edges = [np.concatenate(c, axis=1) for c in ((ramp, zero, zero), (zero, ramp, zero), (zero, zero, ramp),
                                                 (ramp, ramp, zero), (ramp, zero, ramp), (zero, ramp, ramp),
                                                 (ramp, ramp, ramp))]
    return np.concatenate([lattice, *edges])


_PROBE = _probe_colours()


def _is_identity(source: SourceProfile) -> bool:
    """Whether converting ``source`` to sRGB moves no colour by more than one level: tested on the
    256 grey levels (grey profiles), or on :func:`_probe_colours` (RGB: about 140,000 colours)."""
    if source.color_space == "GRAY":
        return _grey_table(source) is None
    im = Image.frombytes("RGB", (len(_PROBE), 1), _PROBE.tobytes())
    out = np.asarray(_transform(source, "RGB", "RGB").apply(im)).reshape(-1, 3)
    return int(np.abs(out.astype(np.int16) - _PROBE).max()) <= 1


def _grey_table(source: SourceProfile) -> np.ndarray | None:
    """The 256 grey levels converted: uint8 ``(256, 1)``; None when that is the identity within
    one level."""
    ramp = Image.frombytes("L", (256, 1), bytes(range(256)))
    rgb = _transform(source, "L", "RGB").apply(ramp)
    table = np.asarray(rgb.convert("L")).reshape(256, 1).copy()
    identity = np.arange(256).reshape(256, 1)
    return None if np.abs(table.astype(np.int16) - identity).max() <= 1 else table


def _build_table(source: SourceProfile) -> np.ndarray | None:
    """The conversion of every colour: uint8 ``(2**24, 3)`` (RGB) or ``(256, 1)`` (grey); None
    when the profile is sRGB (`_is_identity`)."""
    if source.color_space == "GRAY":
        return _grey_table(source)
    if _is_identity(source):
        return None
    transform = _transform(source, "RGB", "RGB")
    table = np.empty((1 << 24, 3), dtype=np.uint8)
    reds = _BUILD_SLICE >> 16
    colours = np.empty((reds, 1 << 16, 3), dtype=np.uint8)  # one slice: `reds` reds, every (g, b)
    colours[:, :, 1] = np.arange(1 << 16, dtype=np.uint32) >> 8
    colours[:, :, 2] = np.arange(1 << 16, dtype=np.uint32) & 255
    for red in range(0, 256, reds):
        colours[:, :, 0] = np.arange(red, red + reds, dtype=np.uint8)[:, None]
        im = Image.frombuffer("RGB", (1 << 16, reds), colours, "raw", "RGB", 0, 1)
        table[red << 16 : (red + reds) << 16] = np.asarray(transform.apply(im)).reshape(_BUILD_SLICE, 3)
    return table


class _Cache:
    """The tables by (digest, device) (at most :data:`CACHE_TABLES` per device, least recently
    used dropped first) and the identity verdicts by digest. One build at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.build_lock = threading.Lock()
        self.tables: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self.identity: OrderedDict[str, bool] = OrderedDict()

    def get(self, source: SourceProfile, device: torch.device) -> torch.Tensor | None:
        key = (source.digest, str(device))
        with self.lock:
            if self.identity.get(source.digest):
                return None
            if key in self.tables:
                self.tables.move_to_end(key)
                return self.tables[key]
        with self.build_lock:  # another thread may have built it meanwhile
            with self.lock:
                if key in self.tables:
                    return self.tables[key]
            built = _build_table(source)
            table = None if built is None else torch.from_numpy(built).to(device)
            with self.lock:
                self.identity[source.digest] = built is None
                while len(self.identity) > CACHE_VERDICTS:
                    self.identity.popitem(last=False)
                if table is not None:
                    self.tables[key] = table
                    same_device = [k for k in self.tables if k[1] == key[1]]
                    for old in same_device[: max(0, len(same_device) - CACHE_TABLES)]:
                        del self.tables[old]
            return table

    def clear(self) -> None:
        with self.lock:
            self.tables.clear()
            self.identity.clear()


_cache = _Cache()


def srgb_table(source: SourceProfile, device: torch.device | str) -> torch.Tensor | None:
    """The conversion of ``source`` (an RGB or GRAY profile) to sRGB as a table on ``device``:
    uint8 ``(2**24, 3)`` for RGB, ``(256, 1)`` for grey (see `kernels.apply_color_table`); None
    when the profile is sRGB (the conversion is the identity within one level).

    Built by LittleCMS on the first call for a profile (all 2**24 colours, in slices), then cached.

    Raises:
        ProfileError: LittleCMS cannot build the transform.
        ValueError: a profile of another colour space.
    """
    if source.color_space not in _COLOUR_CHANNELS:
        raise ValueError(f"no table for a {source.color_space} profile; CMYK goes through cmyk_to_srgb")
    return _cache.get(source, torch.device(device))


def to_srgb(images: torch.Tensor, source: SourceProfile) -> torch.Tensor:
    """``images`` (uint8 ``(B, C, H, W)`` or ``(C, H, W)``, grey or RGB with or without alpha,
    in ``source``'s colour space) converted to sRGB on their device; alpha passed through. The
    images themselves when the profile is sRGB."""
    table = srgb_table(source, images.device)
    if table is None:
        return images
    if table.device.type == "cuda":  # the cache may drop it while this stream still reads it
        table.record_stream(torch.cuda.current_stream(table.device))
    if images.dim() == 3:
        return apply_color_table(images.unsqueeze(0), table)[0]
    return apply_color_table(images, table)


def cmyk_to_srgb(im: Image.Image, source: SourceProfile) -> Image.Image:
    """A decoded CMYK image (Pillow's: Adobe's inverted CMYK already inverted back) -> sRGB RGB,
    through its CMYK profile by LittleCMS on the host, perceptual intent."""
    return _transform(source, "CMYK", "RGB").apply(im)


def reference(im: Image.Image, icc: bytes) -> Image.Image:
    """Pillow's conversion of ``im`` (L, LA, RGB, RGBA or CMYK) from the profile ``icc`` to sRGB:
    the oracle the tests and benchmarks compare with. Alpha is passed through; grey stays grey
    (LittleCMS converts grey to sRGB's RGB, whose channels are equal: ``convert("L")``)."""
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    alpha = im.getchannel("A") if im.mode in ("LA", "RGBA") else None
    colour = im.convert({"LA": "L", "RGBA": "RGB"}.get(im.mode, im.mode))
    out_mode = "RGB" if colour.mode in ("L", "CMYK") else colour.mode
    out = ImageCms.profileToProfile(colour, src, _SRGB, renderingIntent=_INTENT, outputMode=out_mode)
    if colour.mode == "L":
        out = out.convert("L")
    if alpha is not None:
        out.putalpha(alpha)
    return out

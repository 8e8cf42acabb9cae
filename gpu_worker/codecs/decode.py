"""Decode encoded images into uint8 ``(C, H, W)`` tensors on a device, EXIF orientation applied.

Decode paths (`SourceInfo.decoder`, chosen by `probe` from the header):

- ``torchvision.jpeg``: JPEG (and MPO, its first picture) in L or RGB, baseline or progressive.
  On a CUDA device: nvjpeg, all the batch's JPEGs in one ``decode_jpeg(list, device="cuda")``
  call; elsewhere libjpeg-turbo on the CPU (``decode_jpeg`` on CPU).
- ``torchvision.webp``: still WebP, lossy or lossless, with or without alpha (CPU).
- ``pillow``: PNG (every kind), GIF (first frame), CMYK JPEG (through its embedded ICC profile by
  LittleCMS, else Pillow's CMYK -> RGB; Adobe's inverted CMYK is inverted back by Pillow), animated
  WebP (first frame), BMP, TIFF, PPM, ICO (CPU).

Every decoder here is fed bytes from strangers, so each is one that fails with an error on
corrupt data rather than a signal, as the mutation-fuzz campaign (``make fuzz``, and a slice of it
in ``make test``) checks:

- PNG and GIF go through Pillow, not torchvision. torchvision 0.29's ``decode_png`` kills the
  process (SIGSEGV) after a libpng error, such as one flipped byte in the IDAT data ("incorrect
  data check", "bad adaptive filter value"), and its ``decode_gif`` (giflib) refuses valid GIFs
  that Pillow reads and can return another size than the header's. Pillow's decoders are fuzzed
  continuously upstream (OSS-Fuzz) and are the reference for our pixels anyway. Validating every
  chunk CRC and the whole zlib stream before torchvision's decoder would cost an inflate of its
  own, about what Pillow's whole decode costs (BENCHMARKS.md, "Decoders on untrusted bytes").
- JPEG stays on libjpeg-turbo through torchvision on the host (Pillow's pixels, bit for bit) and
  nvjpeg on CUDA; WebP stays on torchvision's libwebp (faster than Pillow's, which goes through
  libwebp's animation decoder: BENCHMARKS.md, "Decoders on untrusted bytes"). Both libraries are fuzzed upstream, torchvision's
  wrappers around them report every error as an exception, and the campaign found no crash in
  either.
- Every decoded image's size is checked against the header's (`probe`), so no result can carry
  metadata that does not match its pixels.

CPU results are copied to the device from pinned memory (non-blocking). Orientation is applied
on the device by one code path for every decoder: nvjpeg does not apply EXIF orientation, so the
orientation comes from the header (`probe`) and the tensor is flipped/transposed exactly as
Pillow's `ImageOps.exif_transpose` does.

Output channels (`SourceInfo.channels`): grey stays 1 channel, grey+alpha 2, colour 3, colour
with alpha 4; palette images become RGB, or RGBA when they have transparency. Only the first
frame of an animated or multi-page file is decoded.

16-bit sources are reduced to 8 bits by keeping the high byte (``v >> 8``). That is what Pillow
does itself when it opens 16-bit RGB/RGBA/LA PNGs (raw modes "RGB;16B" etc.). For 16-bit grey
("I;16") Pillow's ``convert("L")`` clips every value above 255 to white instead; we keep the
high byte there too, so a 16-bit grey photo stays a photo. 32-bit "I" and float "F" images
(rare TIFFs) follow Pillow's ``convert("L")``: clipped to 0..255.

Pillow 13 turns a TIFF by its orientation tag while loading it (older versions do not): the
Pillow path reads the orientation again after loading and applies only what is left.

Every failure is a `DecodeError` naming the format and the problem; a truncated file is an error
(Pillow's ``LOAD_TRUNCATED_IMAGES`` is left False, and JPEGs are checked for their end marker
before nvjpeg, which can return a partial image without complaint).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torchvision.io as tvio
from PIL import Image

from gpu_worker.codecs.probe import SourceInfo, open_image, probe, read_orientation
from gpu_worker.color_management import cmyk_to_srgb, profile_for
from gpu_worker.errors import DecodeError, JobError
from gpu_worker.formats import source_name

__all__ = ["decode", "decode_batch", "apply_orientation"]


def _fmt(info: SourceInfo) -> str:
    return source_name(info.format)


def _clean(err: BaseException) -> str:
    """A library error as one short line: torchvision prefixes 'func, /path/file.cpp:123, '."""
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^[^,]*, \S+\.(?:cpp|h|cu):\d+, ", "", msg)


def _as_tensor(data: bytes) -> torch.Tensor:
    # bytearray: torch.frombuffer warns on read-only buffers such as bytes.
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------
# Orientation and channels


def apply_orientation(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """Undo EXIF ``orientation`` (1..8) on a ``(..., H, W)`` tensor, as `ImageOps.exif_transpose`.

    Runs on the tensor's device; returns a contiguous tensor (the input itself for 1).
    """
    if orientation == 2:  # FLIP_LEFT_RIGHT
        return img.flip(-1)
    if orientation == 3:  # ROTATE_180
        return img.flip(-2, -1)
    if orientation == 4:  # FLIP_TOP_BOTTOM
        return img.flip(-2)
    if orientation == 5:  # TRANSPOSE: out[y, x] = in[x, y]
        return img.transpose(-2, -1).contiguous()
    if orientation == 6:  # ROTATE_270 (clockwise 90)
        return torch.rot90(img, -1, dims=(-2, -1)).contiguous()
    if orientation == 7:  # TRANSVERSE: transpose across the other diagonal
        return img.transpose(-2, -1).flip(-2, -1).contiguous()
    if orientation == 8:  # ROTATE_90 (counter-clockwise 90)
        return torch.rot90(img, 1, dims=(-2, -1)).contiguous()
    return img


def _fix_channels(img: torch.Tensor, want: int) -> torch.Tensor:
    """Bring a decoder's channel count to the one `probe` promised (a safety net)."""
    have = img.shape[0]
    if have == want:
        return img
    if have == 4 and want == 2:  # grey+alpha held as RGBA with R = G = B (16-bit LA PNG in Pillow)
        return img[[0, 3]].contiguous()
    if want == have - 1 and have % 2 == 0:  # drop an alpha plane
        return img[:-1].contiguous()
    if want == have + 1 and want % 2 == 0:  # add an opaque alpha plane
        return torch.cat([img, torch.full_like(img[:1], 255)])
    if have == 3 and want == 1:  # grey decoded as RGB (R = G = B)
        return img[:1].contiguous()
    if have == 1 and want == 3:
        return img.expand(3, -1, -1).contiguous()
    raise DecodeError(f"decoder returned {have} channels where {want} were expected")


def _checked_size(img: torch.Tensor | JobError, info: SourceInfo) -> torch.Tensor | JobError:
    """``img`` (orientation applied) if its size is the header's, else a `DecodeError`: a result's
    metadata comes from the header, so the pixels must match it."""
    if isinstance(img, torch.Tensor) and tuple(img.shape[-2:]) != (info.height, info.width):
        return DecodeError(f"{_fmt(info)} decoded to {img.shape[-1]}x{img.shape[-2]} pixels, but its header "
                           f"says {info.width}x{info.height}: the file is corrupt")
    return img


def _to_device(img: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return img.pin_memory().to(device, non_blocking=True)
    return img.to(device)


# ---------------------------------------------------------------------------------------------
# JPEG


def jpeg_complete(data: bytes) -> bool:
    """True when the JPEG's scans are followed by an end-of-image marker (not truncated).

    Segments are skipped by their length (so an EOI inside an EXIF thumbnail does not count);
    entropy-coded data is walked by its 0xFF bytes, where 0xFF00 (stuffing) and RSTn are not
    markers. Trailing bytes after the EOI are allowed.
    """
    n = len(data)
    if n < 4 or data[:2] != b"\xff\xd8":
        return False
    if data.rstrip(b"\x00")[-2:] == b"\xff\xd9":  # fast path: EOI can't occur in scan data
        return True
    pos = 2
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # stuffing, TEM, SOI, RSTn
            pos += 2
        elif marker == 0xD9:
            return True
        else:  # a segment with a length
            if pos + 4 > n:
                return False
            pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
            if pos > n:
                return False


def _jpeg_cpu(data: bytes) -> torch.Tensor:
    return tvio.decode_jpeg(_as_tensor(data), mode=tvio.ImageReadMode.UNCHANGED)


def _decode_jpegs(datas: Sequence[bytes], infos: Sequence[SourceInfo], device: torch.device,
                  nvjpeg: bool = True) -> list:
    """JPEGs -> list of (C, H, W) tensors on ``device`` (orientation not yet applied) or errors.

    On CUDA (unless ``nvjpeg`` is False) the good files go to nvjpeg in one batched call; if that
    call fails, each file is tried alone to find the bad one, and a file nvjpeg refuses is tried
    with libjpeg-turbo on the CPU before it is reported (nvjpeg lacks some JPEG features that
    libjpeg-turbo has).
    """
    out: list = [None] * len(datas)
    on_gpu = device.type == "cuda" and nvjpeg
    todo = []
    for i, data in enumerate(datas):
        if jpeg_complete(data):
            todo.append(i)
        else:
            out[i] = DecodeError("JPEG data is truncated or corrupt (no end-of-image marker)")

    def one(i: int) -> torch.Tensor | DecodeError:
        try:
            if on_gpu:
                try:
                    return tvio.decode_jpeg(_as_tensor(datas[i]), mode=tvio.ImageReadMode.UNCHANGED, device=device)
                except Exception:  # noqa: BLE001 - nvjpeg refused it: libjpeg-turbo below
                    pass
            return _to_device(_jpeg_cpu(datas[i]), device)
        except Exception as e:  # noqa: BLE001 - every decoder failure becomes a DecodeError
            return DecodeError(f"JPEG could not be decoded: {_clean(e)}")

    if on_gpu and len(todo) > 1:
        try:
            batch = tvio.decode_jpeg(
                [_as_tensor(datas[i]) for i in todo], mode=tvio.ImageReadMode.UNCHANGED, device=device
            )
            for i, img in zip(todo, batch):
                out[i] = img
        except Exception:  # noqa: BLE001 - one bad file fails the whole call: isolate it
            for i in todo:
                out[i] = one(i)
    else:
        for i in todo:
            out[i] = one(i)

    for i in todo:
        if isinstance(out[i], torch.Tensor):
            try:
                out[i] = _fix_channels(out[i], infos[i].channels)
            except DecodeError as e:
                out[i] = e
    return out


# ---------------------------------------------------------------------------------------------
# CPU decoders: torchvision for PNG / WebP / GIF, Pillow for the rest


def _pillow_to_array(im: Image.Image) -> np.ndarray:
    """A loaded Pillow image -> uint8 array (H, W, C) with C as `probe.pillow_target` says."""
    mode = im.mode
    trns = im.info.get("transparency")
    if mode.startswith("I;16"):
        a16 = np.asarray(im)
        grey = (a16 >> 8).astype(np.uint8)
        if trns is None:
            return grey[:, :, None]
        alpha = np.where(a16 == int(trns), 0, 255).astype(np.uint8)
        return np.stack([grey, alpha], axis=2)
    if mode in ("1", "L", "I", "F"):
        target = "LA" if trns is not None and mode != "F" else "L"
    elif mode in ("LA", "La"):
        target = "LA"
    elif mode in ("RGBA", "RGBa", "PA"):
        target = "RGBA"
    elif mode in ("P", "RGB"):
        target = "RGBA" if trns is not None else "RGB"
    else:  # CMYK (Pillow's CMYK -> RGB conversion, or its ICC profile's), YCbCr, RGBX, LAB, HSV, ...
        target = "RGB"
        if mode == "CMYK":
            source = profile_for(im.info.get("icc_profile"), mode, 3)
            if source is not None:
                im, mode = cmyk_to_srgb(im, source), "RGB"
    if mode != target:
        im = im.convert(target)
    arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _decode_pillow(data: bytes) -> tuple[torch.Tensor, int]:
    """Decode with Pillow -> (uint8 (C, H, W) CPU tensor, orientation still to apply).

    Recent Pillow versions transpose TIFFs by their orientation tag while loading (and drop the
    tag); older ones do not. The orientation is therefore read again after loading: whatever
    Pillow has not applied is left for `apply_orientation`.
    """
    im = open_image(data)
    try:
        im.seek(0)
        im.load()
        residual = read_orientation(im, data)
        arr = _pillow_to_array(im)
    finally:
        im.close()
    return _as_channels_last(arr), residual


def _as_channels_last(arr: np.ndarray) -> torch.Tensor:
    """An ``(H, W, C)`` uint8 array as a ``(C, H, W)`` tensor over the same memory (channels-last
    strides, which every kernel takes): no copy of the pixels.

    ``np.asarray`` of a Pillow image is a read-only view of one copy of its pixels. The decoded
    source is never written to (kernels leave their input as it is: tests/test_kernel_contract),
    so the read-only flag is not a reason for another copy.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(arr).permute(2, 0, 1)


def _decode_cpu(data: bytes, info: SourceInfo) -> tuple[torch.Tensor, int]:
    """Non-JPEG (and CMYK JPEG) decode on the host.

    Returns the uint8 (C, H, W) CPU tensor and the EXIF orientation still to be applied.
    """
    decoder = info.decoder
    orientation = info.orientation
    if decoder == "torchvision.webp":
        mode = tvio.ImageReadMode.RGB_ALPHA if info.channels == 4 else tvio.ImageReadMode.RGB
        img = tvio.decode_webp(_as_tensor(data), mode=mode)
    elif decoder == "torchvision.jpeg":
        img = _jpeg_cpu(data)
    else:
        img, orientation = _decode_pillow(data)
    return _fix_channels(img, info.channels), orientation


def _decode_other(data: bytes, info: SourceInfo, device: torch.device) -> torch.Tensor:
    """Decode on the host, copy to ``device``, apply the orientation there."""
    try:
        img, orientation = _decode_cpu(data, info)
    except JobError:
        raise
    except Exception as e:  # noqa: BLE001 - every decoder failure becomes a DecodeError
        raise DecodeError(f"{_fmt(info)} could not be decoded: {_clean(e)}") from None
    return apply_orientation(_to_device(img, device), orientation)


# ---------------------------------------------------------------------------------------------
# Public API


def decode(data: bytes, device: torch.device | str, info: SourceInfo | None = None) -> torch.Tensor:
    """Decode one encoded image to a uint8 ``(C, H, W)`` tensor on ``device``.

    Args:
        data: the encoded file (JPEG, PNG, WebP, GIF, BMP, TIFF, ...).
        device: where the result lives; JPEGs are decoded there by nvjpeg when it is CUDA.
        info: `probe(data)` if the caller already has it (it is probed otherwise). The caller
            is expected to have checked its pixel limit (`check_pixels`) on it.

    Returns:
        uint8 tensor ``(C, H, W)``, values 0..255, C in 1..4 (``info.channels``), EXIF
        orientation applied (so ``H, W == info.height, info.width``).

    Raises:
        DecodeError: unreadable, truncated or corrupt data (the message names the format).

    Example:
        >>> img = decode(open("photo.jpg", "rb").read(), "cuda")  # doctest: +SKIP
    """
    device = torch.device(device)
    data = bytes(data)
    if info is None:
        info = probe(data)
    if info.decoder == "torchvision.jpeg":
        img = _decode_jpegs([data], [info], device)[0]
        if not isinstance(img, Exception):
            img = apply_orientation(img, info.orientation)
    else:
        img = _decode_other(data, info, device)
    img = _checked_size(img, info)
    if isinstance(img, Exception):
        raise img
    return img


def decode_batch(
    datas: Sequence[bytes],
    device: torch.device | str,
    infos: Sequence[SourceInfo | None] | None = None,
    nvjpeg: bool = True,
) -> list[torch.Tensor | JobError]:
    """Decode several images; each item is its tensor or the error that item ended with.

    JPEGs are decoded together (one nvjpeg call on CUDA); one bad file fails only its own item.

    Args:
        datas: encoded files.
        device: target device.
        infos: optional `probe` results, one per file (None entries are probed here).
        nvjpeg: on CUDA, decode JPEGs with nvjpeg (fast; its pixels differ from libjpeg-turbo's by
            a few levels where chroma is upsampled). False: libjpeg-turbo on the host, Pillow's
            pixels, then copied to the device.

    Returns:
        A list as long as ``datas``: uint8 ``(C, H, W)`` tensors on ``device`` (orientation
        applied), or a `DecodeError` (`LimitExceeded` if a Pillow plugin refused the header).
    """
    device = torch.device(device)
    n = len(datas)
    if infos is not None and len(infos) != n:
        raise ValueError(f"infos has {len(infos)} entries for {n} images")
    results: list = [None] * n
    probed: list[SourceInfo | None] = [None] * n
    for i, data in enumerate(datas):
        try:
            probed[i] = (infos[i] if infos is not None else None) or probe(bytes(data))
        except JobError as e:
            results[i] = e

    jpegs = [i for i in range(n) if probed[i] is not None and probed[i].decoder == "torchvision.jpeg"]
    if jpegs:
        decoded = _decode_jpegs([bytes(datas[i]) for i in jpegs], [probed[i] for i in jpegs], device, nvjpeg)
        for i, img in zip(jpegs, decoded):
            results[i] = img if isinstance(img, Exception) else apply_orientation(img, probed[i].orientation)
            results[i] = _checked_size(results[i], probed[i])

    for i in range(n):
        if results[i] is None and probed[i] is not None:
            try:
                results[i] = _checked_size(_decode_other(bytes(datas[i]), probed[i], device), probed[i])
            except JobError as e:
                results[i] = e
    return results

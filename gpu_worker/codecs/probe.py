"""Header-only probing of source images: format, size, mode, EXIF orientation, frames.

`probe` reads what Pillow's plugins parse when they *open* a file (the header, and for PNG the
chunk list), never the pixels: a 40000x40000 PNG of 1.5 MB is probed in milliseconds. The
caller compares ``width * height`` with its own limit (`check_pixels`) before anything decodes.

Pillow's own decompression-bomb check (`Image.MAX_IMAGE_PIXELS`: a warning above the limit, an
error above twice it) lives in `Image.open`. It would refuse the very images whose size we must
report, and turning it off means writing a process-wide global, which is not thread-safe. So we
identify the file the way `Image.open` does, but call the plugin factories ourselves (see
`open_image`): no global is touched, and our limit is the one that counts. The few checks that
sit inside plugins (WebP's canvas check at open) are caught and reported as `LimitExceeded`.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageFile

from gpu_worker.codecs.metadata import NOTHING, SourceMetadata, read_source
from gpu_worker.errors import DecodeError, LimitExceeded
from gpu_worker.formats import SOURCE_FORMATS, SOURCE_PLUGINS, refused_source, source_name

#: Pillow formats we accept, in the order they are tried (the formats table's sources). Others
#: (EPS, PDF, WMF, ... some of which run external programs on load) are refused before any plugin
#: code parses them. Formats whose header check is loose (TGA, DIB: any bytes may pass) are left
#: out too, so that garbage is refused rather than "decoded". The JPEG plugin also opens MPO (the
#: multi-picture JPEG that cameras write), which is reported as "JPEG" and decoded as its first
#: picture. HEIC/HEIF and JPEG XL are refused by name from their first bytes
#: (`gpu_worker.formats.REFUSED_SOURCES`).
ACCEPTED_FORMATS = SOURCE_PLUGINS

#: What the error message calls "an image".
_KNOWN = ", ".join(f.name for f in SOURCE_FORMATS)

#: Decoders a probed file is routed to (`SourceInfo.decoder`; `decode`'s docstring says why).
DECODERS = ("torchvision.jpeg", "torchvision.webp", "pillow")


@dataclass(frozen=True)
class SourceInfo:
    """What the header says about a source image. Sizes in pixels, after EXIF orientation.

    Attributes:
        format: Pillow's format name ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", ...).
        width, height: the size as displayed, i.e. after the EXIF orientation is applied.
        stored_width, stored_height: the size of the pixel grid stored in the file.
        mode: Pillow's mode of the source ("RGB", "L", "P", "CMYK", "I;16", "RGBA", "LA", ...).
        orientation: EXIF orientation 1..8 (1 when absent or out of range), as Pillow's
            `ImageOps.exif_transpose` reads it.
        frames: number of frames (1 unless animated / multi-page); only the first is decoded.
        size_bytes: length of the encoded data.
        channels: channels `decode` returns: 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA).
        decoder: which decoder `decode` uses (one of `DECODERS`).
        metadata: what the file carries besides pixels (EXIF, XMP, IPTC, ICC profile).
        icc_profile: the embedded ICC profile's bytes (JPEG APP2, PNG iCCP, WebP ICCP, TIFF tag,
            as Pillow's plugins read them when opening), or None; not checked here
            (`gpu_worker.color_management.read_profile` opens it).
    """

    format: str
    width: int
    height: int
    stored_width: int
    stored_height: int
    mode: str
    orientation: int
    frames: int
    size_bytes: int
    channels: int
    decoder: str
    metadata: SourceMetadata = NOTHING
    icc_profile: bytes | None = None

    @property
    def pixels(self) -> int:
        """width * height of the decoded image."""
        return self.width * self.height


# ---------------------------------------------------------------------------------------------
# Opening without Pillow's global bomb check


def open_image(data: bytes) -> ImageFile.ImageFile:
    """Identify ``data`` and return Pillow's lazily opened image (no pixels read).

    Like `Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)` without its
    `MAX_IMAGE_PIXELS` check (see the module docstring). Raises `DecodeError` for empty,
    unrecognised or corrupt headers and `LimitExceeded` where a plugin's own bomb check fires.
    """
    if not data:
        raise DecodeError("empty image data")
    refused = refused_source(data[:64])
    if refused is not None:
        raise DecodeError(f"{refused.name} images are not supported: {refused.reason}; "
                          f"send JPEG, PNG, WebP or AVIF")
    Image.preinit()
    if any(f not in Image.OPEN for f in ACCEPTED_FORMATS):
        Image.init()  # loads the WebP and TIFF plugins, among others
    fp = io.BytesIO(data)
    prefix = data[:16]
    failed: list[tuple[str, Exception]] = []
    for fmt in ACCEPTED_FORMATS:
        if fmt not in Image.OPEN:
            continue  # plugin not available in this Pillow build
        factory, accept = Image.OPEN[fmt]
        accepted = accept(prefix) if accept else True
        if isinstance(accepted, str) or not accepted:
            continue  # a str is the plugin's reason for refusing
        fp.seek(0)
        try:
            return factory(fp, "")
        except Image.DecompressionBombError as e:
            # Pillow's WebP plugin checks its own bomb limit (2 x MAX_IMAGE_PIXELS, 179 MP) while
            # opening; ours is lower by default, so the image is over MAX_DECODED_PIXELS too.
            raise LimitExceeded(f"{source_name(fmt)} image is over the decoded-pixel limit MAX_DECODED_PIXELS "
                                f"(and Pillow's own ceiling): {e}") from None
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any plugin failure on a header is a bad header
            failed.append((fmt, e))
    if failed:
        fmt, err = failed[0]
        raise DecodeError(f"corrupt or truncated {source_name(fmt)} header: {str(err) or type(err).__name__}")
    raise DecodeError(f"not a recognised image ({_KNOWN}); starts with {data[:8]!r}")


# ---------------------------------------------------------------------------------------------
# EXIF orientation, header only


def _png_chunk(data: bytes, tag: bytes) -> bytes | None:
    """The body of a PNG's first ``tag`` chunk wherever it is (before IHDR, after IDAT), walking
    chunk headers only; None when the file has none before IEND or its end."""
    pos = 8
    n = len(data)
    while pos + 8 <= n:
        length, found = struct.unpack(">I4s", data[pos : pos + 8])
        if found == tag:
            return data[pos + 8 : pos + 8 + length]
        if found == b"IEND":
            break
        pos += 12 + length
    return None


def read_orientation(im: ImageFile.ImageFile, data: bytes) -> int:
    """EXIF orientation 1..8 exactly as `ImageOps.exif_transpose` reads it (EXIF, then XMP).

    Pillow's PNG `getexif` loads the pixels when the eXIf chunk is not in the header, so for
    PNG we find the chunk ourselves and call the base `Image.getexif`, which never loads.
    """
    try:
        if im.format == "PNG":
            if "exif" not in im.info:
                chunk = _png_chunk(data, b"eXIf")
                if chunk is not None:
                    im.info["exif"] = b"Exif\x00\x00" + chunk
            exif = Image.Image.getexif(im)
        else:
            exif = im.getexif()
        value = exif.get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block must not make the image unreadable  # noqa: BLE001
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# ---------------------------------------------------------------------------------------------
# Routing: which decoder, and how many channels come out


def pillow_target(mode: str, has_transparency: bool) -> int:
    """Channels the Pillow path gives for a Pillow ``mode`` (see `decode._pillow_to_array`)."""
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return 2 if has_transparency and mode != "F" else 1
    if mode in ("LA", "La"):
        return 2
    if mode in ("RGBA", "RGBa", "PA"):
        return 4
    if mode in ("P", "RGB"):
        return 4 if has_transparency else 3
    return 3  # CMYK, YCbCr, RGBX, LAB, HSV, ...


def _route(im: ImageFile.ImageFile, data: bytes, frames: int) -> tuple[int, str]:
    fmt, mode = im.format, im.mode
    trns = im.info.get("transparency") is not None
    if fmt in ("JPEG", "MPO") and mode in ("L", "RGB"):
        return (1 if mode == "L" else 3), "torchvision.jpeg"
    if fmt == "WEBP" and frames == 1:  # torchvision refuses animated WebP
        return (4 if mode == "RGBA" else 3), "torchvision.webp"
    if fmt == "PNG" and mode == "RGBA":
        ihdr = _png_chunk(data, b"IHDR")
        if ihdr is not None and len(ihdr) >= 10 and ihdr[9] == 4:
            return 2, "pillow"  # Pillow opens 16-bit grey+alpha as "RGBA" (R = G = B): kept grey
    return pillow_target(mode, trns), "pillow"


def _stored_size(im: ImageFile.ImageFile) -> tuple[int, int]:
    """The stored pixel grid. Recent Pillow versions report a TIFF's size already turned by its
    orientation tag (and transpose it on load); the tags themselves give the stored grid."""
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})
        w, h = tags.get(256), tags.get(257)  # ImageWidth, ImageLength
        if isinstance(w, int) and isinstance(h, int):
            return w, h
    return im.size


# ---------------------------------------------------------------------------------------------


def probe(data: bytes) -> SourceInfo:
    """Read the header of an encoded image: format, size, mode, orientation, frames.

    Args:
        data: the encoded file.

    Returns:
        `SourceInfo`; ``width``/``height`` are after EXIF orientation.

    Raises:
        DecodeError: empty data, an unrecognised format, or a corrupt/truncated header.
        LimitExceeded: a Pillow plugin refused the header as a decompression bomb.

    Example:
        >>> info = probe(jpeg_bytes)  # doctest: +SKIP
        >>> check_pixels(info, 50_000_000)  # doctest: +SKIP
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    im = open_image(data)
    try:
        return _read_header(im, data)
    except (DecodeError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - whatever a plugin raises on a bad header names the file
        raise DecodeError(f"corrupt {source_name(im.format)} header: {str(e)[:200] or type(e).__name__}") from None
    finally:
        im.close()


def _read_header(im: ImageFile.ImageFile, data: bytes) -> SourceInfo:
    """`probe`'s reading of an opened image (see there)."""
    try:
        frames = int(getattr(im, "n_frames", 1))
    except Exception:  # a broken later frame does not matter: we decode the first  # noqa: BLE001
        frames = 1
    if frames > 1:
        im.seek(0)
    sw, sh = _stored_size(im)
    if sw < 1 or sh < 1:
        raise DecodeError(f"{source_name(im.format)} header gives an empty image ({sw}x{sh})")
    orientation = read_orientation(im, data)
    w, h = (sh, sw) if orientation >= 5 else (sw, sh)
    channels, decoder = _route(im, data, frames)
    return SourceInfo(
        format="JPEG" if im.format == "MPO" else str(im.format),
        width=w,
        height=h,
        stored_width=sw,
        stored_height=sh,
        mode=im.mode,
        orientation=orientation,
        frames=max(1, frames),
        size_bytes=len(data),
        channels=channels,
        decoder=decoder,
        metadata=read_source(im, data),
        icc_profile=im.info.get("icc_profile") or None,
    )


def check_pixels(info: SourceInfo, max_pixels: int | None, name: str = "MAX_DECODED_PIXELS") -> None:
    """Raise `LimitExceeded` when the decoded image would have more than ``max_pixels`` pixels.

    ``max_pixels`` None or 0 means no limit. ``name`` is the setting named in the message.
    """
    if not max_pixels:
        return
    if info.pixels > max_pixels:
        raise LimitExceeded(
            f"image is {info.width}x{info.height} = {info.pixels:,} pixels, over the decoded-pixel "
            f"limit {name}={max_pixels:,}"
        )

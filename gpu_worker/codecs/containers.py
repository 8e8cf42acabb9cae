"""EXIF, XMP and an ICC profile written into an encoded JPEG, PNG or WebP file, by rewriting its
container (the pixels' bytes untouched).

The encoders (torchvision's libjpeg-turbo, nvjpeg and libpng, Pillow's libwebp) write files with
none of these; `embed` adds what a result keeps (`Kept`) where each format's specification puts it:

=========  ===================================================================================
format     where each block goes
=========  ===================================================================================
JPEG       after SOI (after the JFIF ``APP0`` segment when there is one, which must come first):
           ``APP1`` ``Exif\\0\\0`` + the EXIF, ``APP1`` ``http://ns.adobe.com/xap/1.0/\\0`` +
           the XMP, then the profile in ``APP2`` segments ``ICC_PROFILE\\0`` + sequence number +
           count, 65,519 bytes of it each (ICC.1, annex B.4). An EXIF or XMP block over one
           segment's 65,533 bytes, or a profile over 255 segments, is left out (`writable`).
PNG        right after ``IHDR``: ``iCCP`` (name, compression method 0, zlib data; an ``iCCP`` or
           ``sRGB`` chunk already there is dropped: one colour space statement), ``eXIf`` (the
           TIFF bytes), ``iTXt`` keyed ``XML:com.adobe.xmp`` (uncompressed)
WEBP       the extended format (WebP container specification): ``VP8X`` first (a simple file
           gets one, with the canvas size read from its VP8/VP8L bitstream) with the ICC, EXIF
           and XMP flags set, ``ICCP`` before the image data, ``EXIF`` and ``XMP `` after it
=========  ===================================================================================

AVIF gets the same three from its encoder (Pillow's ``save(exif=..., xmp=..., icc_profile=...)``,
`gpu_worker.codecs.encode_more`); GIF keeps none. Pillow reads each back (``Image.open(...).info``
``["icc_profile"]``, ``["xmp"]``, ``getexif()``: tests/test_icc.py, tests/test_formats.py).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Optional

from gpu_worker.formats import OUTPUT_FORMATS

__all__ = ["Kept", "CONTAINERS", "writable", "embed"]

#: The EXIF header JPEG's APP1 segment (and Pillow's ``info["exif"]``) starts with.
EXIF_HEADER = b"Exif\x00\x00"
_XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_ICC_JPEG_HEADER = b"ICC_PROFILE\x00"
#: Largest body of one JPEG marker segment (its 16-bit length counts itself).
_JPEG_SEGMENT_MAX = 65_533
#: Bytes of a profile per JPEG APP2 segment: the segment's body less the tag, sequence number, count.
_JPEG_ICC_CHUNK = _JPEG_SEGMENT_MAX - len(_ICC_JPEG_HEADER) - 2
#: Largest profile a JPEG holds: 255 APP2 segments (the sequence number is one byte).
_JPEG_ICC_MAX = 255 * _JPEG_ICC_CHUNK
_XMP_PNG_KEY = b"XML:com.adobe.xmp"


@dataclass(frozen=True)
class Kept:
    """What one result carries of its source besides pixels.

    Attributes:
        exif: the EXIF block as TIFF bytes (no ``Exif\\0\\0`` header; orientation 1); None: none.
        xmp: the XMP packet (bytes of XML); None: none.
        icc: the ICC profile (bytes, as embedded in the source); None: none.
    """

    exif: Optional[bytes] = None
    xmp: Optional[bytes] = None
    icc: Optional[bytes] = None

    def names(self) -> list[str]:
        """The blocks present, in the response's order: a subset of ["exif", "xmp", "icc"]."""
        return [name for name in ("exif", "xmp", "icc") if getattr(self, name) is not None]

    def __bool__(self) -> bool:
        return bool(self.names())


def writable(format: str, kept: Kept) -> Kept:
    """What of ``kept`` a ``format`` file holds: the blocks the formats table says it carries
    (``metadata``: EXIF, XMP; ``icc``; GIF none), and in a JPEG only an EXIF or XMP block that
    fits in one marker segment (65,533 bytes with its header) and a profile that fits in 255 APP2
    segments (16,707,345 bytes); larger ones are left out."""
    spec = OUTPUT_FORMATS[format]
    kept = Kept(exif=kept.exif if "exif" in spec.metadata else None,
                xmp=kept.xmp if "xmp" in spec.metadata else None,
                icc=kept.icc if spec.icc else None)
    fits = _FITS.get(format)
    return fits(kept) if fits is not None else kept


# ---------------------------------------------------------------------------------------------
# JPEG


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def _jpeg_fits(kept: Kept) -> Kept:
    """What of ``kept`` fits in a JPEG's marker segments (see `writable`)."""
    return Kept(
        exif=kept.exif if kept.exif is not None and len(EXIF_HEADER) + len(kept.exif) <= _JPEG_SEGMENT_MAX else None,
        xmp=kept.xmp if kept.xmp is not None and len(_XMP_JPEG_HEADER) + len(kept.xmp) <= _JPEG_SEGMENT_MAX else None,
        icc=kept.icc if kept.icc is not None and len(kept.icc) <= _JPEG_ICC_MAX else None,
    )


def _jpeg(data: bytes, kept: Kept) -> bytes:
    segments = []
    if kept.exif is not None:
        segments.append(_jpeg_segment(0xE1, EXIF_HEADER + kept.exif))
    if kept.xmp is not None:
        segments.append(_jpeg_segment(0xE1, _XMP_JPEG_HEADER + kept.xmp))
    if kept.icc is not None:
        chunks = [kept.icc[i : i + _JPEG_ICC_CHUNK] for i in range(0, len(kept.icc), _JPEG_ICC_CHUNK)]
        segments += [_jpeg_segment(0xE2, _ICC_JPEG_HEADER + bytes((n, len(chunks))) + chunk)
                     for n, chunk in enumerate(chunks, start=1)]
    pos = 2  # after SOI; after the JFIF APP0 segment when there is one (it must come first)
    if data[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:pos] + b"".join(segments) + data[pos:]


# ---------------------------------------------------------------------------------------------
# PNG


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk bytes) of every chunk after the signature."""
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        end = pos + 12 + struct.unpack(">I", data[pos : pos + 4])[0]
        chunks.append((data[pos + 4 : pos + 8], data[pos:end]))
        pos = end
    return chunks


def _png(data: bytes, kept: Kept) -> bytes:
    dropped = set()
    added = []
    if kept.icc is not None:
        dropped |= {b"iCCP", b"sRGB"}  # one colour space statement only
        added.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(kept.icc)))
    if kept.exif is not None:
        dropped.add(b"eXIf")
        added.append(_png_chunk(b"eXIf", kept.exif))
    if kept.xmp is not None:
        added.append(_png_chunk(b"iTXt", _XMP_PNG_KEY + b"\x00\x00\x00\x00\x00" + kept.xmp))
    chunks = [chunk for tag, chunk in _png_chunks(data) if tag not in dropped]
    return data[:8] + chunks[0] + b"".join(added) + b"".join(chunks[1:])  # right after IHDR


# ---------------------------------------------------------------------------------------------
# WebP


def _riff_chunk(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _webp_canvas(tag: bytes, body: bytes) -> tuple[int, int, bool]:
    """(width, height, alpha) of a simple WebP's VP8 or VP8L bitstream."""
    if tag == b"VP8L":
        bits = struct.unpack("<I", body[1:5])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    w, h = struct.unpack("<HH", body[6:10])  # VP8 key frame: after the 3-byte tag and start code
    return w & 0x3FFF, h & 0x3FFF, False


#: VP8X flag bits (WebP container specification): ICC profile, alpha, EXIF, XMP.
_ICC_FLAG, _ALPHA_FLAG, _EXIF_FLAG, _XMP_FLAG = 0x20, 0x10, 0x08, 0x04


def _webp(data: bytes, kept: Kept) -> bytes:
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((tag, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    if chunks[0][0] == b"VP8X":
        head = bytearray(chunks[0][1])
        chunks = chunks[1:]
    else:
        w, h, alpha = _webp_canvas(*chunks[0])
        head = bytearray(struct.pack("<I", _ALPHA_FLAG if alpha else 0) + (w - 1).to_bytes(3, "little")
                         + (h - 1).to_bytes(3, "little"))
    before, after = [], []
    if kept.icc is not None:
        head[0] |= _ICC_FLAG
        before.append((b"ICCP", kept.icc))
    if kept.exif is not None:
        head[0] |= _EXIF_FLAG
        after.append((b"EXIF", kept.exif))
    if kept.xmp is not None:
        head[0] |= _XMP_FLAG
        after.append((b"XMP ", kept.xmp))
    replaced = {tag for tag, _ in before + after}
    image = [(tag, body) for tag, body in chunks if tag not in replaced]
    body = b"WEBP" + b"".join(_riff_chunk(tag, chunk) for tag, chunk in [(b"VP8X", bytes(head)), *before, *image, *after])
    return b"RIFF" + struct.pack("<I", len(body)) + body


#: The container writers, by format; `embed` rewrites these formats' files.
_WRITERS = {"JPEG": _jpeg, "PNG": _png, "WEBP": _webp}
#: Formats whose containers hold less than the table's blocks of any size: what fits.
_FITS = {"JPEG": _jpeg_fits}

#: The formats whose containers `embed` rewrites.
CONTAINERS = tuple(_WRITERS)


def embed(data: bytes, format: str, kept: Kept) -> bytes:
    """``data`` (an encoded JPEG, PNG or WebP without EXIF, XMP or a profile) with
    ``writable(format, kept)`` written into it; ``data`` itself when that is nothing.

    Example:
        >>> tagged = embed(encode(batch, "PNG")[0], "PNG", Kept(icc=profile))  # doctest: +SKIP
    """
    kept = writable(format, kept)
    if not kept:
        return data
    return _WRITERS[format](bytes(data), kept)

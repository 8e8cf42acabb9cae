"""What a source carries besides pixels (EXIF, XMP, IPTC, an ICC profile, frames), and putting
EXIF and XMP back into an encoded result when a job asks to keep them.

Results are encoded from pixels, so nothing of the source's metadata reaches them unless a job
sets ``output.keep_metadata``: then the source's EXIF (GPS and all, its orientation set to 1
since the pixels are already turned) and XMP (its ``tiff:Orientation`` set to 1 too) are written
into the result where the format carries them (`gpu_worker.formats`: JPEG, PNG, WebP and AVIF).
IPTC and the EXIF of formats that carry none (GIF) are never kept.

`read_source` works on an opened Pillow image (header only, no pixels: see `probe`).
`embed` adds the kept metadata to an encoded JPEG (APP1 segments after SOI/APP0), PNG (``eXIf``
and an ``iTXt`` ``XML:com.adobe.xmp`` chunk after IHDR) or WebP (``EXIF`` and ``XMP `` chunks,
with a ``VP8X`` header) by rewriting its container; AVIF gets them from its encoder
(`encode_more`).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

from PIL import ExifTags, Image, ImageCms

__all__ = ["SourceMetadata", "Kept", "read_source", "kept_metadata", "writable", "embed"]

#: The EXIF header JPEG's APP1 segment (and Pillow's ``info["exif"]``) starts with.
_EXIF_HEADER = b"Exif\x00\x00"
_XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
#: Largest body of one JPEG marker segment (its 16-bit length counts itself).
_JPEG_SEGMENT_MAX = 65_533
_XMP_ORIENTATION = (re.compile(rb'tiff:Orientation="[0-9]"'), re.compile(rb"<tiff:Orientation>[0-9]</tiff:Orientation>"))


@dataclass(frozen=True)
class SourceMetadata:
    """What a source file carries besides its pixels.

    Attributes:
        exif: the EXIF block, as TIFF bytes (no ``Exif\\0\\0`` header); None when absent.
        gps: whether the EXIF has a GPS directory.
        xmp: the XMP packet (bytes of XML); None when absent.
        iptc: whether the file carries IPTC (JPEG's Photoshop APP13 record, TIFF's tag 33723).
        icc: the embedded ICC profile's description ("Display P3"); "" for a profile without
            one or that LittleCMS cannot read; None when the file has no profile.
    """

    exif: Optional[bytes] = None
    gps: bool = False
    xmp: Optional[bytes] = None
    iptc: bool = False
    icc: Optional[str] = None

    def describe(self, frames: int) -> dict:
        """The response's view (``metadata.source``'s keys): presence, never the bytes."""
        return {"exif": self.exif is not None, "gps": self.gps, "xmp": self.xmp is not None,
                "iptc": self.iptc, "icc": self.icc, "frames": frames}


NOTHING = SourceMetadata()


@dataclass(frozen=True)
class Kept:
    """The metadata written into one result: EXIF as TIFF bytes (orientation 1), XMP."""

    exif: Optional[bytes] = None
    xmp: Optional[bytes] = None

    def names(self) -> list[str]:
        return [name for name in ("exif", "xmp") if getattr(self, name) is not None]


# ---------------------------------------------------------------------------------------------
# Reading a source's metadata (header only)


def _png_chunks(data: bytes):
    """(type, body) of every chunk of a PNG, walking chunk headers only, up to IEND."""
    pos, n = 8, len(data)
    while pos + 8 <= n:
        length, tag = struct.unpack(">I4s", data[pos : pos + 8])
        yield tag, data[pos + 8 : pos + 8 + length]
        if tag == b"IEND":
            return
        pos += 12 + length


def _png_xmp(data: bytes) -> Optional[bytes]:
    """The text of a PNG's ``iTXt`` chunk keyed ``XML:com.adobe.xmp`` (before or after IDAT)."""
    for tag, body in _png_chunks(data):
        if tag == b"iTXt" and body.startswith(b"XML:com.adobe.xmp\x00") and len(body) > 19:
            compressed, rest = body[18], body[20:]
            text = rest.split(b"\x00", 2)[-1] if rest.count(b"\x00") >= 2 else b""
            try:
                return zlib.decompressobj().decompress(text, 1 << 22) if compressed else text
            except zlib.error:
                return None
    return None


def _exif_bytes(im: Image.Image, data: bytes) -> Optional[bytes]:
    """The raw EXIF block as TIFF bytes, where the format keeps one."""
    raw = im.info.get("exif")
    if raw is None and im.format == "PNG":
        body = next((b for t, b in _png_chunks(data) if t == b"eXIf"), None)
        raw = body
    if raw is None and im.format == "TIFF":
        return None  # a TIFF's EXIF lives in its own IFD; Pillow reads it from the tags
    if not raw:
        return None
    raw = bytes(raw)
    return raw[len(_EXIF_HEADER):] if raw.startswith(_EXIF_HEADER) else raw


def _has_gps(exif: Optional[bytes]) -> bool:
    if exif is None:
        return False
    try:
        parsed = Image.Exif()
        parsed.load(_EXIF_HEADER + exif)
        return ExifTags.Base.GPSInfo in parsed and bool(parsed.get_ifd(ExifTags.IFD.GPSInfo))
    except Exception:  # noqa: BLE001 - a broken EXIF block is reported as present, without GPS
        return False


def _xmp_bytes(im: Image.Image, data: bytes) -> Optional[bytes]:
    value = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if value is None and im.format == "PNG":
        value = _png_xmp(data)
    if value is None and im.format == "TIFF":
        value = getattr(im, "tag_v2", {}).get(700)
    if not value:
        return None
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _has_iptc(im: Image.Image) -> bool:
    photoshop = im.info.get("photoshop")
    if isinstance(photoshop, dict) and 0x0404 in photoshop:
        return True
    return im.format == "TIFF" and 33723 in getattr(im, "tag_v2", {})


def describe_profile(icc: bytes) -> str:
    """An ICC profile's description (LittleCMS's reading); "" when it has none or is unreadable."""
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except Exception:  # noqa: BLE001 - a corrupt profile is still a profile the file carries
        return ""


def read_source(im: Image.Image, data: bytes) -> SourceMetadata:
    """The metadata of an opened (not loaded) source ``im`` whose file is ``data``.

    Never raises: a block that cannot be read counts as absent (EXIF, XMP) or as present without
    details (GPS false, profile description "").
    """
    try:
        exif = _exif_bytes(im, data)
    except Exception:  # noqa: BLE001
        exif = None
    try:
        xmp = _xmp_bytes(im, data)
    except Exception:  # noqa: BLE001
        xmp = None
    icc = im.info.get("icc_profile")
    return SourceMetadata(exif=exif, gps=_has_gps(exif), xmp=xmp, iptc=_has_iptc(im),
                          icc=describe_profile(icc) if icc else None)


# ---------------------------------------------------------------------------------------------
# What is kept


def _exif_upright(exif: bytes) -> Optional[bytes]:
    """The EXIF block with its orientation set to 1 (TIFF bytes); None when it cannot be parsed."""
    try:
        parsed = Image.Exif()
        parsed.load(_EXIF_HEADER + exif)
        if ExifTags.Base.Orientation in parsed:
            parsed[ExifTags.Base.Orientation] = 1
        out = parsed.tobytes()
    except Exception:  # noqa: BLE001 - an unreadable block is not copied
        return None
    return out[len(_EXIF_HEADER):] if out.startswith(_EXIF_HEADER) else out


def _xmp_upright(xmp: bytes) -> bytes:
    xmp = _XMP_ORIENTATION[0].sub(b'tiff:Orientation="1"', xmp)
    return _XMP_ORIENTATION[1].sub(b"<tiff:Orientation>1</tiff:Orientation>", xmp)


def kept_metadata(source: SourceMetadata, carries: tuple[str, ...]) -> Kept:
    """What a result keeps of ``source`` in a format that ``carries`` ("exif", "xmp")."""
    exif = _exif_upright(source.exif) if "exif" in carries and source.exif else None
    xmp = _xmp_upright(source.xmp) if "xmp" in carries and source.xmp else None
    return Kept(exif=exif, xmp=xmp)


# ---------------------------------------------------------------------------------------------
# Embedding into encoded files


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def _embed_jpeg(data: bytes, kept: Kept) -> tuple[bytes, Kept]:
    segments, written = b"", {}
    if kept.exif is not None and len(_EXIF_HEADER) + len(kept.exif) <= _JPEG_SEGMENT_MAX:
        segments += _jpeg_segment(0xE1, _EXIF_HEADER + kept.exif)
        written["exif"] = kept.exif
    if kept.xmp is not None and len(_XMP_JPEG_HEADER) + len(kept.xmp) <= _JPEG_SEGMENT_MAX:
        segments += _jpeg_segment(0xE1, _XMP_JPEG_HEADER + kept.xmp)
        written["xmp"] = kept.xmp
    pos = 2  # after SOI; after the JFIF APP0 segment when there is one (it must come first)
    if data[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:pos] + segments + data[pos:], Kept(**written)


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _embed_png(data: bytes, kept: Kept) -> tuple[bytes, Kept]:
    chunks = b""
    if kept.exif is not None:
        chunks += _png_chunk(b"eXIf", kept.exif)
    if kept.xmp is not None:
        chunks += _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + kept.xmp)
    ihdr_end = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    return data[:ihdr_end] + chunks + data[ihdr_end:], kept


def _riff_chunk(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _webp_canvas(tag: bytes, body: bytes) -> tuple[int, int, bool]:
    """(width, height, alpha) of a simple WebP's VP8 or VP8L bitstream."""
    if tag == b"VP8L":
        bits = struct.unpack("<I", body[1:5])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    w, h = struct.unpack("<HH", body[6:10])  # VP8 key frame: after the 3-byte tag and start code
    return w & 0x3FFF, h & 0x3FFF, False


def _embed_webp(data: bytes, kept: Kept) -> tuple[bytes, Kept]:
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((tag, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    if chunks[0][0] == b"VP8X":
        flags = bytearray(chunks[0][1])
        chunks = chunks[1:]
    else:
        w, h, alpha = _webp_canvas(*chunks[0])
        flags = bytearray(struct.pack("<I", 0x10 if alpha else 0) + (w - 1).to_bytes(3, "little")
                          + (h - 1).to_bytes(3, "little"))
    chunks = [(t, b) for t, b in chunks if t not in (b"EXIF", b"XMP ")]
    if kept.exif is not None:
        flags[0] |= 0x08
        chunks.append((b"EXIF", kept.exif))
    if kept.xmp is not None:
        flags[0] |= 0x04
        chunks.append((b"XMP ", kept.xmp))
    body = b"WEBP" + _riff_chunk(b"VP8X", bytes(flags)) + b"".join(_riff_chunk(t, b) for t, b in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body, kept


_EMBEDDERS = {"JPEG": _embed_jpeg, "PNG": _embed_png, "WEBP": _embed_webp}


def embed(data: bytes, format: str, kept: Kept) -> tuple[bytes, Kept]:
    """``data`` (an encoded JPEG, PNG or WebP) with ``kept``'s EXIF and XMP written into it.

    Returns the new file and what was written: all of ``kept``, except in a JPEG an EXIF or XMP
    block over one marker segment's 65,533 bytes, which is left out.
    """
    if kept.exif is None and kept.xmp is None:
        return data, kept
    return _EMBEDDERS[format](data, kept)


def writable(format: str, kept: Kept) -> Kept:
    """What of ``kept`` a ``format`` file can hold: in a JPEG each block must fit in one marker
    segment (65,533 bytes with its header); larger ones are left out."""
    if format != "JPEG":
        return kept
    exif = kept.exif if kept.exif is not None and len(_EXIF_HEADER) + len(kept.exif) <= _JPEG_SEGMENT_MAX else None
    xmp = kept.xmp if kept.xmp is not None and len(_XMP_JPEG_HEADER) + len(kept.xmp) <= _JPEG_SEGMENT_MAX else None
    return Kept(exif=exif, xmp=xmp)

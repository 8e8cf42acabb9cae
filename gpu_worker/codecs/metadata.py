"""What a source carries besides pixels (EXIF, XMP, IPTC, an ICC profile, frames), and what of
its EXIF and XMP a result keeps when a job asks to.

Results are encoded from pixels, so nothing of the source's metadata reaches them unless a job
sets ``output.keep_metadata``: then the source's EXIF (GPS and all, its orientation set to 1
since the pixels are already turned) and XMP (its ``tiff:Orientation`` set to 1 too) are written
into the result where the format carries them (`gpu_worker.formats`: JPEG, PNG, WebP and AVIF).
IPTC and the EXIF of formats that carry none (GIF) are never kept.

`read_source` works on an opened Pillow image (header only, no pixels: see `probe`).
`kept_metadata` gives the blocks to keep (a `gpu_worker.codecs.containers.Kept`); the encoders
write them into the file (`gpu_worker.codecs.containers.embed`; AVIF through its encoder).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

from PIL import ExifTags, Image, ImageCms

from gpu_worker.codecs.containers import EXIF_HEADER as _EXIF_HEADER
from gpu_worker.codecs.containers import Kept

__all__ = ["SourceMetadata", "read_source", "kept_metadata"]

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
    """The EXIF (orientation 1) and XMP (``tiff:Orientation`` 1) a result keeps of ``source`` in a
    format that ``carries`` ("exif", "xmp"); no profile (see `gpu_worker.stages.output`)."""
    exif = _exif_upright(source.exif) if "exif" in carries and source.exif else None
    xmp = _xmp_upright(source.xmp) if "xmp" in carries and source.xmp else None
    return Kept(exif=exif, xmp=xmp)

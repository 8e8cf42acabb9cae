"""An ICC profile put into an encoded file, by rewriting its container (the pixels' bytes untouched).

The encoders (torchvision's libjpeg-turbo, nvjpeg and libpng, Pillow's libwebp) write untagged
files; `embed_profile` adds the profile as each format's specification says:

=========  ===================================================================================
format     where the profile goes
=========  ===================================================================================
JPEG       ``APP2`` segments ``ICC_PROFILE\\0`` + sequence number + count, 65,519 bytes of the
           profile each, right after SOI (ICC.1, annex B.4)
PNG        one ``iCCP`` chunk (name, compression method 0, zlib data) right after IHDR (an
           ``iCCP`` or ``sRGB`` chunk already there is dropped)
WEBP       an ``ICCP`` chunk after ``VP8X`` (a simple file gets a ``VP8X`` header first, with the
           canvas size read from its VP8/VP8L bitstream), and VP8X's ICC flag set
=========  ===================================================================================

Pillow reads each back as ``Image.open(...).info["icc_profile"]`` (tests/test_icc.py).
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["CARRIES_PROFILE", "embed_profile"]

#: Bytes of the profile per JPEG APP2 segment (65,535 less the length field and the 14-byte tag).
_JPEG_CHUNK = 65_519


def _jpeg(data: bytes, icc: bytes) -> bytes:
    chunks = [icc[i : i + _JPEG_CHUNK] for i in range(0, len(icc), _JPEG_CHUNK)]
    if len(chunks) > 255:
        raise ValueError(f"an ICC profile of {len(icc):,} bytes does not fit in 255 JPEG APP2 segments")
    segments = b"".join(b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(c)) + b"ICC_PROFILE\x00"
                        + bytes((n, len(chunks))) + c for n, c in enumerate(chunks, start=1))
    return data[:2] + segments + data[2:]


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def _png(data: bytes, icc: bytes) -> bytes:
    chunks = []
    pos = 8
    while pos + 8 <= len(data):
        end = pos + 12 + struct.unpack(">I", data[pos : pos + 4])[0]
        if data[pos + 4 : pos + 8] not in (b"iCCP", b"sRGB"):  # one colour space statement only
            chunks.append(data[pos:end])
        pos = end
    icc_chunk = _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    return data[:8] + chunks[0] + icc_chunk + b"".join(chunks[1:])  # right after IHDR


def _riff_chunk(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def _webp_canvas(tag: bytes, body: bytes) -> tuple[int, int, bool]:
    """Width, height and whether there is alpha, from a simple file's VP8 or VP8L bitstream."""
    if tag == b"VP8L":
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    w, h = struct.unpack("<HH", body[6:10])  # after the frame tag and the start code
    return w & 0x3FFF, h & 0x3FFF, False


def _webp(data: bytes, icc: bytes) -> bytes:
    chunks = []
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((tag, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    chunks = [(tag, body) for tag, body in chunks if tag != b"ICCP"]
    if chunks[0][0] == b"VP8X":
        head = bytearray(chunks[0][1])
        head[0] |= 0x20  # ICC profile present
        rest = chunks[1:]
    else:
        w, h, alpha = _webp_canvas(*chunks[0])
        head = bytearray(10)
        head[0] = 0x20 | (0x10 if alpha else 0)
        head[4:7] = (w - 1).to_bytes(3, "little")
        head[7:10] = (h - 1).to_bytes(3, "little")
        rest = chunks
    body = (_riff_chunk(b"VP8X", bytes(head)) + _riff_chunk(b"ICCP", icc)
            + b"".join(_riff_chunk(tag, chunk) for tag, chunk in rest))
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


_EMBEDDERS = {"JPEG": _jpeg, "PNG": _png, "WEBP": _webp}

#: The output formats `embed_profile` can tag.
CARRIES_PROFILE = tuple(_EMBEDDERS)


def embed_profile(data: bytes, format: str, icc: bytes) -> bytes:
    """``data`` (a file written by `gpu_worker.codecs.encode`, untagged) with the ICC profile
    ``icc`` embedded. Formats not in :data:`CARRIES_PROFILE` are returned as they are.

    Example:
        >>> tagged = embed_profile(encode(batch, "PNG")[0], "PNG", icc)  # doctest: +SKIP
    """
    embed = _EMBEDDERS.get(format)
    return data if embed is None else embed(bytes(data), bytes(icc))

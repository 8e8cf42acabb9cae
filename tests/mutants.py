"""A deterministic mutant generator: valid seed files made from real photos, broken in many ways.

Seeds (`seeds`) are small files of every format the worker reads, written by Pillow (and, where
Pillow cannot write the variant, assembled by `corpus`): PNG 8/16-bit, grey, grey+alpha, palette
with tRNS, interlaced, RGBA; JPEG baseline, progressive, grey, CMYK, EXIF-rotated; WebP lossy,
lossless, with alpha, animated (opaque and with alpha); AVIF colour, with alpha, grey,
EXIF-rotated (``irot``); GIF single, transparent, animated (opaque and with alpha, disposal 2);
APNG; BMP; TIFF; PPM; ICO. An animated seed's jobs with GIF or WebP out read every frame
(gpu_worker.codecs.animation), in the child process like every decoder.

Mutations (`MUTATIONS_BY_FORMAT`) are of two families:

- generic byte-level ones, for any file: a byte flipped (half the time inside the payload: the
  PNG's IDAT data, the JPEG's entropy-coded scan, the GIF's LZW data, the WebP bitstream, the
  BMP's pixel array), a run of bytes overwritten, the file truncated, garbage appended;
- structure-aware ones, from a parse of the file's container: PNG chunks, JPEG segments, GIF
  blocks, RIFF chunks and ISO-BMFF boxes (AVIF's top level and its ``meta`` box's children)
  duplicated, removed or swapped with a neighbour; header size fields (IHDR, SOF, the GIF screen
  and image descriptor, VP8X/VP8/VP8L, AVIF's ``ispe``, BMP and TIFF headers, chunk, segment and
  box lengths) overwritten with zero, tiny or huge values. PNG mutants that touch a
  chunk's body sometimes get the CRC recomputed, so that they reach past libpng's CRC check.

`mutant(n)` is a pure function of the integer ``n``: mutant N is the same bytes on every run and
machine with the same Pillow. Its name says the seed, the mutation and where (``"00042
png-rgba ihdr-height=65535 crc-fixed"``), so a failure can be rebuilt from its name's number
(and the seed size the name states, when it is not the default `SEED_SIZE`).
"""

from __future__ import annotations

import functools
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
from PIL import Image

import corpus
from photos import sample

#: Seed image size (width, height): odd sides, several JPEG MCUs, small enough to be quick.
SEED_SIZE = (61, 43)

#: Values written over size fields: zero, one, just past the limits, and the largest values.
HUGE_VALUES_32 = (0, 1, 7071, 32767, 65535, 65536, 100_000, 0x7FFFFFFF, 0xFFFFFFFF)
HUGE_VALUES_16 = (0, 1, 255, 7071, 32767, 65535)


@dataclass(frozen=True)
class Mutant:
    """One mutated file.

    Attributes:
        number: the integer it was generated from (`mutant(number)` gives it again).
        seed: the name of the seed file it came from (a key of `seeds()`).
        mutation: what was done and where, readable.
        data: the mutated bytes.
    """

    number: int
    seed: str
    mutation: str
    data: bytes
    size: tuple[int, int] = SEED_SIZE

    @property
    def name(self) -> str:
        """"00042 png-rgba ihdr-height=65535 crc-fixed"; seeds of another size than `SEED_SIZE`
        say theirs: "00042 png-rgba@257x193 ..."."""
        seed = self.seed if self.size == SEED_SIZE else f"{self.seed}@{self.size[0]}x{self.size[1]}"
        return f"{self.number:05d} {seed} {self.mutation}"


# ---------------------------------------------------------------------------------------------
# Seeds


def _adam7_png(arr: np.ndarray, color_type: int) -> bytes:
    """An 8-bit Adam7-interlaced PNG of ``arr`` (H, W[, C]); Pillow cannot write interlaced PNGs."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = arr[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.astype(np.uint8).tobytes()
    h, w = arr.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(raw)))
            + png_chunk(b"IEND", b""))


def _orientation_exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _seed_builders(size: tuple[int, int]) -> dict[str, Callable[[], bytes]]:
    """Seed name -> a function writing it (names start with the format, lower case)."""
    rgb = lambda name="astronaut.png": sample("RGB", size, name)  # noqa: E731 (a short alias)
    rgba = lambda: sample("RGBA", size, "coffee.png")  # noqa: E731
    grey = lambda: sample("L", size, "chelsea.png")  # noqa: E731
    save = corpus.save
    return {
        "png-rgb8": lambda: save(rgb(), "PNG"),
        "png-rgb16": lambda: corpus.png_rgb16(size),
        "png-grey": lambda: save(grey(), "PNG"),
        "png-grey16": lambda: corpus.png_gray16(size),
        "png-grey-alpha": lambda: corpus.png_la(size),
        "png-grey-alpha16": lambda: corpus.png_la16(size),
        "png-palette-trns": lambda: corpus.png_palette_transparent(size),
        "png-palette4": lambda: corpus.png_palette(size, bits=4),
        "png-interlaced": lambda: _adam7_png(np.asarray(rgb("rocket.jpg")), 2),
        "png-rgba": lambda: save(rgba(), "PNG"),
        "png-rgb-trns": lambda: corpus.png_rgb_trns(size),
        "png-apng": lambda: corpus.apng(size),
        "jpeg-baseline": lambda: save(rgb(), "JPEG", quality=90),
        "jpeg-progressive": lambda: save(rgb("coffee.png"), "JPEG", quality=90, progressive=True),
        "jpeg-grey": lambda: save(grey(), "JPEG", quality=90),
        "jpeg-cmyk": lambda: save(rgb("chelsea.png").convert("CMYK"), "JPEG", quality=90),
        "jpeg-exif-rotated": lambda: corpus.jpeg_exif(6, size),
        "webp-lossy": lambda: save(rgb(), "WEBP", quality=80),
        "webp-lossless": lambda: save(rgb("rocket.jpg"), "WEBP", lossless=True),
        "webp-lossy-alpha": lambda: save(rgba(), "WEBP", quality=80),
        "webp-lossless-alpha": lambda: save(rgba(), "WEBP", lossless=True),
        "webp-animated": lambda: corpus.webp_animated(size),
        "avif-rgb": lambda: save(rgb(), "AVIF", quality=70, speed=8),
        "avif-alpha": lambda: save(rgba(), "AVIF", quality=70, speed=8),
        "avif-grey": lambda: save(grey(), "AVIF", quality=70, speed=8),
        "avif-exif-rotated": lambda: save(rgb("coffee.png"), "AVIF", quality=70, speed=8, exif=_orientation_exif(6)),
        "webp-animated-alpha": lambda: corpus.webp_animated_alpha(size),
        "gif": lambda: corpus.gif(size),
        "gif-transparent": lambda: corpus.gif_transparent(size),
        "gif-animated": lambda: corpus.gif_animated(size),
        "gif-animated-alpha": lambda: corpus.gif_animated_alpha(size),
        "bmp-rgb": lambda: save(rgb(), "BMP"),
        "bmp-palette": lambda: save(rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "BMP"),
        "tiff-raw": lambda: save(rgb(), "TIFF"),
        "tiff-lzw": lambda: save(rgb("coffee.png"), "TIFF", compression="tiff_lzw"),
        "tiff-rgba-deflate": lambda: corpus.tiff_rgba(size),
        "ppm": lambda: save(rgb(), "PPM"),
        "ico": lambda: save(rgba(), "ICO", sizes=[(32, 32)]),
    }


@functools.cache
def seeds(size: tuple[int, int] = SEED_SIZE) -> dict[str, bytes]:
    """Every seed file, by name (made once per process; deterministic for a given Pillow)."""
    return {name: build() for name, build in _seed_builders(size).items()}


def seed_format(seed: str) -> str:
    """The container a seed's name says: png, jpeg, webp, avif, gif, bmp, tiff, ppm or ico."""
    return seed.split("-", 1)[0]


# ---------------------------------------------------------------------------------------------
# Container parsers: (start, end) spans of the parts mutations address


@dataclass(frozen=True)
class Part:
    """A piece of a file: ``kind`` (chunk type, marker name, block kind), its span
    ``[start, end)`` in the file, and the span of its body (its payload) inside it."""

    kind: str
    start: int
    end: int
    body_start: int
    body_end: int


def png_chunk(tag: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_parts(data: bytes) -> list[Part]:
    """The chunks of a PNG after its 8-byte signature (stops at the first that does not fit)."""
    parts, pos = [], 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        end = pos + 12 + length
        if end > len(data):
            break
        parts.append(Part(data[pos + 4 : pos + 8].decode("latin-1"), pos, end, pos + 8, pos + 8 + length))
        pos = end
    return parts


_JPEG_NAMES = {0xC0: "SOF0", 0xC1: "SOF1", 0xC2: "SOF2", 0xC4: "DHT", 0xDA: "SOS", 0xDB: "DQT", 0xDD: "DRI",
               0xE0: "APP0", 0xE1: "APP1", 0xE2: "APP2", 0xEE: "APP14", 0xFE: "COM", 0xD9: "EOI"}


def jpeg_parts(data: bytes) -> list[Part]:
    """The segments of a JPEG after SOI; each SOS part's body runs to the end of its scan data."""
    parts, pos = [], 2
    while pos + 2 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        name = _JPEG_NAMES.get(marker, f"FF{marker:02X}")
        if marker == 0xD9:
            parts.append(Part(name, pos, pos + 2, pos + 2, pos + 2))
            break
        if pos + 4 > len(data):
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        end = pos + 2 + length
        if marker == 0xDA:  # the scan runs to the next marker other than a stuffed 0 or a restart
            while end + 1 < len(data) and not (data[end] == 0xFF and data[end + 1] not in (0, *range(0xD0, 0xD8))):
                end += 1
        parts.append(Part(name, pos, min(end, len(data)), pos + 4, min(end, len(data))))
        pos = end
    return parts


def _gif_sub_blocks_end(data: bytes, pos: int) -> int:
    """Where a chain of GIF data sub-blocks starting at ``pos`` ends (after its 0 terminator)."""
    while pos < len(data) and data[pos] != 0:
        pos += data[pos] + 1
    return min(pos + 1, len(data))


def gif_parts(data: bytes) -> list[Part]:
    """A GIF's logical screen descriptor (with its colour table), then its extension and image
    blocks (an image's body is its LZW data), then the trailer."""
    gct = 3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0
    parts = [Part("screen", 6, 13 + gct, 6, 13)]
    pos = 13 + gct
    while pos < len(data):
        if data[pos] == 0x21 and pos + 2 < len(data):
            end = _gif_sub_blocks_end(data, pos + 2)
            parts.append(Part(f"ext{data[pos + 1]:02X}", pos, end, pos + 2, end))
        elif data[pos] == 0x2C and pos + 10 <= len(data):
            lct = 3 * 2 ** ((data[pos + 9] & 7) + 1) if data[pos + 9] & 0x80 else 0
            lzw = pos + 10 + lct
            end = _gif_sub_blocks_end(data, lzw + 1)
            parts.append(Part("image", pos, end, lzw, end))
        elif data[pos] == 0x3B:
            parts.append(Part("trailer", pos, pos + 1, pos + 1, pos + 1))
            break
        else:
            break
        pos = end
    return parts


def riff_parts(data: bytes) -> list[Part]:
    """The chunks of a RIFF (WebP) file after its 12-byte header (sizes padded to even)."""
    parts, pos = [], 12
    while pos + 8 <= len(data):
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        end = pos + 8 + size + (size & 1)
        if end > len(data):
            break
        parts.append(Part(data[pos : pos + 4].decode("latin-1"), pos, end, pos + 8, pos + 8 + size))
        pos = end
    return parts


def tiff_entries(data: bytes) -> list[tuple[int, int, int, int]]:
    """The first IFD's entries of a little-endian TIFF: (offset of the entry, tag, type, count)."""
    if data[:2] != b"II":
        return []
    ifd = struct.unpack("<I", data[4:8])[0]
    if ifd + 2 > len(data):
        return []
    count = struct.unpack("<H", data[ifd : ifd + 2])[0]
    entries = []
    for i in range(count):
        at = ifd + 2 + 12 * i
        if at + 12 > len(data):
            break
        tag, typ, n = struct.unpack("<HHI", data[at : at + 8])
        entries.append((at, tag, typ, n))
    return entries


def isobmff_parts(data: bytes) -> list[Part]:
    """An ISO-BMFF (AVIF) file's top-level boxes, each followed by the children of a ``meta``
    box (a full box: its children start after 4 bytes of version and flags)."""

    def boxes(start: int, end: int) -> list[Part]:
        parts, pos = [], start
        while pos + 8 <= end:
            size = struct.unpack(">I", data[pos : pos + 4])[0]
            if size < 8 or pos + size > end:
                break
            parts.append(Part(data[pos + 4 : pos + 8].decode("latin-1"), pos, pos + size, pos + 8, pos + size))
            pos += size
        return parts

    out = []
    for part in boxes(0, len(data)):
        out.append(part)
        if part.kind == "meta":
            out.extend(boxes(part.body_start + 4, part.end))
    return out


PARSERS: dict[str, Callable[[bytes], list[Part]]] = {
    "png": png_parts, "jpeg": jpeg_parts, "gif": gif_parts, "webp": riff_parts, "avif": isobmff_parts,
}


def payload_span(data: bytes, fmt: str) -> Optional[tuple[int, int]]:
    """The span of the compressed pixels, where a flipped byte reaches the decoder's core:
    the (first) IDAT's data, the (first) JPEG scan, the first GIF image's LZW data, the WebP
    bitstream chunk, the BMP pixel array; None for the others."""
    wanted = {"png": ("IDAT",), "jpeg": ("SOS",), "gif": ("image",), "webp": ("VP8 ", "VP8L", "ANMF"),
              "avif": ("mdat",)}
    if fmt in wanted:
        for part in PARSERS[fmt](data):
            if part.kind in wanted[fmt] and part.body_end > part.body_start:
                return part.body_start, part.body_end
        return None
    if fmt == "bmp" and len(data) > 14:
        return min(struct.unpack("<I", data[10:14])[0], len(data) - 1), len(data)
    return None


# ---------------------------------------------------------------------------------------------
# Mutations: each takes (data, fmt, rng) and returns (bytes, description) or None (not applicable)

Mutation = Callable[[bytes, str, random.Random], Optional[tuple[bytes, str]]]


def flip_byte(data: bytes, fmt: str, rng: random.Random):
    """One byte XORed with a random non-zero value; half the time inside the payload."""
    span = payload_span(data, fmt)
    where = "payload"
    if span is None or rng.random() < 0.5:
        span, where = (min(8, len(data) - 1), len(data)), "file"
    pos = rng.randrange(*span)
    out = bytearray(data)
    out[pos] ^= rng.randrange(1, 256)
    return bytes(out), f"flip-{where}@{pos}"


def flip_bit(data: bytes, fmt: str, rng: random.Random):
    """One bit flipped inside the payload (or anywhere when the format has none)."""
    span = payload_span(data, fmt) or (0, len(data))
    pos, bit = rng.randrange(*span), rng.randrange(8)
    out = bytearray(data)
    out[pos] ^= 1 << bit
    return bytes(out), f"bitflip@{pos}.{bit}"


def overwrite_run(data: bytes, fmt: str, rng: random.Random):
    """2 to 16 consecutive bytes overwritten with random ones."""
    n = rng.randint(2, 16)
    pos = rng.randrange(0, max(1, len(data) - n))
    return data[:pos] + rng.randbytes(n) + data[pos + n :], f"overwrite{n}@{pos}"


def truncate(data: bytes, fmt: str, rng: random.Random):
    """The file cut short: anywhere, or just a few bytes off its end."""
    cut = rng.randrange(1, len(data)) if rng.random() < 0.7 else max(1, len(data) - rng.randint(1, 16))
    return data[:cut], f"truncate@{cut}/{len(data)}"


def append_garbage(data: bytes, fmt: str, rng: random.Random):
    """Random bytes (or a second copy of the file's start) appended after its end."""
    if rng.random() < 0.3:
        extra = data[: rng.randint(1, len(data))]
        return data + extra, f"append-self{len(extra)}"
    extra = rng.randbytes(rng.randint(1, 512))
    return data + extra, f"append-garbage{len(extra)}"


def _pick_part(data: bytes, fmt: str, rng: random.Random, kinds: tuple[str, ...] = ()) -> Optional[Part]:
    parts = [p for p in PARSERS[fmt](data) if not kinds or p.kind in kinds]
    return rng.choice(parts) if parts else None


def duplicate_part(data: bytes, fmt: str, rng: random.Random):
    """A chunk / segment / block inserted again right after itself."""
    part = _pick_part(data, fmt, rng)
    if part is None:
        return None
    return data[: part.end] + data[part.start : part.end] + data[part.end :], f"dup-{part.kind}@{part.start}"


def remove_part(data: bytes, fmt: str, rng: random.Random):
    """A chunk / segment / block left out."""
    part = _pick_part(data, fmt, rng)
    if part is None:
        return None
    return data[: part.start] + data[part.end :], f"drop-{part.kind}@{part.start}"


def swap_parts(data: bytes, fmt: str, rng: random.Random):
    """Two neighbouring chunks / segments / blocks swapped (e.g. PLTE before IHDR)."""
    parts = PARSERS[fmt](data)
    if len(parts) < 2:
        return None
    i = rng.randrange(len(parts) - 1)
    a, b = parts[i], parts[i + 1]
    swapped = data[: a.start] + data[b.start : b.end] + data[a.start : a.end] + data[b.end :]
    return swapped, f"swap-{a.kind}-{b.kind}@{a.start}"


def _put(data: bytes, pos: int, fmt: str, value: int) -> bytes:
    size = struct.calcsize(fmt)
    if pos + size > len(data):
        return data
    return data[:pos] + struct.pack(fmt, value) + data[pos + size :]


def _fix_png_crc(data: bytes, part: Part) -> bytes:
    body = data[part.start + 4 : part.body_end]
    return _put(data, part.body_end, ">I", zlib.crc32(body))


def png_field(data: bytes, fmt: str, rng: random.Random):
    """IHDR's width, height, bit depth, colour type or interlace method overwritten; the CRC
    recomputed two times in three, so that the file reaches past libpng's CRC check."""
    parts = png_parts(data)
    ihdr = next((p for p in parts if p.kind == "IHDR"), None)
    if ihdr is None:
        return None
    field, offset, pack, values = rng.choice((
        ("width", 0, ">I", HUGE_VALUES_32), ("height", 4, ">I", HUGE_VALUES_32),
        ("depth", 8, ">B", (0, 1, 2, 3, 4, 8, 16, 255)), ("colour", 9, ">B", (0, 1, 2, 3, 4, 5, 6, 7, 255)),
        ("interlace", 12, ">B", (0, 1, 2, 255)),
    ))
    value = rng.choice(values)
    out = _put(data, ihdr.body_start + offset, pack, value)
    fixed = rng.random() < 0.67
    if fixed:
        out = _fix_png_crc(out, ihdr)
    return out, f"ihdr-{field}={value}{' crc-fixed' if fixed else ''}"


def png_chunk_body(data: bytes, fmt: str, rng: random.Random):
    """A byte flipped inside a chunk's body (IDAT most often), CRC recomputed so that the zlib
    stream or the chunk's parser sees it: the case that crashed torchvision's decode_png."""
    parts = [p for p in png_parts(data) if p.body_end > p.body_start]
    if not parts:
        return None
    idats = [p for p in parts if p.kind == "IDAT"]
    part = rng.choice(idats) if idats and rng.random() < 0.7 else rng.choice(parts)
    pos = rng.randrange(part.body_start, part.body_end)
    out = bytearray(data)
    out[pos] ^= rng.randrange(1, 256)
    return _fix_png_crc(bytes(out), part), f"body-{part.kind}@{pos} crc-fixed"


def part_length(data: bytes, fmt: str, rng: random.Random):
    """A chunk's / segment's / sub-block's length field overwritten with zero, a small or a huge
    value (RIFF: also the file's own size)."""
    part = _pick_part(data, fmt, rng)
    if part is None:
        return None
    if fmt == "png":
        value = rng.choice(HUGE_VALUES_32)
        return _put(data, part.start, ">I", value), f"length-{part.kind}={value}"
    if fmt == "jpeg":
        if part.kind == "EOI":
            return None
        value = rng.choice((0, 1, 2, 3, 255, 65535))
        return _put(data, part.start + 2, ">H", value), f"length-{part.kind}={value}"
    if fmt == "avif":
        value = rng.choice(HUGE_VALUES_32)
        return _put(data, part.start, ">I", value), f"length-{part.kind}={value}"
    if fmt == "webp":
        value = rng.choice(HUGE_VALUES_32)
        if rng.random() < 0.25:
            return _put(data, 4, "<I", value), f"length-RIFF={value}"
        return _put(data, part.start + 4, "<I", value), f"length-{part.kind}={value}"
    if fmt == "gif" and part.body_end > part.body_start and part.kind != "screen":
        pos = part.body_start + (1 if part.kind == "image" else 0)  # the first sub-block's length byte
        value = rng.choice((0, 1, 254, 255))
        return _put(data, pos, ">B", value), f"subblock-{part.kind}@{pos}={value}"
    return None


def avif_field(data: bytes, fmt: str, rng: random.Random):
    """An ``ispe`` (image spatial extents: the size the header declares) width or height, or an
    ``irot`` angle, overwritten."""
    ispe = [i for i in range(len(data) - 16) if data[i : i + 4] == b"ispe"]
    if not ispe:
        return None
    at = rng.choice(ispe) + 8  # past the type and the full box's version and flags
    if rng.random() < 0.2 and b"irot" in data:
        pos = data.index(b"irot") + 4
        value = rng.choice((1, 2, 3, 255))
        return _put(data, pos, ">B", value), f"irot={value}"
    field, offset = rng.choice((("width", 0), ("height", 4)))
    value = rng.choice(HUGE_VALUES_32)
    return _put(data, at + offset, ">I", value), f"ispe-{field}={value}"


def jpeg_field(data: bytes, fmt: str, rng: random.Random):
    """The frame header's (SOFn) height, width, precision or component count overwritten, or a
    byte inside a DQT / DHT / SOS header changed."""
    parts = jpeg_parts(data)
    sof = next((p for p in parts if p.kind.startswith("SOF")), None)
    tables = [p for p in parts if p.kind in ("DQT", "DHT", "DRI")]
    if sof is not None and (not tables or rng.random() < 0.6):
        field, offset, pack, values = rng.choice((
            ("height", 1, ">H", HUGE_VALUES_16), ("width", 3, ">H", HUGE_VALUES_16),
            ("precision", 0, ">B", (0, 1, 12, 16, 255)), ("components", 5, ">B", (0, 2, 4, 5, 255)),
        ))
        value = rng.choice(values)
        return _put(data, sof.body_start + offset, pack, value), f"{sof.kind}-{field}={value}"
    if not tables:
        return None
    part = rng.choice(tables)
    if part.body_end <= part.body_start:
        return None
    pos = rng.randrange(part.body_start, part.body_end)
    value = rng.choice((0, 0xFF, rng.randrange(256)))
    return _put(data, pos, ">B", value), f"{part.kind}-byte@{pos}={value}"


def gif_field(data: bytes, fmt: str, rng: random.Random):
    """The logical screen's or an image descriptor's size or position overwritten, or the LZW
    minimum code size set out of range."""
    parts = gif_parts(data)
    images = [p for p in parts if p.kind == "image"]
    choice = rng.random()
    if choice < 0.3 or not images:
        field, offset = rng.choice((("width", 6), ("height", 8)))
        value = rng.choice(HUGE_VALUES_16)
        return _put(data, offset, "<H", value), f"screen-{field}={value}"
    image = rng.choice(images)
    if choice < 0.85:
        field, offset = rng.choice((("left", 1), ("top", 3), ("width", 5), ("height", 7)))
        value = rng.choice(HUGE_VALUES_16)
        return _put(data, image.start + offset, "<H", value), f"image@{image.start}-{field}={value}"
    value = rng.choice((0, 1, 12, 13, 255))
    return _put(data, image.body_start, ">B", value), f"image@{image.start}-lzw-min={value}"


def webp_field(data: bytes, fmt: str, rng: random.Random):
    """The canvas size in VP8X, the frame size in a VP8 key frame or the packed size in a VP8L
    header overwritten."""
    parts = riff_parts(data)
    candidates = []
    for p in parts:
        if p.kind == "VP8X" and p.body_end - p.body_start >= 10:
            candidates += [("VP8X-width", p.body_start + 4), ("VP8X-height", p.body_start + 7)]
        elif p.kind == "VP8 " and p.body_end - p.body_start >= 10:
            candidates += [("VP8-width", p.body_start + 6), ("VP8-height", p.body_start + 8)]
        elif p.kind == "VP8L" and p.body_end - p.body_start >= 5:
            candidates += [("VP8L-size", p.body_start + 1)]
    if not candidates:
        return None
    field, pos = rng.choice(candidates)
    if field.startswith("VP8X"):
        value = rng.choice((0, 1, 7070, 0x3FFF, 0xFFFFFF))
        return data[:pos] + value.to_bytes(3, "little") + data[pos + 3 :], f"{field}={value}"
    if field.startswith("VP8-"):
        value = rng.choice((0, 1, 0x3FFF, 0xFFFF))
        return _put(data, pos, "<H", value), f"{field}={value}"
    value = rng.choice((0, 0xFFFFFFFF, 0x0FFFFFFF, rng.getrandbits(32)))
    return _put(data, pos, "<I", value), f"{field}={value:#x}"


def bmp_field(data: bytes, fmt: str, rng: random.Random):
    """A BMP header field overwritten: pixel-data offset, header size, width, height (negative
    too), planes, bits per pixel, compression, image size or colours used."""
    field, offset, pack, values = rng.choice((
        ("offset", 10, "<I", (0, 14, 54, 0xFFFFFFFF)), ("header-size", 14, "<I", (0, 12, 40, 124, 0xFFFFFFFF)),
        ("width", 18, "<i", (0, 1, -1, 65535, 0x7FFFFFFF)), ("height", 22, "<i", (0, -1, -65535, 65535, 0x7FFFFFFF)),
        ("planes", 26, "<H", (0, 2, 65535)), ("bpp", 28, "<H", (0, 1, 2, 4, 8, 15, 16, 24, 32, 64, 65535)),
        ("compression", 30, "<I", (1, 2, 3, 4, 5, 6, 99)), ("image-size", 34, "<I", (0, 1, 0xFFFFFFFF)),
        ("colours", 46, "<I", (0, 1, 256, 257, 0xFFFFFFFF)),
    ))
    value = rng.choice(values)
    return _put(data, offset, pack, value), f"bmp-{field}={value}"


def tiff_field(data: bytes, fmt: str, rng: random.Random):
    """A first-IFD entry's inline value (width, height, bits, compression, strip offsets, rows
    per strip, byte counts, ...) or its count overwritten, or the IFD offset itself."""
    entries = tiff_entries(data)
    if not entries or rng.random() < 0.1:
        value = rng.choice((0, 8, len(data), 0xFFFFFFFF))
        return _put(data, 4, "<I", value), f"tiff-ifd-offset={value}"
    at, tag, typ, count = rng.choice(entries)
    if rng.random() < 0.25:
        value = rng.choice((0, 2, 0xFFFF, 0x3FFFFFFF, 0xFFFFFFFF))
        return _put(data, at + 4, "<I", value), f"tiff-tag{tag}-count={value}"
    value = rng.choice(HUGE_VALUES_32 if typ == 4 else HUGE_VALUES_16)
    return _put(data, at + 8, "<I" if typ == 4 else "<H", value), f"tiff-tag{tag}={value}"


def header_flip(data: bytes, fmt: str, rng: random.Random):
    """A byte flipped in the first 64 bytes (headers of formats without a parser here)."""
    pos = rng.randrange(0, min(64, len(data)))
    out = bytearray(data)
    out[pos] ^= rng.randrange(1, 256)
    return bytes(out), f"header-flip@{pos}"


GENERIC: list[tuple[Mutation, int]] = [
    (flip_byte, 6), (flip_bit, 3), (overwrite_run, 2), (truncate, 3), (append_garbage, 2),
]
STRUCTURE: list[tuple[Mutation, int]] = [(duplicate_part, 2), (remove_part, 2), (swap_parts, 1), (part_length, 2)]

#: Format -> weighted mutations that apply to it.
MUTATIONS_BY_FORMAT: dict[str, list[tuple[Mutation, int]]] = {
    "png": GENERIC + STRUCTURE + [(png_field, 3), (png_chunk_body, 4)],
    "jpeg": GENERIC + STRUCTURE + [(jpeg_field, 3)],
    "gif": GENERIC + STRUCTURE + [(gif_field, 4)],
    "webp": GENERIC + STRUCTURE + [(webp_field, 3)],
    "avif": GENERIC + STRUCTURE + [(avif_field, 3)],
    "bmp": GENERIC + [(bmp_field, 5)],
    "tiff": GENERIC + [(tiff_field, 6)],
    "ppm": GENERIC + [(header_flip, 3)],
    "ico": GENERIC + [(header_flip, 3)],
}


def _mutate_once(data: bytes, fmt: str, rng: random.Random) -> tuple[bytes, str]:
    """One weighted mutation that applies (falls back to a byte flip) and actually changes ``data``."""
    choices = MUTATIONS_BY_FORMAT[fmt]
    for _ in range(8):
        mutation = rng.choices([m for m, _ in choices], weights=[w for _, w in choices])[0]
        result = mutation(data, fmt, rng)
        if result is not None and result[0] != data and result[0]:
            return result
    return flip_byte(data, fmt, rng)


def mutant(number: int, size: tuple[int, int] = SEED_SIZE) -> Mutant:
    """Mutant ``number``: seed number % len(seeds), one mutation (one in eight: two)."""
    all_seeds = seeds(size)
    names = list(all_seeds)
    seed = names[number % len(names)]
    rng = random.Random(number * 7919 + 17)
    data, what = _mutate_once(all_seeds[seed], seed_format(seed), rng)
    if rng.random() < 0.125:
        data, second = _mutate_once(data, seed_format(seed), rng)
        what = f"{what} + {second}"
    return Mutant(number, seed, what, data, size)


def mutants(start: int, count: int, size: tuple[int, int] = SEED_SIZE) -> Iterator[Mutant]:
    """Mutants ``start`` .. ``start + count - 1``."""
    for number in range(start, start + count):
        yield mutant(number, size)

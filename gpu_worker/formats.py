"""The image formats: one table of what the worker reads, one of what it writes, and the sources
it refuses by name.

The job schema (accepted names, which output settings apply to which format), the prober (which
Pillow plugins may open a source, which sources are refused from their first bytes), the encoder
(formats, largest side, quality and speed ranges, which metadata a format carries), the response
(MIME type of the data URI), the bucket upload (file extension), ``make run``'s example and the
README's format tables (``python -m gpu_worker.docs``) read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class OutputFormat:
    """One output format.

    Attributes:
        name: canonical name, as jobs and responses spell it ("JPEG").
        aliases: other accepted spellings (any case).
        mime: MIME type of a file in this format.
        extension: file extension, without the dot.
        max_side: largest width or height the format stores, pixels (AVIF: the largest libavif
            reads back by default).
        alpha: how an alpha channel is stored: "kept", "flattened onto white", or a sentence.
        animation: whether the format can hold several frames.
        encoder: which encoder writes it, per device.
        quality: whether ``output.quality`` (1-100) applies; PNG and GIF are lossless/palette.
        lossless: whether ``output.lossless: true`` is accepted (every pixel stored exactly).
        speed: ``(fastest-to-slowest range low, high, default)`` of ``output.speed``, the
            encoder's effort, or None where it does not apply. For AVIF, libavif's speed:
            0 slowest (smallest file) to 10 fastest.
        metadata: what ``output.keep_metadata: true`` keeps in this format: a subset of
            ("exif", "xmp"); () where the format carries none of them.
        budget: whether ``output.max_bytes`` applies (a quality to search over).
        icc: whether ``output.icc: "keep"`` embeds the source's ICC profile in this format
            (`gpu_worker.codecs.containers`; AVIF by its encoder).
    """

    name: str
    aliases: tuple[str, ...]
    mime: str
    extension: str
    max_side: int
    alpha: str
    animation: bool
    encoder: str
    quality: bool = True
    lossless: bool = False
    speed: Optional[tuple[int, int, int]] = None
    metadata: tuple[str, ...] = ()
    budget: bool = False
    icc: bool = False


#: The range of ``output.quality`` for every format it applies to. libjpeg, libwebp and libavif
#: also take 0, which for AVIF writes the very same file as 1 (libavif maps both to its coarsest
#: quantizer), so 0 is refused for all of them, naming the field.
QUALITY_RANGE = (1, 100)

#: Canonical name -> format, in the order the README lists them.
OUTPUT_FORMATS: dict[str, OutputFormat] = {f.name: f for f in (
    OutputFormat("JPEG", ("JPG",), "image/jpeg", "jpg", 65_500, alpha="flattened onto white", animation=False,
                 encoder="CPU: libjpeg-turbo (4:2:0). CUDA: nvjpeg (4:4:4), or libjpeg-turbo on host threads "
                         "with `CUDA_JPEG_CODEC` `libjpeg`/`hybrid`",
                 metadata=("exif", "xmp"), budget=True, icc=True),
    OutputFormat("PNG", (), "image/png", "png", 2**31 - 1, alpha="kept", animation=False,
                 encoder="host threads: libpng through torchvision (1, 3 channels) or Pillow (2, 4 channels), zlib level 6",
                 quality=False, metadata=("exif", "xmp"), icc=True),
    OutputFormat("WEBP", (), "image/webp", "webp", 16_383, alpha="kept", animation=True,
                 encoder="host threads: libwebp through Pillow; grey is stored as RGB; `lossless: true` stores "
                         "every pixel exactly (then `quality` is the compression effort)",
                 lossless=True, metadata=("exif", "xmp"), budget=True, icc=True),
    OutputFormat("AVIF", (), "image/avif", "avif", 32_768, alpha="kept", animation=False,
                 encoder="host threads: libavif (AOM) through Pillow, 4:2:0 (grey: 4:0:0); `speed` 0 (slowest, "
                         "smallest) to 10 (fastest), default 6",
                 speed=(0, 10, 6), metadata=("exif", "xmp"), budget=True, icc=True),
    OutputFormat("GIF", (), "image/gif", "gif", 65_535, alpha="one transparent palette entry where alpha < 128",
                 animation=True,
                 encoder="host threads: Pillow; 256 colours by Pillow's median-cut quantizer (255 and a "
                         "transparent entry with alpha; grey: its own 256 levels, exact)",
                 quality=False),
)}

#: Every accepted spelling, upper case -> canonical name.
_BY_SPELLING = {spelling: f.name for f in OUTPUT_FORMATS.values() for spelling in (f.name, *f.aliases)}


def output_format(spelling: str) -> OutputFormat:
    """The format a job names (any case, aliases accepted). Raises KeyError for an unknown one."""
    return OUTPUT_FORMATS[_BY_SPELLING[spelling.strip().upper()]]


def formats_with(attribute: str) -> tuple[str, ...]:
    """Names of the output formats where ``attribute`` (quality, lossless, speed, metadata,
    budget, icc) applies, in table order."""
    return tuple(f.name for f in OUTPUT_FORMATS.values() if getattr(f, attribute))


# ---------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class SourceFormat:
    """One format the worker reads.

    Attributes:
        name: how messages and the README name it ("WebP").
        plugins: the Pillow plugin names that open it (`probe.open_image` tries only these).
        reads: what is read: which variants, which frame.
        decoder: which decoder turns it into pixels.
    """

    name: str
    plugins: tuple[str, ...]
    reads: str
    decoder: str


#: The formats read, in the order their Pillow plugins are tried.
SOURCE_FORMATS: tuple[SourceFormat, ...] = (
    SourceFormat("JPEG", ("JPEG",), "baseline, progressive, grey, CMYK (through its ICC profile by LittleCMS; "
                 "without one, Pillow's CMYK -> RGB), MPO (first picture)",
                 "libjpeg-turbo through torchvision (nvjpeg on CUDA); CMYK by Pillow"),
    SourceFormat("PNG", ("PNG",), "every bit depth and colour type, interlaced; 16 bits become 8; APNG: every "
                 "frame with GIF or WebP out, else the first", "Pillow (libpng)"),
    SourceFormat("WebP", ("WEBP",), "lossy, lossless, alpha; animated: every frame with GIF or WebP out, else the first",
                 "libwebp through torchvision; animated by Pillow"),
    SourceFormat("AVIF", ("AVIF",), "colour, alpha, grey (stays one channel); EXIF orientation and `irot`/`imir` "
                 "applied; animated (AVIS): first frame",
                 "libavif (dav1d) through Pillow, on the host"),
    SourceFormat("GIF", ("GIF",), "transparency becomes alpha; animated: every frame with GIF or WebP out, else "
                 "the first", "Pillow"),
    SourceFormat("BMP", ("BMP",), "palette and true colour", "Pillow"),
    SourceFormat("TIFF", ("TIFF",), "first page", "Pillow (libtiff)"),
    SourceFormat("PPM", ("PPM",), "PBM, PGM, PPM", "Pillow"),
    SourceFormat("ICO", ("ICO",), "the largest picture", "Pillow"),
)

#: Pillow plugin names that may open a source, in the order they are tried.
SOURCE_PLUGINS: tuple[str, ...] = tuple(p for f in SOURCE_FORMATS for p in f.plugins)


def _isobmff_brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF ``ftyp`` box at the start of ``head``."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return set()
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size if size >= 16 else 16)
    brands = {head[8:12]}
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    return brands


#: HEIF brands (HEVC-coded HEIF, i.e. HEIC, and its image sequences).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}


def _is_heif(head: bytes) -> bool:
    brands = _isobmff_brands(head)
    return bool(brands & _HEIF_BRANDS) and not brands & {b"avif", b"avis"}


def _is_jpeg_xl(head: bytes) -> bool:
    return head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n"


@dataclass(frozen=True)
class RefusedSource:
    """A format refused by name from its first bytes, before any decoder sees it.

    Attributes:
        name: how the message and the README name it.
        detect: the file's first 64 bytes -> whether it is this format.
        signature: the bytes that identify it, in words (for the README).
        reason: why it is refused.
    """

    name: str
    detect: Callable[[bytes], bool]
    signature: str
    reason: str


REFUSED_SOURCES: tuple[RefusedSource, ...] = (
    RefusedSource("HEIC/HEIF", _is_heif, "an ISO-BMFF `ftyp` box with a HEIF brand (`heic`, `heix`, `mif1` + `heic`, ...)",
                  "Pillow's wheels have no HEIF decoder (libheif is not in them)"),
    RefusedSource("JPEG XL", _is_jpeg_xl, "`FF 0A` (codestream) or the `JXL ` container box",
                  "Pillow's wheels have no JPEG XL decoder (libjxl is not in them)"),
)


def refused_source(head: bytes) -> Optional[RefusedSource]:
    """The refused format whose signature ``head`` (a file's first bytes) carries, or None."""
    return next((r for r in REFUSED_SOURCES if r.detect(head[:64])), None)

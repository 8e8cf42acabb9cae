"""The image formats: one table of what the worker reads, one of what it writes, and the sources
it refuses by name.

The job schema (accepted names, which output settings apply to which format, its field
descriptions), the prober (which Pillow plugins may open a source, which sources are refused from
their first bytes), the encoder (the encode function per device, formats, largest side, quality
and speed ranges, how grey is stored, which metadata a format carries), the animation writer, the
response (MIME type of the data URI), the bucket upload (file extension), the client (which files
of a folder are images), ``make run``'s example and the README's format tables
(``python -m gpu_worker.docs``) read it.

Adding an output format is one `OutputFormat` row here and one encode function (see
`OutputFormat.encoders`); tests/test_formats.py checks every row's functions resolve and write
files of that format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
        encoders: the function that writes a batch of stills, per device type, as
            ``"module:function"`` (resolved on first use by `gpu_worker.codecs.encode.encoder`,
            so this table imports no codec). ``"cpu"``, which every format has, runs on the
            host's threads and takes a batch on any device (copied to the host first);
            ``"cuda"``, where there is one, encodes on the GPU (nvjpeg: with
            ``CUDA_JPEG_CODEC=nvjpeg``). Each is ``f(images, options) -> list[bytes]``: uint8
            ``(B, C, H, W)`` and `gpu_worker.codecs.encode.EncodeOptions`, B whole files (kept
            EXIF, XMP and ICC profile written in).
        animation_encoder: the function that writes an animated file (``"module:function"``,
            ``f(frames, timing, options) -> bytes``, `gpu_worker.codecs.animation`); None: the
            format holds one frame only (`animation`).
        encoder_notes: which encoder writes it, per device, in words (the README's table).
        stored_as: Pillow mode of a result -> the mode a file of this format holds it in, where
            that differs (WebP has no grey mode; a JPEG's alpha is flattened). The profile a file
            keeps must describe what it holds (`gpu_worker.codecs.encode.stored_colours`).
        quality: whether ``output.quality`` (1-100) applies; PNG and GIF are lossless/palette.
        lossless: whether ``output.lossless: true`` is accepted (every pixel stored exactly).
        speed: ``(low, high, default)`` of ``output.speed``, the encoder's effort, low the
            slowest (smallest file), or None where it does not apply. For AVIF, libavif's speed:
            0 slowest to 10 fastest.
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
    encoders: dict[str, str]
    encoder_notes: str
    animation_encoder: Optional[str] = None
    stored_as: dict[str, str] = field(default_factory=dict)
    quality: bool = True
    lossless: bool = False
    speed: Optional[tuple[int, int, int]] = None
    metadata: tuple[str, ...] = ()
    budget: bool = False
    icc: bool = False

    @property
    def animation(self) -> bool:
        """Whether the format can hold several frames."""
        return self.animation_encoder is not None

    @property
    def gpu_encoder(self) -> bool:
        """Whether a batch on the GPU can be encoded there (``encoders["cuda"]``)."""
        return "cuda" in self.encoders


#: The range of ``output.quality`` for every format it applies to. libjpeg, libwebp and libavif
#: also take 0, which for AVIF writes the very same file as 1 (libavif maps both to its coarsest
#: quantizer), so 0 is refused for all of them, naming the field.
QUALITY_RANGE = (1, 100)

#: The modules the encoders below live in.
_STILLS, _MORE, _FRAMES = "gpu_worker.codecs.encode", "gpu_worker.codecs.encode_more", "gpu_worker.codecs.animation"

#: Canonical name -> format, in the order the README lists them.
OUTPUT_FORMATS: dict[str, OutputFormat] = {f.name: f for f in (
    OutputFormat("JPEG", ("JPG",), "image/jpeg", "jpg", 65_500, alpha="flattened onto white",
                 encoders={"cpu": f"{_STILLS}:encode_jpeg", "cuda": f"{_STILLS}:encode_jpeg_nvjpeg"},
                 encoder_notes="CPU: libjpeg-turbo (4:2:0). CUDA: nvjpeg (4:4:4), or libjpeg-turbo on host threads "
                               "with `CUDA_JPEG_CODEC` `libjpeg`/`hybrid`",
                 stored_as={"LA": "L", "RGBA": "RGB"}, metadata=("exif", "xmp"), budget=True, icc=True),
    OutputFormat("PNG", (), "image/png", "png", 2**31 - 1, alpha="kept",
                 encoders={"cpu": f"{_STILLS}:encode_png"},
                 encoder_notes="host threads: libpng through torchvision (1, 3 channels) or Pillow (2, 4 channels), "
                               "zlib level 6",
                 quality=False, metadata=("exif", "xmp"), icc=True),
    OutputFormat("WEBP", (), "image/webp", "webp", 16_383, alpha="kept",
                 encoders={"cpu": f"{_STILLS}:encode_webp"}, animation_encoder=f"{_FRAMES}:encode_webp_frames",
                 encoder_notes="host threads: libwebp through Pillow; grey is stored as RGB; `lossless: true` stores "
                               "every pixel exactly (then `quality` is the compression effort)",
                 stored_as={"L": "RGB", "LA": "RGBA"}, lossless=True, metadata=("exif", "xmp"), budget=True, icc=True),
    OutputFormat("AVIF", (), "image/avif", "avif", 32_768, alpha="kept",
                 encoders={"cpu": f"{_MORE}:encode_avif"},
                 encoder_notes="host threads: libavif (AOM) through Pillow, 4:2:0 (grey: 4:0:0); `speed` 0 (slowest, "
                               "smallest) to 10 (fastest), default 6",
                 stored_as={"LA": "RGBA"}, speed=(0, 10, 6), metadata=("exif", "xmp"), budget=True, icc=True),
    OutputFormat("GIF", (), "image/gif", "gif", 65_535, alpha="one transparent palette entry where alpha < 128",
                 encoders={"cpu": f"{_MORE}:encode_gif"}, animation_encoder=f"{_FRAMES}:encode_gif_frames",
                 encoder_notes="host threads: Pillow; 256 colours by Pillow's median-cut quantizer (255 and a "
                               "transparent entry with alpha; grey: its own 256 levels, exact)",
                 stored_as={"LA": "RGBA"}, quality=False),
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
        extensions: the file extensions (lower case, without the dot) the client takes from a
            folder or bucket prefix as this format (`SOURCE_EXTENSIONS`).
        reads: what is read: which variants, which frame.
        decoder: which decoder turns it into pixels.
        reported_as: other names Pillow gives an image these plugins open (``Image.format``:
            the JPEG plugin opens a multi-picture file as "MPO").
        animated: whether an animation in this format is read frame by frame (then kept with an
            output format that holds animation; `gpu_worker.codecs.animation`).
    """

    name: str
    plugins: tuple[str, ...]
    extensions: tuple[str, ...]
    reads: str
    decoder: str
    reported_as: tuple[str, ...] = ()
    animated: bool = False


#: The formats read, in the order their Pillow plugins are tried.
SOURCE_FORMATS: tuple[SourceFormat, ...] = (
    SourceFormat("JPEG", ("JPEG",), ("jpg", "jpeg", "jpe", "jfif", "mpo"),
                 "baseline, progressive, grey, CMYK (through its ICC profile by LittleCMS; "
                 "without one, Pillow's CMYK -> RGB), MPO (first picture)",
                 "libjpeg-turbo through torchvision (nvjpeg on CUDA); CMYK by Pillow", reported_as=("MPO",)),
    SourceFormat("PNG", ("PNG",), ("png", "apng"), "every bit depth and colour type, interlaced; 16 bits become 8; "
                 "APNG: every frame with GIF or WebP out, else the first", "Pillow (libpng)", animated=True),
    SourceFormat("WebP", ("WEBP",), ("webp",),
                 "lossy, lossless, alpha; animated: every frame with GIF or WebP out, else the first",
                 "libwebp through torchvision; animated by Pillow", animated=True),
    SourceFormat("AVIF", ("AVIF",), ("avif", "avifs"), "colour, alpha, grey (stays one channel); EXIF orientation "
                 "and `irot`/`imir` applied; animated (AVIS): first frame",
                 "libavif (dav1d) through Pillow, on the host"),
    SourceFormat("GIF", ("GIF",), ("gif",), "transparency becomes alpha; animated: every frame with GIF or WebP "
                 "out, else the first", "Pillow", animated=True),
    SourceFormat("BMP", ("BMP",), ("bmp",), "palette and true colour", "Pillow"),
    SourceFormat("TIFF", ("TIFF",), ("tif", "tiff"), "first page", "Pillow (libtiff)"),
    SourceFormat("PPM", ("PPM",), ("ppm", "pgm", "pbm", "pnm"), "PBM, PGM, PPM", "Pillow"),
    SourceFormat("ICO", ("ICO",), ("ico",), "the largest picture", "Pillow"),
)

#: Pillow plugin names that may open a source, in the order they are tried.
SOURCE_PLUGINS: tuple[str, ...] = tuple(p for f in SOURCE_FORMATS for p in f.plugins)

#: File extensions (lower case, with the dot) of the sources read: what the client lists from a
#: folder or a bucket prefix.
SOURCE_EXTENSIONS: frozenset[str] = frozenset(f".{e}" for f in SOURCE_FORMATS for e in f.extensions)

#: Pillow's ``Image.format`` name of an image the worker reads -> the source format's name.
_SOURCE_BY_PILLOW_NAME = {name: f for f in SOURCE_FORMATS for name in (*f.plugins, *f.reported_as)}

#: Every ``Image.format`` name of an image the worker reads (MPO included).
SOURCE_PILLOW_NAMES: tuple[str, ...] = tuple(_SOURCE_BY_PILLOW_NAME)


def source_name(pillow_name: str) -> str:
    """How messages name a source Pillow calls ``pillow_name`` ("WEBP" -> "WebP", "MPO" -> "JPEG");
    ``pillow_name`` itself for a format not in the table."""
    found = _SOURCE_BY_PILLOW_NAME.get(pillow_name)
    return found.name if found is not None else pillow_name


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

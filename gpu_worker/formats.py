"""The output formats: one table of what the worker knows about each.

The job schema (accepted names), the encoder (formats, largest side), the response (MIME type of
the data URI), the bucket upload (file extension), ``make run``'s example and the README's format
table (``python -m gpu_worker.docs``) read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputFormat:
    """One output format.

    Attributes:
        name: canonical name, as jobs and responses spell it ("JPEG").
        aliases: other accepted spellings (any case).
        mime: MIME type of a file in this format.
        extension: file extension, without the dot.
        max_side: largest width or height the format stores, pixels.
        alpha: whether an alpha channel is kept (JPEG flattens onto white).
        animation: whether the format can hold several frames.
        encoder: which encoder writes it, per device.
    """

    name: str
    aliases: tuple[str, ...]
    mime: str
    extension: str
    max_side: int
    alpha: bool
    animation: bool
    encoder: str


#: Canonical name -> format, in the order the README lists them.
OUTPUT_FORMATS: dict[str, OutputFormat] = {f.name: f for f in (
    OutputFormat("JPEG", ("JPG",), "image/jpeg", "jpg", 65_500, alpha=False, animation=False,
                 encoder="CPU: libjpeg-turbo (4:2:0). CUDA: nvjpeg (4:4:4), or libjpeg-turbo on host threads "
                         "with `CUDA_JPEG_CODEC` `libjpeg`/`hybrid`"),
    OutputFormat("PNG", (), "image/png", "png", 2**31 - 1, alpha=True, animation=False,
                 encoder="host threads: libpng through torchvision (1, 3 channels) or Pillow (2, 4 channels), zlib level 6"),
    OutputFormat("WEBP", (), "image/webp", "webp", 16_383, alpha=True, animation=True,
                 encoder="host threads: libwebp through Pillow; grey is stored as RGB"),
    OutputFormat("GIF", (), "image/gif", "gif", 65_535, alpha=True, animation=True,
                 encoder="host threads: Pillow, at most 256 colours per frame (Pillow's quantizer)"),
)}

#: Every accepted spelling, upper case -> canonical name.
_BY_SPELLING = {spelling: f.name for f in OUTPUT_FORMATS.values() for spelling in (f.name, *f.aliases)}


def output_format(spelling: str) -> OutputFormat:
    """The format a job names (any case, aliases accepted). Raises KeyError for an unknown one."""
    return OUTPUT_FORMATS[_BY_SPELLING[spelling.strip().upper()]]

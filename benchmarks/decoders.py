"""What each way of decoding untrusted PNG, GIF, WebP and JPEG files costs, side by side.

    python -m benchmarks.decoders [--repeats 9]

For each format, a 1920x1080 photo (benchmarks.images) is decoded on one thread:
- ``torchvision``: ``torchvision.io.decode_*`` (libpng, giflib, libwebp, libjpeg-turbo);
- ``pillow``: ``Image.open`` + ``load`` (+ ``convert`` to RGB for palette GIFs), then the array;
- ``worker``: :func:`gpu_worker.codecs.decode` on the CPU, the path jobs take;
- for PNG, ``validate``: what checking a PNG fully before handing it to libpng would cost: every
  chunk's CRC and an inflate of the whole zlib stream (the decode's own largest step).
Prints the median ms of each. The choice it informs is in gpu_worker/codecs/decode.py.
"""

from __future__ import annotations

import argparse
import io
import struct
import zlib

import numpy as np
import torch
import torchvision.io as tvio
from PIL import Image

from benchmarks.timing import median_ms
from benchmarks.images import image
from gpu_worker.codecs import decode


def _encoded(fmt: str, **params) -> bytes:
    im = image(0)
    if fmt == "GIF":
        im = im.convert("P")
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def _validate_png(data: bytes) -> None:
    """Every chunk's CRC, and the IDAT stream inflated to its end (the output thrown away)."""
    pos, inflater = 8, zlib.decompressobj()
    while pos + 8 <= len(data):
        length, tag = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if zlib.crc32(tag + body) != struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]:
            raise ValueError(f"bad CRC in {tag!r}")
        if tag == b"IDAT":
            inflater.decompress(body)
        pos += 12 + length
    if not inflater.eof:
        raise ValueError("zlib stream not finished")


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im if im.mode in ("RGB", "RGBA", "L") else im.convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = {
        "PNG": (_encoded("PNG"), tvio.decode_png),
        "GIF": (_encoded("GIF"), tvio.decode_gif),
        "WebP lossy": (_encoded("WEBP", quality=85), tvio.decode_webp),
        "WebP lossless": (_encoded("WEBP", lossless=True), tvio.decode_webp),
        "JPEG": (_encoded("JPEG", quality=90), tvio.decode_jpeg),
    }
    print(f"{'1920x1080':14} {'MB':>5} {'torchvision':>12} {'pillow':>8} {'worker':>8} {'validate':>9}  (ms)")
    for name, (data, tv_decode) in files.items():
        row = [median_ms(lambda: tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8)), args.repeats),
               median_ms(lambda: _pillow(data), args.repeats),
               median_ms(lambda: decode(data, "cpu"), args.repeats)]
        check = f"{median_ms(lambda: _validate_png(data), args.repeats):9.1f}" if name == "PNG" else f"{'':9}"
        print(f"{name:14} {len(data) / 1e6:5.2f} {row[0]:12.1f} {row[1]:8.1f} {row[2]:8.1f} {check}")


if __name__ == "__main__":
    main()

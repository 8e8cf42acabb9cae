"""Awkward source files for the codec tests, made in memory from the real photos in `photos`.

Each function returns encoded bytes. Pillow writes what it can; the PNG variants Pillow cannot
write (16-bit colour, 16-bit grey+alpha, 2/4-bit grey, a 40000x40000 bomb) are assembled chunk by
chunk with zlib. scikit-image's photos carry an sRGB ICC profile: it is dropped, so that libpng
does not complain about an RGB profile on grey images.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
from PIL import Image

from photos import alpha_mask, sample

#: The size most corpus files have: odd on both sides, big enough for JPEG blocks to matter.
SIZE = (97, 61)


def save(im: Image.Image, fmt: str, **params) -> bytes:
    """Encode a PIL image in memory (ICC profile dropped)."""
    im = im.copy()
    im.info.pop("icc_profile", None)
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def rgb(size=SIZE, name: str = "astronaut.png") -> Image.Image:
    return sample("RGB", size, name)


def rgba(size=SIZE) -> Image.Image:
    return sample("RGBA", size)


# ---------------------------------------------------------------------------------------------
# JPEG


def jpeg(size=SIZE, **params) -> bytes:
    return save(rgb(size), "JPEG", quality=90, **params)


def jpeg_progressive(size=SIZE) -> bytes:
    return save(rgb(size, "coffee.png"), "JPEG", quality=90, progressive=True)


def jpeg_gray(size=SIZE) -> bytes:
    return save(sample("L", size), "JPEG", quality=90)


def jpeg_cmyk(size=SIZE) -> bytes:
    return save(rgb(size, "chelsea.png").convert("CMYK"), "JPEG", quality=90)


def jpeg_exif(orientation: int, size=SIZE, mode: str = "RGB") -> bytes:
    """A JPEG whose EXIF orientation tag (0x0112) is ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = sample(mode, size, "rocket.jpg")
    return save(im, "JPEG", quality=90, exif=exif)


def truncated_jpeg() -> bytes:
    data = jpeg((257, 193))
    return data[: len(data) * 2 // 3]


def jpeg_bad_huffman_table() -> bytes:
    """A complete JPEG (end marker and all) whose first Huffman table counts 16 x 255 codes: every
    decoder must refuse it, so unlike a truncated file it reaches the decoder (nvjpeg's batch)."""
    data = bytearray(jpeg())
    dht = data.index(b"\xff\xc4")  # marker, 2 length bytes, class/id, then 16 code counts
    data[dht + 5 : dht + 21] = b"\xff" * 16
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# PNG


def png(im: Image.Image, **params) -> bytes:
    return save(im, "PNG", **params)


def png_palette_transparent(size=SIZE) -> bytes:
    """A palette PNG with a per-entry alpha table (quantized RGBA photo)."""
    return png(rgba(size).quantize(64))


def png_palette(size=SIZE, bits: int = 8) -> bytes:
    return png(rgb(size).convert("P", palette=Image.Palette.ADAPTIVE, colors=2**bits), bits=bits)


def png_la(size=SIZE) -> bytes:
    return png(rgba(size).convert("LA"))


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def raw_png(arr: np.ndarray, bit_depth: int, color_type: int, extra: bytes = b"") -> bytes:
    """A PNG from an (H, W[, C]) array of samples, big-endian for 16 bits; ``extra`` chunks
    go before IDAT."""
    h, w = arr.shape[:2]
    rows = []
    for y in range(h):
        row = arr[y].reshape(-1)
        if bit_depth == 16:
            raw = row.astype(">u2").tobytes()
        elif bit_depth == 8:
            raw = row.astype(np.uint8).tobytes()
        else:  # pack 1/2/4-bit samples, most significant first
            per = 8 // bit_depth
            row = np.pad(row.astype(np.uint8), (0, (-len(row)) % per)).reshape(-1, per)
            packed = np.zeros(len(row), np.uint8)
            for i in range(per):
                packed |= row[:, i] << (8 - bit_depth * (i + 1))
            raw = packed.tobytes()
        rows.append(b"\x00" + raw)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


def _spread16(a8: np.ndarray, seed: int = 0) -> np.ndarray:
    """8-bit samples -> 16-bit with a random low byte, so high byte and rounding differ."""
    rng = np.random.default_rng(seed)
    return a8.astype(np.uint16) * 256 + rng.integers(0, 256, a8.shape, dtype=np.uint16)


def gray16(size=SIZE) -> np.ndarray:
    return _spread16(np.asarray(sample("L", size)))


def png_gray16(size=SIZE) -> bytes:
    """16-bit grey PNG (Pillow: mode I;16), written by Pillow."""
    return png(Image.fromarray(gray16(size)))


def rgb16(size=SIZE) -> np.ndarray:
    return _spread16(np.asarray(rgb(size)), 1)


def png_rgb16(size=SIZE) -> bytes:
    return raw_png(rgb16(size), 16, 2)


def rgba16(size=SIZE) -> np.ndarray:
    return np.concatenate([rgb16(size), _spread16(np.asarray(alpha_mask(size)), 2)[:, :, None]], axis=2)


def png_rgba16(size=SIZE) -> bytes:
    return raw_png(rgba16(size), 16, 6)


def png_la16(size=SIZE) -> bytes:
    return raw_png(rgba16(size)[:, :, [0, 3]], 16, 4)


def png_gray_bits(bits: int, size=SIZE) -> bytes:
    return raw_png(np.asarray(sample("L", size)) >> (8 - bits), bits, 0)


def png_gray_trns(size=SIZE) -> tuple[bytes, int]:
    """8-bit grey PNG with a tRNS key colour; returns (file, key value)."""
    im = sample("L", size)
    key = int(np.asarray(im)[size[1] // 2, size[0] // 2])
    return png(im, transparency=key), key


def png_gray16_trns(size=SIZE) -> tuple[bytes, int]:
    a = gray16(size)
    key = int(a[size[1] // 2, size[0] // 2])
    return raw_png(a, 16, 0, _chunk(b"tRNS", struct.pack(">H", key))), key


def png_rgb_trns(size=SIZE) -> bytes:
    im = rgb(size)
    key = im.getpixel((size[0] // 2, size[1] // 2))
    return png(im, transparency=key)


def png_exif(orientation: int, size=SIZE) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return png(rgba(size), exif=exif)


def png_exif_after_idat(orientation: int, size=SIZE) -> bytes:
    """An RGB PNG whose eXIf chunk comes after the pixels (allowed; Pillow reads it on load)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = raw_png(np.asarray(rgb(size)), 8, 2)
    iend = body.rindex(b"IEND") - 4
    return body[:iend] + _chunk(b"eXIf", exif.tobytes()) + body[iend:]


def huge_png(width: int = 40000, height: int = 40000) -> bytes:
    """A valid 1-bit grey PNG of width x height black pixels in ~200 KB, made in ~0.2 s.

    The zlib stream is one block of 1000 zero rows, compressed once, repeated (a full flush
    resets the compressor, so the copies are valid deflate), then the Adler-32 of all the rows.
    """
    row_bytes = 1 + (width + 7) // 8
    rows_per_block = 1000
    assert height % rows_per_block == 0
    raw = bytes(row_bytes * rows_per_block)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = co.compress(raw) + co.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(height // rows_per_block):
        adler = zlib.adler32(raw, adler)
    stream = b"\x78\xda" + block * (height // rows_per_block) + b"\x03\x00" + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# WebP, GIF, BMP, TIFF


def webp_lossy(size=SIZE) -> bytes:
    return save(rgb(size), "WEBP", quality=80)


def webp_lossless_alpha(size=SIZE) -> bytes:
    return save(rgba(size), "WEBP", lossless=True)


def webp_animated(size=SIZE) -> bytes:
    a = rgb(size)
    return save(a, "WEBP", save_all=True, append_images=[a.transpose(Image.Transpose.FLIP_LEFT_RIGHT)],
                duration=100, quality=80)


def gif(size=SIZE) -> bytes:
    return save(rgb(size).convert("P", palette=Image.Palette.ADAPTIVE, colors=128), "GIF")


def gif_transparent(size=SIZE) -> bytes:
    return save(rgb(size).convert("P", palette=Image.Palette.ADAPTIVE, colors=128), "GIF", transparency=5)


def gif_animated(size=SIZE) -> bytes:
    frames = [
        rgb(size, name).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        for name in ("astronaut.png", "coffee.png", "chelsea.png")
    ]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def gif_animated_alpha(size=SIZE) -> bytes:
    """Three frames with transparent pixels, each restoring to the background (disposal 2)."""
    frames = [sample("RGBA", size, name) for name in ("astronaut.png", "coffee.png", "chelsea.png")]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=[80, 40, 120], loop=2,
                disposal=2)


def webp_animated_alpha(size=SIZE) -> bytes:
    a = sample("RGBA", size)
    return save(a, "WEBP", save_all=True, append_images=[a.transpose(Image.Transpose.FLIP_TOP_BOTTOM)],
                duration=[60, 90], lossless=True)


def apng(size=SIZE) -> bytes:
    """An animated PNG: three RGBA frames, the second blended over the first."""
    frames = [sample("RGBA", size, name) for name in ("astronaut.png", "coffee.png", "chelsea.png")]
    return save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=[50, 70, 90], loop=0,
                disposal=[0, 1, 2], blend=[0, 1, 0])


def gif_gray(size=SIZE) -> bytes:
    """A GIF with a grey palette, which Pillow opens as mode L."""
    return save(sample("L", size), "GIF", optimize=False)


def mpo(size=SIZE) -> bytes:
    """A two-picture MPO (what stereo cameras write): a JPEG followed by a second one."""
    first, second = rgb(size), rgb(size, "coffee.png")
    return save(first, "MPO", save_all=True, append_images=[second], quality=90)


def webp_bomb_header() -> bytes:
    """The first bytes of a lossless WebP that says it is 16383x16383 (268 MP)."""
    bits = (16383 - 1) | ((16383 - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + bytes(64)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8l)) + b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l


def bmp(size=SIZE) -> bytes:
    return save(rgb(size), "BMP")


def tiff(size=SIZE, **params) -> bytes:
    return save(rgb(size), "TIFF", **params)


def tiff_rgba(size=SIZE) -> bytes:
    return save(rgba(size), "TIFF", compression="tiff_deflate")


def tiff_oriented(orientation: int, size=SIZE) -> bytes:
    return save(rgb(size), "TIFF", tiffinfo={0x0112: orientation})


# ---------------------------------------------------------------------------------------------
# Not images


def random_bytes(n: int = 4096, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def text() -> bytes:
    return b"Dear worker,\nthis is a plain text file, not an image.\n" * 20

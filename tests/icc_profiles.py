"""ICC profiles for the tests: the real ones in tests/data/icc (see its README for their sources
and licences), a Display P3 profile written here from its published numbers, and real photos
converted into a profile's space and saved with it embedded."""

from __future__ import annotations

import functools
import io
import os
import struct

import numpy as np
from PIL import Image, ImageCms

DATA = os.path.join(os.path.dirname(__file__), "data", "icc")

#: Display P3 (Apple; SMPTE EG 432-1 primaries): CIE xy of red, green, blue and the D65 white.
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
D65 = (0.3127, 0.3290)
#: The ICC profile connection space's white (D50), XYZ.
D50_XYZ = (0.9642, 1.0, 0.8249)
#: Bradford's cone response matrix (ICC.1 annex E).
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


@functools.cache
def profile(name: str) -> bytes:
    """A profile's bytes: a file of tests/data/icc, "display_p3" (`display_p3`) or "srgb"
    (LittleCMS's built-in sRGB, as Pillow writes it)."""
    if name == "display_p3":
        return display_p3()
    if name == "srgb":
        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def _xyz(xy: tuple[float, float], big_y: float = 1.0) -> np.ndarray:
    x, y = xy
    return np.array([x / y * big_y, big_y, (1 - x - y) / y * big_y])


def rgb_to_xyz_d50(primaries, white) -> np.ndarray:
    """The 3x3 matrix from linear RGB to XYZ (D50-adapted by Bradford, as ICC colorants are)."""
    m = np.stack([_xyz(p) for p in primaries], axis=1)
    white_xyz = _xyz(white)
    m = m * np.linalg.solve(m, white_xyz)  # scale the primaries so that RGB 1, 1, 1 is the white
    src, dst = BRADFORD @ white_xyz, BRADFORD @ np.array(D50_XYZ)
    adapt = np.linalg.inv(BRADFORD) @ np.diag(dst / src) @ BRADFORD
    return adapt @ m


def _s15f16(values) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def _tag_xyz(xyz) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15f16(xyz)


def _tag_text_description(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\x00"
    # ASCII count and text, then empty Unicode (language, count) and ScriptCode (code, count, 67 bytes).
    return b"desc\x00\x00\x00\x00" + struct.pack(">I", len(ascii_)) + ascii_ + b"\x00" * 8 + b"\x00" * 3 + b"\x00" * 67


def _tag_srgb_curve(points: int = 1024) -> bytes:
    """A ``curv`` table of the sRGB transfer function (IEC 61966-2-1)."""
    v = np.linspace(0.0, 1.0, points)
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return b"curv\x00\x00\x00\x00" + struct.pack(">I", points) + np.round(linear * 65535).astype(">u2").tobytes()


def matrix_trc_profile(description: str, primaries, white, curve_points: int = 1024) -> bytes:
    """A small ICC v2 display profile: the ``primaries`` and ``white`` (CIE xy), the sRGB curve on
    every channel (a table of ``curve_points`` values, 2 bytes each). Tags: desc, cprt, wtpt (D50,
    ICC v4 practice), rXYZ/gXYZ/bXYZ, r/g/bTRC."""
    m = rgb_to_xyz_d50(primaries, white)
    curve = _tag_srgb_curve(curve_points)
    tags = [
        (b"desc", _tag_text_description(description)),
        (b"cprt", b"text\x00\x00\x00\x00" + b"No copyright: written by tests/icc_profiles.py\x00"),
        (b"wtpt", _tag_xyz(D50_XYZ)),
        (b"rXYZ", _tag_xyz(m[:, 0])),
        (b"gXYZ", _tag_xyz(m[:, 1])),
        (b"bXYZ", _tag_xyz(m[:, 2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    table = struct.pack(">I", len(tags))
    body = b""
    offset = 128 + 4 + 12 * len(tags)
    shared: dict[bytes, int] = {}
    for sig, data in tags:
        if data not in shared:  # the three TRC tags share one curve
            shared[data] = offset + len(body)
            body += data + b"\x00" * (-len(data) % 4)
        table += sig + struct.pack(">II", shared[data], len(data))
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + bytes((2, 0x10, 0, 0)) + b"mntr" + b"RGB " + b"XYZ "
              + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"APPL" + b"\x00" * 4 + b"\x00" * 8
              + b"\x00" * 8 + struct.pack(">I", 0) + _s15f16(D50_XYZ) + b"\x00" * 4 + b"\x00" * 16 + b"\x00" * 28)
    assert len(header) == 128, len(header)
    return header + table + body


def display_p3() -> bytes:
    """Display P3 from its published primaries, D65 white and the sRGB curve."""
    return matrix_trc_profile("Display P3 (tests)", P3_PRIMARIES, D65)


def into_profile(im: Image.Image, icc: bytes) -> Image.Image:
    """A real sRGB photo converted into the space of ``icc`` by LittleCMS (perceptual), the way a
    camera or an editor would have stored it: L, RGB or CMYK per the profile; RGBA keeps alpha."""
    target = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    space = target.profile.xcolor_space.strip()
    srgb = ImageCms.createProfile("sRGB")
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA") else None
    rgb = im.convert("RGB")
    out_mode = {"GRAY": "L", "RGB": "RGB", "CMYK": "CMYK"}[space]  # grey photos start as sRGB grey
    transform = ImageCms.buildTransform(srgb, target, "RGB", out_mode, renderingIntent=ImageCms.Intent.PERCEPTUAL)
    out = Image.new(out_mode, rgb.size)
    # The transform's own apply() also tags its result by serialising the output profile, which
    # LittleCMS cannot do for Ghostscript's CMYK one: the core call converts the pixels alone.
    transform.transform.apply(rgb.getim(), out.getim())
    if alpha is not None:
        out = out.convert("LA" if out.mode == "L" else "RGBA")
        out.putalpha(alpha)
    return out


def save_tagged(im: Image.Image, fmt: str, icc: bytes | None, **params) -> bytes:
    """``im`` saved by Pillow as ``fmt`` with ``icc`` embedded (JPEG APP2, PNG iCCP, WebP ICCP)."""
    buf = io.BytesIO()
    if icc is not None:
        params["icc_profile"] = icc
    im.save(buf, fmt, **params)
    return buf.getvalue()

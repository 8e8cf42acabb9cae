"""Embedded ICC profiles: sources converted to sRGB (the default), kept with ``output.icc: "keep"``,
CMYK JPEGs through their profile, sRGB and mismatched profiles left alone, corrupt ones refused.

Real profiles (tests/data/icc: Adobe RGB-compatible, ProPhoto, a grey one, Ghostscript's CMYK) and a
Display P3 profile written from its published primaries (tests/icc_profiles.py), on real photos
converted into each space by LittleCMS and saved with the profile embedded. The reference is
``ImageCms.profileToProfile(..., PERCEPTUAL)`` (`gpu_worker.color_management.reference`) on the
pixels the worker decodes; the worker's result is PNG (lossless), so its pixels are compared.
Kept profiles are read back with Pillow from every format that carries one (JPEG, PNG, WebP,
AVIF), alone and with the kept EXIF and XMP, and under ``max_bytes``; the container writer
(`gpu_worker.codecs.containers`) is checked on its own against the JPEG, PNG and WebP layouts.
"""

from __future__ import annotations

import base64
import io
import re
import struct

import numpy as np
import pytest
import torch
from icc_profiles import D65, P3_PRIMARIES, display_p3, into_profile, matrix_trc_profile, profile, save_tagged
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample, to_tensor

from gpu_worker import color_management
from gpu_worker.codecs import decode, encode
from gpu_worker.codecs.containers import CONTAINERS, Kept, embed, writable
from gpu_worker.codecs.encode import stored_colours
from gpu_worker.formats import formats_with
from gpu_worker.handler import run_sync
from gpu_worker.operations import apply_reference
from kernels.color_table import apply_color_table
from PIL import ExifTags, Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest

SIZE = (97, 61)
#: Within this many levels of LittleCMS (the project's standard; the table makes it 0 in fact).
ATOL = 1
PNG_OUT = {"format": "PNG"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def run(job_input: dict) -> dict:
    return run_sync({"id": "icc-test", "input": job_input})


def ok(response: dict) -> dict:
    assert response.get("success") is True, response.get("error", response)
    return response


def result_file(response: dict) -> bytes:
    return base64.b64decode(ok(response)["processed_image"].split(",", 1)[1])


def result_image(response: dict) -> Image.Image:
    im = Image.open(io.BytesIO(result_file(response)))
    im.load()
    return im


def photo(mode: str, name: str = COLOR_PHOTOS[0]) -> Image.Image:
    """A real photo crop in ``mode`` (LA from the RGBA crop's grey and alpha)."""
    if mode == "LA":
        return sample("RGBA", SIZE, name).convert("LA")
    return sample(mode, SIZE, name)


def tagged_source(profile_name: str, fmt: str, mode: str, name: str = COLOR_PHOTOS[0]) -> tuple[bytes, bytes]:
    """(file, profile): a real photo converted into the profile's space and saved as ``fmt`` with
    the profile embedded (JPEG quality 92, WebP lossless)."""
    icc = profile(profile_name)
    im = into_profile(photo(mode, name), icc)
    params = {"JPEG": {"quality": 92}, "WEBP": {"lossless": True}}.get(fmt, {})
    return save_tagged(im, fmt, icc, **params), icc


def decoded_as_pillow(data: bytes, device: torch.device) -> Image.Image:
    """The source's pixels as the worker decodes them on ``device`` (nvjpeg's on CUDA), as PIL."""
    arr = decode(data, device).permute(1, 2, 0).cpu().numpy()
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode)


# ---------------------------------------------------------------------------------------------
# converted to sRGB (the default)

CASES = [
    ("compatibleWithAdobeRGB1998.icc", "JPEG", "RGB"),
    ("compatibleWithAdobeRGB1998.icc", "PNG", "RGBA"),
    ("ProPhotoRGB.icc", "PNG", "RGB"),
    ("ProPhotoRGB.icc", "WEBP", "RGBA"),
    ("display_p3", "JPEG", "RGB"),
    ("display_p3", "WEBP", "RGB"),
    ("display_p3", "TIFF", "RGBA"),
    ("Gray.icc", "JPEG", "L"),
    ("Gray.icc", "PNG", "LA"),
]


@pytest.mark.parametrize("profile_name, fmt, mode", CASES, ids=["-".join(c) for c in CASES])
def test_source_converted_to_srgb_like_littlecms(worker, profile_name, fmt, mode):
    data, icc = tagged_source(profile_name, fmt, mode)
    expected = color_management.reference(decoded_as_pillow(data, worker.device), icc)
    got = result_image(run({"image": {"base64": b64(data)}, "output": PNG_OUT}))
    assert got.mode == expected.mode == mode
    assert max_abs_diff(pil_array(got), pil_array(expected)) <= ATOL
    assert "icc_profile" not in got.info  # "srgb": the result is untagged, which means sRGB
    # The conversion did something: the source's numbers read as sRGB are visibly off.
    assert max_abs_diff(pil_array(got), pil_array(decoded_as_pillow(data, worker.device))) > 5


def test_real_adobe_rgb_photo_converted(worker):
    """scikit-image's rocket.jpg is a real photo with an Adobe RGB (1998) profile embedded."""
    from photos import DATA_DIR

    with open(f"{DATA_DIR}/rocket.jpg", "rb") as f:
        data = f.read()
    with Image.open(io.BytesIO(data)) as im:
        icc = im.info["icc_profile"]
        assert "Adobe RGB" in color_management.read_profile(icc).description
    expected = color_management.reference(decoded_as_pillow(data, worker.device), icc)
    got = result_image(run({"image": {"base64": b64(data)}, "output": PNG_OUT}))
    assert max_abs_diff(pil_array(got), pil_array(expected)) <= ATOL


def test_operations_run_on_the_converted_pixels(worker):
    data, icc = tagged_source("display_p3", "PNG", "RGB")
    ops = [{"type": "resize", "params": {"width": 50}}, {"type": "filter", "params": {"name": "sharpen"}}]
    expected = apply_reference(color_management.reference(Image.open(io.BytesIO(data)), icc), ops)
    got = result_image(run({"image": {"base64": b64(data)}, "operations": ops, "output": PNG_OUT}))
    assert max_abs_diff(pil_array(got), pil_array(expected)) <= ATOL


def test_batch_of_profiles_each_converted_and_a_corrupt_one_fails_alone(worker):
    sources = [tagged_source(p, f, m, name) for (p, f, m), name in zip(CASES[::2], COLOR_PHOTOS)]
    corrupt = save_tagged(photo("RGB"), "JPEG", b"not an ICC profile" * 20, quality=90)
    plain = save_tagged(photo("RGB"), "PNG", None)
    items = [{"image": {"base64": b64(d)}} for d, _ in sources]
    items += [{"image": {"base64": b64(corrupt)}}, {"image": {"base64": b64(plain)}}]
    results = ok(run({"images": items, "output": PNG_OUT}))["results"]
    for (data, icc), response in zip(sources, results):
        expected = color_management.reference(decoded_as_pillow(data, worker.device), icc)
        assert max_abs_diff(pil_array(result_image(response)), pil_array(expected)) <= ATOL
    assert results[-2]["success"] is False
    assert results[-2]["error"].startswith("images[4]: ") and "ICC profile" in results[-2]["error"]
    assert np.array_equal(pil_array(result_image(results[-1])), pil_array(photo("RGB")))


# ---------------------------------------------------------------------------------------------
# left alone: sRGB profiles, profiles of another colour space


def test_srgb_profile_leaves_the_pixels_as_they_are(worker):
    im = photo("RGB")
    tagged = save_tagged(im, "PNG", profile("srgb"))
    got = result_image(run({"image": {"base64": b64(tagged)}, "output": PNG_OUT}))
    assert np.array_equal(pil_array(got), pil_array(im))


def test_profile_for_another_colour_space_is_ignored(worker):
    grey = photo("L")  # an RGB profile in a grey file, as some tools write: ignored, as browsers do
    tagged = save_tagged(grey, "PNG", profile("compatibleWithAdobeRGB1998.icc"))
    got = result_image(run({"image": {"base64": b64(tagged)}, "output": PNG_OUT}))
    assert np.array_equal(pil_array(got), pil_array(grey))


@pytest.mark.parametrize("icc", [b"not an ICC profile" * 20, display_p3()[:200]], ids=["garbage", "truncated"])
def test_corrupt_profile_is_refused_naming_it(worker, icc):
    data = save_tagged(photo("RGB"), "PNG", icc)
    response = run({"image": {"base64": b64(data)}})
    assert response["success"] is False
    assert "embedded ICC profile" in response["error"] and "corrupt" in response["error"], response["error"]


def test_icc_setting_is_checked(worker):
    response = run({"image": {"base64": b64(save_tagged(photo("RGB"), "PNG", None))}, "output": {"icc": "adobe"}})
    assert response["success"] is False
    assert "output.icc" in response["error"] and "srgb" in response["error"], response["error"]


# ---------------------------------------------------------------------------------------------
# kept: output.icc "keep"


@pytest.mark.parametrize("out", [{"format": "PNG"}, {"format": "JPEG", "quality": 90}, {"format": "WEBP", "quality": 80}],
                         ids=["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_keep_leaves_the_pixels_and_embeds_the_profile(worker, out, mode):
    data, icc = tagged_source("display_p3", "PNG", mode)
    with Image.open(io.BytesIO(data)) as im:  # the same pixels, untagged (Pillow would carry info over)
        plain = save_tagged(Image.fromarray(np.asarray(im), im.mode), "PNG", None)
    kept = result_file(run({"image": {"base64": b64(data)}, "output": {**out, "icc": "keep"}}))
    untagged = result_file(run({"image": {"base64": b64(plain)}, "output": out}))
    with Image.open(io.BytesIO(kept)) as a, Image.open(io.BytesIO(untagged)) as b:
        assert a.info.get("icc_profile") == icc
        assert "icc_profile" not in b.info
        assert np.array_equal(pil_array(a), pil_array(b))  # the same pixels: only the tag was added


def test_keep_and_srgb_results_are_cached_apart(worker):
    data, icc = tagged_source("ProPhotoRGB.icc", "PNG", "RGB")
    job = {"image": {"base64": b64(data)}, "output": PNG_OUT}
    converted = run(job)
    kept = run({**job, "output": {**PNG_OUT, "icc": "keep"}})
    assert kept["metadata"]["cached"] is False
    assert not np.array_equal(pil_array(result_image(converted)), pil_array(result_image(kept)))


AVIF_OUT = {"format": "AVIF", "quality": 70, "speed": 10}
#: EXIF with GPS and an XMP packet, for results that keep both the metadata and the profile.
GPS = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.5)}
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Jane Photographer</dc:creator>'
       b"</rdf:Description></rdf:RDF></x:xmpmeta>")


def exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(GPS)
    return exif


def untagged(data: bytes) -> bytes:
    """The pixels of ``data`` as a PNG without a profile (Pillow would carry info over)."""
    with Image.open(io.BytesIO(data)) as im:
        return save_tagged(Image.fromarray(np.asarray(im), im.mode), "PNG", None)


@pytest.mark.parametrize("profile_name, mode", [("display_p3", "RGB"), ("display_p3", "RGBA"), ("Gray.icc", "L")])
def test_keep_embeds_the_exact_profile_in_avif(worker, profile_name, mode):
    data, icc = tagged_source(profile_name, "PNG", mode)
    response = run({"image": {"base64": b64(data)}, "output": {**AVIF_OUT, "icc": "keep"}})
    plain = result_image(run({"image": {"base64": b64(untagged(data))}, "output": AVIF_OUT}))
    assert ok(response)["metadata"]["kept_metadata"] == ["icc"]
    kept = result_image(response)
    assert kept.format == "AVIF" and kept.info.get("icc_profile") == icc
    assert "icc_profile" not in plain.info
    assert kept.mode == plain.mode and np.array_equal(pil_array(kept), pil_array(plain))  # only the tag differs


@pytest.mark.parametrize("out", [PNG_OUT, {"format": "JPEG", "quality": 90}, {"format": "WEBP", "quality": 80},
                                 {"format": "WEBP", "lossless": True}, AVIF_OUT],
                         ids=["PNG", "JPEG", "WEBP", "WEBP-lossless", "AVIF"])
def test_keep_metadata_and_the_profile_together(worker, out):
    icc = display_p3()
    im = into_profile(photo("RGBA"), icc)
    data = save_tagged(im, "PNG", icc, exif=exif_with_gps())
    data = embed(data, "PNG", Kept(xmp=XMP))  # Pillow's PNG encoder writes no XMP
    response = ok(run({"image": {"base64": b64(data)}, "output": {**out, "icc": "keep", "keep_metadata": True}}))
    assert response["metadata"]["kept_metadata"] == ["exif", "xmp", "icc"]
    got = result_image(response)
    assert got.info.get("icc_profile") == icc
    exif = got.getexif()
    assert exif[ExifTags.Base.Make] == "TestCam" and dict(exif.get_ifd(ExifTags.IFD.GPSInfo)) == GPS
    xmp = got.info.get("xmp") or got.info.get("XML:com.adobe.xmp")
    assert b"Jane Photographer" in (xmp.encode() if isinstance(xmp, str) else xmp)


@pytest.mark.parametrize("fmt, extra", [("JPEG", {}), ("WEBP", {}), ("AVIF", {"speed": 10})], ids=["JPEG", "WEBP", "AVIF"])
def test_max_bytes_counts_the_kept_profile(worker, fmt, extra):
    """ProPhoto's profile (19,688 bytes) is larger than the photo's file: a budget between the
    tagged file at quality 1 and at 90 is met with the profile in it, at a quality below the one
    the same budget gives the untagged pixels."""
    data, icc = tagged_source("ProPhotoRGB.icc", "PNG", "RGB")
    with Image.open(io.BytesIO(data)) as im:
        tensor = to_tensor(im.copy(), worker.device)

    def tagged_size(quality: int) -> int:
        return len(encode(tensor, fmt, quality, nvjpeg=True, metadata=[Kept(icc=icc)], **extra)[0])

    budget = (tagged_size(90) + tagged_size(1)) // 2
    output = {"format": fmt, "quality": 90, "max_bytes": budget, **extra}
    kept = ok(run({"image": {"base64": b64(data)}, "output": {**output, "icc": "keep"}}))
    plain = ok(run({"image": {"base64": b64(untagged(data))}, "output": output}))
    meta = kept["metadata"]
    assert meta["max_bytes_met"] is True and meta["bytes"] == len(result_file(kept)) <= budget
    assert result_image(kept).info.get("icc_profile") == icc
    assert tagged_size(meta["quality"] + 1) > budget  # the next quality up, with the profile, does not fit
    assert meta["quality"] < plain["metadata"]["quality"]


def test_a_grey_profile_is_kept_only_in_a_grey_file(worker):
    data, icc = tagged_source("Gray.icc", "PNG", "L")
    grey = ok(run({"image": {"base64": b64(data)}, "output": {**PNG_OUT, "icc": "keep"}}))
    assert result_image(grey).info.get("icc_profile") == icc and grey["metadata"]["kept_metadata"] == ["icc"]
    webp = ok(run({"image": {"base64": b64(data)}, "output": {"format": "WEBP", "icc": "keep"}}))  # stored as RGB
    colorized = ok(run({"image": {"base64": b64(data)}, "output": {**PNG_OUT, "icc": "keep"},
                        "operations": [{"type": "colorize", "params": {"black": "#102030", "white": "#f0e0d0"}}]}))
    for response in (webp, colorized):
        assert "icc_profile" not in result_image(response).info and response["metadata"]["kept_metadata"] == []


# ---------------------------------------------------------------------------------------------
# CMYK JPEGs


def cmyk_jpeg(icc: bytes | None) -> bytes:
    cmyk = into_profile(photo("RGB"), profile("ps_cmyk.icc"))
    data = save_tagged(cmyk, "JPEG", icc, quality=92)
    assert data[2:11] == b"\xff\xee\x00\x0eAdobe"  # libjpeg writes Adobe's marker: inverted CMYK
    return data


@pytest.mark.parametrize("icc_setting", ["srgb", "keep"])
def test_cmyk_jpeg_goes_through_its_profile(worker, icc_setting):
    data = cmyk_jpeg(profile("ps_cmyk.icc"))
    with Image.open(io.BytesIO(data)) as source:  # Pillow inverts Adobe's CMYK back while decoding
        expected = color_management.reference(source, profile("ps_cmyk.icc"))
        naive = source.convert("RGB")
    got = result_image(run({"image": {"base64": b64(data)}, "output": {**PNG_OUT, "icc": icc_setting}}))
    assert max_abs_diff(pil_array(got), pil_array(expected)) <= ATOL
    assert max_abs_diff(pil_array(got), pil_array(naive)) > 20  # not Pillow's plain CMYK -> RGB
    assert "icc_profile" not in got.info  # no output format holds CMYK: converted either way


def test_cmyk_jpeg_without_profile_keeps_pillows_conversion(worker):
    data = cmyk_jpeg(None)
    with Image.open(io.BytesIO(data)) as source:
        expected = source.convert("RGB")
    got = result_image(run({"image": {"base64": b64(data)}, "output": PNG_OUT}))
    assert np.array_equal(pil_array(got), pil_array(expected))


# ---------------------------------------------------------------------------------------------
# the parts: the table kernel, the profile written into files, the sRGB test


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_color_table_kernel_is_a_gather(device, channels):
    gen = torch.Generator().manual_seed(channels)
    images = torch.randint(0, 256, (2, channels, 7, 5), dtype=torch.uint8, generator=gen)
    rows = 256 if channels <= 2 else 1 << 24
    colour = 1 if channels <= 2 else 3
    table = torch.randint(0, 256, (rows, colour), dtype=torch.uint8, generator=gen)
    out = apply_color_table(images.to(device), table.to(device)).cpu()
    c = images[:, :colour].to(torch.int64)
    index = c[:, 0] if colour == 1 else (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    assert torch.equal(out[:, :colour], table[index].permute(0, 3, 1, 2))
    assert torch.equal(out[:, colour:], images[:, colour:])  # alpha passed through


def test_color_table_kernel_refuses_a_table_of_the_wrong_shape():
    with pytest.raises(ValueError, match="table of shape"):
        apply_color_table(torch.zeros((1, 3, 2, 2), dtype=torch.uint8), torch.zeros((256, 1), dtype=torch.uint8))


EMBED_CASES = [(fmt, params, mode) for fmt, params in (("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"quality": 80}),
                                                        ("WEBP", {"lossless": True}))
               for mode in ("RGB", "RGBA") if not (fmt == "JPEG" and mode == "RGBA")]  # JPEG holds no alpha


@pytest.mark.parametrize("fmt, params, mode", EMBED_CASES,
                         ids=[f"{f}-{'lossless' if p.get('lossless') else 'lossy'}-{m}" for f, p, m in EMBED_CASES])
def test_embedded_profile_reads_back(fmt, params, mode):
    assert fmt in CONTAINERS
    icc = profile("ProPhotoRGB.icc")
    plain = save_tagged(photo(mode), fmt, None, **params)
    tagged = embed(plain, fmt, Kept(icc=icc))
    with Image.open(io.BytesIO(tagged)) as a, Image.open(io.BytesIO(plain)) as b:
        assert a.info.get("icc_profile") == icc
        assert a.size == b.size and a.mode == b.mode
        assert np.array_equal(pil_array(a), pil_array(b))


def long_profile() -> bytes:
    """Display P3 with 70,000-point curves: 140,512 bytes, three JPEG APP2 segments."""
    return matrix_trc_profile("Display P3 (tests, long curves)", P3_PRIMARIES, D65, curve_points=70_000)


def riff_chunks(data: bytes) -> list[bytes]:
    tags, pos = [], 12
    while pos + 8 <= len(data):
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        tags.append(data[pos : pos + 4])
        pos += 8 + size + (size & 1)
    return tags


CONTAINER_CASES = [("JPEG", {"quality": 90}, "RGB"), ("PNG", {}, "RGB"), ("PNG", {}, "LA"),
                   ("WEBP", {"quality": 80}, "RGB"), ("WEBP", {"quality": 80}, "RGBA"), ("WEBP", {"lossless": True}, "RGBA")]


@pytest.mark.parametrize("fmt, params, mode", CONTAINER_CASES,
                         ids=[f"{f}-{'lossless' if p.get('lossless') else 'lossy'}-{m}" for f, p, m in CONTAINER_CASES])
def test_containers_hold_exif_xmp_and_profile_where_the_specs_put_them(fmt, params, mode):
    icc = long_profile()
    exif = exif_with_gps().tobytes()[6:]  # TIFF bytes, without "Exif\0\0"
    plain = save_tagged(photo(mode), fmt, None, **params)
    tagged = embed(plain, fmt, Kept(exif=exif, xmp=XMP, icc=icc))
    with Image.open(io.BytesIO(tagged)) as a, Image.open(io.BytesIO(plain)) as b:
        assert a.info.get("icc_profile") == icc
        assert dict(a.getexif().get_ifd(ExifTags.IFD.GPSInfo)) == GPS
        xmp = a.info.get("xmp") or a.info.get("XML:com.adobe.xmp")
        assert b"Jane Photographer" in (xmp.encode() if isinstance(xmp, str) else xmp)
        assert a.size == b.size and a.mode == b.mode
        assert np.array_equal(pil_array(a), pil_array(b))
    if fmt == "JPEG":  # the profile split over APP2 segments numbered 1..3 of 3
        assert [tagged[m.start() + 16 : m.start() + 18] for m in re.finditer(b"\xff\xe2..ICC_PROFILE\x00", tagged)] == \
            [b"\x01\x03", b"\x02\x03", b"\x03\x03"]
    if fmt == "PNG":
        assert tagged.index(b"iCCP") < tagged.index(b"IDAT") and b"sRGB" not in tagged
    if fmt == "WEBP":  # VP8X first, ICCP before the image data, EXIF and XMP after it
        tags = riff_chunks(tagged)
        image = [t for t in tags if t in (b"VP8 ", b"VP8L", b"ALPH")]
        assert tags == [b"VP8X", b"ICCP", *image, b"EXIF", b"XMP "] and image
        assert tagged[20] & 0x3C == 0x2C | (0x10 if mode == "RGBA" else 0)  # ICC, (alpha,) EXIF, XMP flags


def test_a_jpeg_leaves_out_what_its_segments_cannot_hold():
    too_long = Kept(exif=bytes(65_528), xmp=b"x" * 100, icc=bytes(255 * 65_519 + 1))
    assert writable("JPEG", too_long) == Kept(xmp=b"x" * 100)
    assert writable("PNG", too_long) == too_long
    plain = save_tagged(photo("RGB"), "JPEG", None, quality=90)
    assert embed(plain, "JPEG", Kept(icc=too_long.icc)) == plain


@pytest.mark.parametrize("fmt", formats_with("icc"))  # where the profile must describe what the file holds
def test_stored_colours_says_what_each_file_holds(fmt):
    for channels, mode in enumerate(("L", "LA", "RGB", "RGBA"), start=1):
        extra = {"speed": 10} if fmt == "AVIF" else {}
        with Image.open(io.BytesIO(encode(to_tensor(photo(mode)), fmt, 80, **extra)[0])) as im:
            assert stored_colours(fmt, channels) == len(im.getbands()) - ("A" in im.getbands()), (mode, im.mode)


def test_srgb_is_decided_by_what_the_profile_does():
    srgb = color_management.read_profile(profile("srgb"))
    adobe = color_management.read_profile(profile("compatibleWithAdobeRGB1998.icc"))
    assert color_management.srgb_table(srgb, "cpu") is None
    assert color_management.srgb_table(adobe, "cpu").shape == (1 << 24, 3)
    assert "Adobe RGB" in adobe.description


def test_display_p3_profile_matches_its_published_numbers():
    """sRGB's primaries in Display P3 are (234, 51, 35), (117, 251, 76) and (0, 0, 245) (CSS Color 4's
    conversion, rounded): the test's own P3 profile is right."""
    from PIL import ImageCms

    im = Image.new("RGB", (3, 1))
    im.putpixel((0, 0), (255, 0, 0))
    im.putpixel((1, 0), (0, 255, 0))
    im.putpixel((2, 0), (0, 0, 255))
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(display_p3()))
    out = ImageCms.profileToProfile(im, ImageCms.createProfile("sRGB"), p3,
                                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    got = [out.getpixel((x, 0)) for x in range(3)]
    assert max_abs_diff(np.array(got), np.array([(234, 51, 35), (117, 251, 76), (0, 0, 245)])) <= 1

"""AVIF in and out, GIF out, WebP `lossless`, AVIF `speed`, `keep_metadata` and `max_bytes`
through the handler on real photos (issue 16 items 2, 4 and 5).

Every job goes through ``gpu_worker.handler.run_sync`` with a runtime on ``device`` (CPU here,
CUDA where present). Sources are crops of scikit-image's photos; their metadata (EXIF with GPS,
XMP, IPTC) is written by Pillow's own encoders (IPTC, which Pillow cannot write, as a Photoshop
APP13 segment put into Pillow's JPEG), and every check reads the result back with Pillow.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import struct

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageCms, ImageOps

import gpu_worker.runtime as runtime_module
from corpus import save
from gpu_worker.codecs import encode, probe
from gpu_worker.codecs.animation import Timing, encode_frames
from gpu_worker.codecs.budget import encode_within
from gpu_worker.codecs.containers import Kept, writable
from gpu_worker.codecs.encode import EncodeOptions, encoder
from gpu_worker.codecs.encode_more import GIF_TRANSPARENT_INDEX
from gpu_worker.config import Settings
from gpu_worker.errors import EncodeError
from gpu_worker.formats import (OUTPUT_FORMATS, QUALITY_RANGE, REFUSED_SOURCES, SOURCE_EXTENSIONS, SOURCE_FORMATS,
                                formats_with, source_name)
from gpu_worker.handler import run_sync
from gpu_worker.runtime import build_runtime, set_runtime
from gpu_worker.schema import OutputSpec
from photos import pil_array, sample, to_tensor

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest

SIZE = (97, 61)
GPS = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.5),
       ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.25)}
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6" '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Jane Photographer</dc:creator>'
       b"</rdf:Description></rdf:RDF></x:xmpmeta>")
#: An IPTC record (2:80 By-line) in a Photoshop image resource block, as cameras' software writes it.
IPTC = b"\x1c\x02\x50\x00\x0eIPTC byline xy"


# ---------------------------------------------------------------------------------------------
# helpers


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def run(job_input) -> dict:
    return run_sync({"id": "test-job", "input": job_input})


def ok(response: dict) -> dict:
    assert response.get("success") is True, response.get("error", response)
    return response


def result_bytes(response: dict) -> bytes:
    return base64.b64decode(response["processed_image"].split(",", 1)[1])


def result_image(response: dict) -> Image.Image:
    im = Image.open(io.BytesIO(result_bytes(response)))
    im.load()
    return im


def error_of(response: dict) -> str:
    assert response["success"] is False and set(response) == {"success", "error"}, response
    return response["error"]


def exif_with_gps(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(GPS)
    return exif


def with_iptc(jpeg: bytes) -> bytes:
    """``jpeg`` with a Photoshop APP13 segment holding ``IPTC`` after its first segment."""
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(IPTC)) + IPTC
    body = b"Photoshop 3.0\x00" + resource + (b"\x00" if len(resource) & 1 else b"")
    segment = b"\xff\xed" + struct.pack(">H", len(body) + 2) + body
    first_end = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:first_end] + segment + jpeg[first_end:]


def tagged_jpeg(size=SIZE) -> bytes:
    """A real photo as a JPEG with EXIF (orientation 6, GPS), XMP and IPTC."""
    return with_iptc(save(sample("RGB", size), "JPEG", quality=92, exif=exif_with_gps(), xmp=XMP))


def avif(im: Image.Image, **params) -> bytes:
    return save(im, "AVIF", **params)


# ---------------------------------------------------------------------------------------------
# the formats table


def test_the_table_states_what_applies_where():
    assert formats_with("lossless") == ("WEBP",)
    assert formats_with("speed") == ("AVIF",)
    assert formats_with("budget") == ("JPEG", "WEBP", "AVIF")
    assert set(formats_with("metadata")) == {"JPEG", "PNG", "WEBP", "AVIF"}
    assert formats_with("icc") == ("JPEG", "PNG", "WEBP", "AVIF")  # GIF: Pillow writes no profile into one
    assert OUTPUT_FORMATS["AVIF"].speed == (0, 10, 6) and QUALITY_RANGE == (1, 100)
    assert {r.name for r in REFUSED_SOURCES} == {"HEIC/HEIF", "JPEG XL"}


def test_the_tables_mime_types_and_extensions_are_pillows():
    extensions = Image.registered_extensions()
    for f in OUTPUT_FORMATS.values():
        assert Image.MIME[f.name] == f.mime and extensions[f".{f.extension}"] == f.name, f.name
    assert SOURCE_EXTENSIONS == {f".{e}" for f in SOURCE_FORMATS for e in f.extensions}
    for f in SOURCE_FORMATS:
        assert all(p in Image.OPEN for p in f.plugins), f.name
        for ext in f.extensions:  # Pillow's plugin for the extension is one of the format's
            assert extensions[f".{ext}"] in (*f.plugins, *f.reported_as), (f.name, ext)
    assert source_name("MPO") == "JPEG" and source_name("WEBP") == "WebP" and source_name("XYZ") == "XYZ"


def test_every_row_names_encoders_that_resolve():
    for f in OUTPUT_FORMATS.values():
        assert "cpu" in f.encoders and set(f.encoders) <= {"cpu", "cuda"}, f.name
        for reference in f.encoders.values():
            assert callable(encoder(reference)), reference
        assert f.animation == (f.animation_encoder is not None)
        if f.animation:
            assert callable(encoder(f.animation_encoder)), f.animation_encoder
    assert formats_with("gpu_encoder") == ("JPEG",)  # nvjpeg
    assert formats_with("animation") == ("WEBP", "GIF")


@pytest.mark.parametrize("fmt", list(OUTPUT_FORMATS))
def test_each_encoder_the_table_names_writes_its_format(device, fmt):
    """Every device's encoder of the row (the host's takes a batch on any device; a GPU encoder
    runs where the batch is on that device) writes one file of the format per image."""
    spec = OUTPUT_FORMATS[fmt]
    options = EncodeOptions(quality=80, speed=spec.speed[2] if spec.speed else None)
    for kind, reference in spec.encoders.items():
        if kind != "cpu" and kind != device.type:
            continue
        for mode in ("L", "LA", "RGB", "RGBA"):
            images = [sample("RGBA" if mode == "LA" else mode, SIZE, name) for name in ("coffee.png", "chelsea.png")]
            batch = torch.cat([to_tensor(im.convert(mode), device) for im in images])
            files = encoder(reference)(batch, options)
            assert len(files) == 2, (kind, mode)
            for data in files:
                with Image.open(io.BytesIO(data)) as im:
                    assert im.format == fmt and im.size == SIZE, (kind, mode)
                    im.load()


@pytest.mark.parametrize("fmt", formats_with("animation"))
def test_each_animated_format_writes_every_frame(device, fmt):
    frames = torch.cat([to_tensor(sample("RGB", SIZE, name), device) for name in ("coffee.png", "chelsea.png")])
    data = encode_frames(frames, fmt, Timing((40, 80), 0, None), 80)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == fmt and im.size == SIZE and im.n_frames == 2


def test_a_format_without_animation_is_refused_naming_those_with_it():
    frames = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    for fmt in OUTPUT_FORMATS:
        if not OUTPUT_FORMATS[fmt].animation:
            with pytest.raises(EncodeError, match=f"{fmt} holds no animation; WEBP and GIF do"):
                encode_frames(frames, fmt, Timing((40, 80), 0, None))


def test_a_file_holds_the_metadata_the_table_says():
    everything = Kept(exif=b"II*\x00", xmp=b"<x/>", icc=b"profile")
    for f in OUTPUT_FORMATS.values():
        assert writable(f.name, everything).names() == [*f.metadata, *(["icc"] if f.icc else [])], f.name
    assert writable("GIF", everything) == Kept()


@pytest.mark.parametrize("field, attribute", [("quality", "quality"), ("lossless", "lossless"), ("speed", "speed"),
                                              ("keep_metadata", "metadata"), ("max_bytes", "budget")])
def test_the_schema_describes_each_setting_with_the_formats_the_table_gives(field, attribute):
    description = OutputSpec.model_fields[field].description
    named = {name for name in OUTPUT_FORMATS if re.search(rf"\b{name}\b", description)}
    assert named == set(formats_with(attribute)), description
    assert all(re.search(rf"\b{name}\b", OutputSpec.model_fields["format"].description) for name in OUTPUT_FORMATS)


def test_avif_quality_0_is_the_same_file_as_1_so_the_range_starts_at_1():
    """libavif maps quality 0 and 1 to the same quantizer (of 64): refusing 0 loses nothing."""
    im = sample("RGB", SIZE, "coffee.png")
    assert avif(im, quality=0, speed=8) == avif(im, quality=1, speed=8)
    assert len(avif(im, quality=1, speed=8)) < len(avif(im, quality=10, speed=8))


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_avif_out_is_pillows_avif_of_the_same_pixels(worker, mode):
    im = sample(mode, SIZE, "chelsea.png")
    response = ok(run({"image": {"base64": b64(save(im, "PNG"))},
                       "output": {"format": "avif", "quality": 70, "speed": 8}}))
    assert response["processed_image"].startswith("data:image/avif;base64,")
    meta = response["metadata"]
    assert (meta["format"], meta["quality"], meta["speed"]) == ("AVIF", 70, 8)
    assert result_bytes(response) == avif(im, quality=70, speed=8)  # the same encoder, the same file
    out = result_image(response)
    assert out.format == "AVIF" and out.size == im.size and out.mode == mode


def test_avif_speed_defaults_to_the_tables_and_changes_the_file(worker):
    data = b64(save(sample("RGB", SIZE), "PNG"))
    default = ok(run({"image": {"base64": data}, "output": {"format": "AVIF"}}))
    assert default["metadata"]["speed"] == OUTPUT_FORMATS["AVIF"].speed[2]
    fast = ok(run({"image": {"base64": data}, "output": {"format": "AVIF", "speed": 10}}))
    assert result_bytes(fast) != result_bytes(default)


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_avif_in_decodes_to_pillows_pixels_turned_by_its_orientation(worker, mode, orientation):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    data = avif(sample(mode, SIZE, "rocket.jpg"), quality=80, speed=9, exif=exif)
    info = probe(data)
    assert (info.format, info.decoder, info.orientation) == ("AVIF", "pillow", orientation)
    response = ok(run({"image": {"base64": b64(data)}, "output": {"format": "PNG"}}))
    with Image.open(io.BytesIO(data)) as src:
        expected = ImageOps.exif_transpose(src)
    out = result_image(response)
    assert out.size == expected.size == (response["metadata"]["width"], response["metadata"]["height"])
    assert np.array_equal(pil_array(out), pil_array(expected.convert(out.mode)))
    assert response["metadata"]["source"]["format"] == "AVIF"


def test_avif_over_the_pixel_limit_is_refused_from_its_header(device):
    previous = runtime_module._runtime
    set_runtime(build_runtime(dataclasses.replace(Settings(), gpu_worker_device=str(device), max_decoded_pixels=5000)))
    try:
        response = run({"image": {"base64": b64(avif(sample("RGB", SIZE), speed=10))}})
    finally:
        set_runtime(previous)
    message = error_of(response)
    assert "MAX_DECODED_PIXELS=5,000" in message and "97x61" in message


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_gif_out_is_pillows_quantizer_with_one_transparent_entry(worker, mode):
    im = sample(mode, SIZE, "coffee.png")
    response = ok(run({"image": {"base64": b64(save(im, "PNG"))}, "output": {"format": "GIF"}}))
    assert response["processed_image"].startswith("data:image/gif;base64,")
    out = result_image(response)
    assert out.format == "GIF" and out.size == im.size
    if mode == "L":  # grey: its own 256 levels, exact
        assert np.array_equal(np.asarray(out.convert("L")), np.asarray(im))
    elif mode == "RGB":  # Pillow's median cut, 256 colours
        assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(im.quantize(256).convert("RGB")))
    else:
        alpha = np.asarray(im.getchannel("A"))
        assert out.info["transparency"] == GIF_TRANSPARENT_INDEX
        shown = np.asarray(out.convert("RGBA"))
        assert np.array_equal(shown[:, :, 3] == 255, alpha >= 128)
        assert np.array_equal(shown[:, :, 3] == 0, alpha < 128)
        # Pillow's median cut, 255 colours, over the visible pixels: the hidden ones take the
        # first visible pixel's colour, so they spend no palette entry.
        opaque = alpha >= 128
        rgb = np.asarray(im.convert("RGB")).copy()
        rgb[~opaque] = rgb[opaque][0]
        colours = np.asarray(Image.fromarray(rgb).quantize(255).convert("RGB"))
        assert np.array_equal(shown[:, :, :3][opaque], colours[opaque])
    # The quantizer's error on a photo, the bound the README states: a few levels on average.
    diff = np.abs(np.asarray(out.convert("RGB"), dtype=np.int16) - np.asarray(im.convert("RGB"), dtype=np.int16))
    if mode != "RGBA":
        assert diff.mean() < 6, diff.mean()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_webp_lossless_from_a_job_keeps_every_pixel(worker, mode):
    im = sample(mode, SIZE, "astronaut.png")
    response = ok(run({"image": {"base64": b64(save(im, "PNG"))}, "output": {"format": "WEBP", "lossless": True}}))
    out = result_image(response)
    expected = im.convert("RGB") if mode == "L" else im  # WebP has no grey mode
    assert np.array_equal(pil_array(out), pil_array(expected))
    lossy = ok(run({"image": {"base64": b64(save(im, "PNG"))}, "output": {"format": "WEBP"}}))
    assert not np.array_equal(pil_array(result_image(lossy)), pil_array(expected))


# ---------------------------------------------------------------------------------------------
# refused


@pytest.mark.parametrize(("output", "message"), [
    ({"format": "AVIF", "quality": 0}, "output.quality: Input should be greater than or equal to 1 (got 0)"),
    ({"format": "AVIF", "quality": 101}, "output.quality: Input should be less than or equal to 100"),
    ({"format": "JPEG", "max_bytes": 0}, "output.max_bytes: Input should be greater than or equal to 1 (got 0)"),
    ({"format": "WEBP", "max_bytes": -100}, "output.max_bytes: Input should be greater than or equal to 1 (got -100)"),
    ({"format": "PNG", "max_bytes": 5000}, "output.max_bytes: applies to JPEG, WEBP, AVIF only, not PNG"),
    ({"format": "GIF", "max_bytes": 5000}, "output.max_bytes: applies to JPEG, WEBP, AVIF only, not GIF"),
    ({"format": "JPEG", "lossless": True}, "output.lossless: applies to WEBP only, not JPEG"),
    ({"format": "AVIF", "lossless": True}, "output.lossless: applies to WEBP only, not AVIF"),
    ({"format": "WEBP", "lossless": True, "max_bytes": 5000}, "output.max_bytes: has no quality to search with lossless"),
    ({"format": "JPEG", "speed": 4}, "output.speed: applies to AVIF only, not JPEG"),
    ({"format": "AVIF", "speed": 11}, "output.speed: Input should be less than or equal to 10"),
    ({"format": "AVIF", "speed": -1}, "output.speed: Input should be greater than or equal to 0"),
    ({"format": "AVIF", "keep_metadata": "yes"}, "output.keep_metadata: Input should be a valid boolean"),
    ({"format": "HEIC"}, "output.format: unknown output format 'HEIC'; allowed: JPEG, PNG, WEBP, AVIF, GIF"),
])
def test_bad_output_settings_are_refused_naming_the_field(worker, output, message):
    assert message in error_of(run({"image": {"base64": "AAAA"}, "output": output}))


HEIC_HEADERS = {
    "heic-brand": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    "mif1-with-heic": b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1miafheic",
}
JXL_HEADERS = {"codestream": b"\xff\x0a\xfa\x7f\x01\x90\x08", "container": b"\x00\x00\x00\x0cJXL \r\n\x87\n"}


@pytest.mark.parametrize("kind", sorted(HEIC_HEADERS) + sorted(JXL_HEADERS))
def test_heic_and_jpeg_xl_are_refused_saying_pillows_wheels_lack_them(worker, kind):
    head = HEIC_HEADERS.get(kind) or JXL_HEADERS[kind]
    message = error_of(run({"image": {"base64": b64(head + bytes(200))}}))
    name = "HEIC/HEIF" if kind in HEIC_HEADERS else "JPEG XL"
    assert message.startswith(f"{name} images are not supported: Pillow's wheels have no"), message


def test_an_avif_whose_brand_says_avif_is_not_taken_for_heic():
    data = avif(sample("RGB", (8, 8)), speed=10)
    assert b"avif" in data[:32] and b"mif1" in data[:32]
    assert probe(data).format == "AVIF"


def test_one_bad_item_fails_alone_in_a_batch_of_new_formats(worker):
    photo = b64(save(sample("RGB", SIZE, "chelsea.png"), "PNG"))
    job = {"operations": [{"type": "resize", "params": {"width": 40}}], "output": {"format": "AVIF", "speed": 10},
           "images": [
               {"image": {"base64": photo}},
               {"image": {"base64": photo}, "output": {"format": "AVIF", "quality": 0}},
               {"image": {"base64": photo}, "output": {"format": "GIF"}},
               {"image": {"base64": b64(HEIC_HEADERS["heic-brand"] + bytes(100))}},
               {"image": {"base64": photo}, "output": {"format": "JPEG", "max_bytes": 0}},
               {"image": {"base64": b64(avif(sample("RGBA", SIZE), speed=10))}, "output": {"format": "WEBP", "lossless": True}},
               {"image": {"base64": b64(tagged_jpeg())}, "output": {"format": "JPEG", "max_bytes": 600, "keep_metadata": True}},
           ]}
    response = ok(run(job))
    results = response["results"]
    assert response["metadata"]["failed"] == 3
    assert "images[1]" in error_of(results[1]) and "output.quality" in results[1]["error"]
    assert "images[3]" in error_of(results[3]) and "HEIC" in results[3]["error"]
    assert "images[4]" in error_of(results[4]) and "output.max_bytes" in results[4]["error"]
    assert result_image(ok(results[0])).format == "AVIF"
    assert result_image(ok(results[2])).format == "GIF"
    assert result_image(ok(results[5])).mode == "RGBA"
    assert ok(results[6])["metadata"]["kept_metadata"] == ["exif", "xmp"]


# ---------------------------------------------------------------------------------------------
# metadata


def assert_no_metadata(data: bytes) -> None:
    """The file holds no EXIF, GPS, XMP or IPTC, as Pillow reads it and as bytes."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert not dict(im.getexif()), dict(im.getexif())
        assert not any(k in im.info for k in ("exif", "xmp", "XML:com.adobe.xmp", "photoshop")), im.info.keys()
    for marker in (b"Exif\x00\x00", b"TestCam", b"xmpmeta", b"Jane Photographer", b"Photoshop 3.0", b"IPTC byline"):
        assert marker not in data, marker


def test_the_source_metadata_is_described(worker):
    response = ok(run({"image": {"base64": b64(tagged_jpeg())}, "output": {"format": "PNG"}}))
    assert response["metadata"]["source"] | {"bytes": 0} == {
        "format": "JPEG", "width": 61, "height": 97, "mode": "RGB", "bytes": 0,
        "exif": True, "gps": True, "xmp": True, "iptc": True, "icc": None, "frames": 1}


def test_the_source_profile_description_and_frame_count_are_described(worker):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    frames = [sample("RGB", SIZE, name).convert("P") for name in ("coffee.png", "chelsea.png", "astronaut.png")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    tagged = save(sample("RGB", SIZE), "PNG", icc_profile=srgb)
    described = ok(run({"image": {"base64": b64(tagged)}}))["metadata"]["source"]
    assert described["icc"] == ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(srgb))).strip()
    assert described["icc"] and described["frames"] == 1
    assert ok(run({"image": {"base64": b64(buf.getvalue())}}))["metadata"]["source"]["frames"] == 3


@pytest.mark.parametrize("fmt", list(OUTPUT_FORMATS))
def test_exif_gps_xmp_and_iptc_are_stripped_by_default(worker, fmt):
    response = ok(run({"image": {"base64": b64(tagged_jpeg())}, "output": {"format": fmt}}))
    assert response["metadata"]["kept_metadata"] == []
    assert_no_metadata(result_bytes(response))


@pytest.mark.parametrize("fmt", formats_with("metadata"))
def test_keep_metadata_keeps_exif_with_gps_upright_and_xmp(worker, fmt):
    response = ok(run({"image": {"base64": b64(tagged_jpeg())}, "output": {"format": fmt, "keep_metadata": True},
                       "operations": [{"type": "resize", "params": {"width": 30}}]}))
    assert response["metadata"]["kept_metadata"] == ["exif", "xmp"]
    data = result_bytes(response)
    with Image.open(io.BytesIO(data)) as out:
        out.load()
        exif = out.getexif()
        assert exif.get(ExifTags.Base.Orientation, 1) == 1  # the pixels are already turned
        assert exif[ExifTags.Base.Make] == "TestCam"
        assert dict(exif.get_ifd(ExifTags.IFD.GPSInfo)) == GPS
        assert ImageOps.exif_transpose(out).size == out.size == (30, int(97 * 30 / 61))
        xmp = out.info.get("xmp") or out.info.get("XML:com.adobe.xmp")
        xmp = xmp.encode() if isinstance(xmp, str) else xmp
        assert b"Jane Photographer" in xmp and b'tiff:Orientation="1"' in xmp and b'Orientation="6"' not in xmp
    assert b"Photoshop 3.0" not in data and b"IPTC byline" not in data  # IPTC is never kept


def _exif_with_a_thumbnail(thumbnail: bytes) -> bytes:
    """A TIFF-format EXIF block (little-endian): IFD0 with orientation 6, then IFD1 holding
    ``thumbnail`` (a JPEG) as cameras write their preview."""
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x112, 3, 1, 6)
    ifd1_at = 8 + len(ifd0) + 4
    thumbnail_at = ifd1_at + 2 + 2 * 12 + 4
    ifd1 = (struct.pack("<H", 2) + struct.pack("<HHII", 0x201, 4, 1, thumbnail_at)
            + struct.pack("<HHII", 0x202, 4, 1, len(thumbnail)) + struct.pack("<I", 0))
    return b"II*\x00" + struct.pack("<I", 8) + ifd0 + struct.pack("<I", ifd1_at) + ifd1 + thumbnail


@pytest.mark.parametrize("fmt", formats_with("metadata"))
def test_a_kept_exif_drops_the_sources_thumbnail(worker, fmt):
    """The source's EXIF preview (IFD1) shows the picture before the job cropped or turned it: a
    result that keeps the EXIF must not carry it."""
    thumbnail = save(sample("RGB", (16, 10), "chelsea.png"), "JPEG")
    exif = _exif_with_a_thumbnail(thumbnail)
    source = io.BytesIO()
    sample("RGB", SIZE).save(source, "JPEG", exif=b"Exif\x00\x00" + exif)
    with Image.open(io.BytesIO(source.getvalue())) as im:  # the source really carries it
        assert im.getexif().get_ifd(ExifTags.IFD.IFD1) and thumbnail in source.getvalue()
    response = ok(run({"image": {"base64": b64(source.getvalue())}, "output": {"format": fmt, "keep_metadata": True},
                       "operations": [{"type": "crop", "params": {"left": 0, "top": 0, "right": 20, "bottom": 20}}]}))
    assert "exif" in response["metadata"]["kept_metadata"]
    data = result_bytes(response)
    with Image.open(io.BytesIO(data)) as out:
        kept = out.getexif()
        assert kept.get(ExifTags.Base.Orientation, 1) == 1  # (AVIF moves it into the container)
        assert not kept.get_ifd(ExifTags.IFD.IFD1)
    assert thumbnail not in data


def test_keep_metadata_in_a_format_that_carries_none_keeps_nothing(worker):
    response = ok(run({"image": {"base64": b64(tagged_jpeg())}, "output": {"format": "GIF", "keep_metadata": True}}))
    assert response["metadata"]["kept_metadata"] == []
    assert_no_metadata(result_bytes(response))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_kept_metadata_survives_alpha_and_lossless_containers(worker, fmt):
    im = sample("RGBA", SIZE, "coffee.png")
    src = save(im, "WEBP", lossless=True, exact=True, exif=exif_with_gps(1), xmp=XMP)
    output = {"format": fmt, "keep_metadata": True, **({"lossless": True} if fmt == "WEBP" else {})}
    out = result_image(ok(run({"image": {"base64": b64(src)}, "output": output})))
    assert np.array_equal(pil_array(out), pil_array(im))  # the pixels, alpha included, are untouched
    assert dict(out.getexif().get_ifd(ExifTags.IFD.GPSInfo)) == GPS


# ---------------------------------------------------------------------------------------------
# max_bytes


def _file_size(worker, im: Image.Image, fmt: str, quality: int, **extra) -> int:
    """The size of the worker's own encoding of ``im`` at ``quality`` (the encoder the job uses)."""
    tensor = to_tensor(im, worker.device)
    return len(encode(tensor, fmt, quality, nvjpeg=True, **extra)[0])


@pytest.mark.parametrize("fmt", formats_with("budget"))
def test_max_bytes_gives_the_highest_quality_that_fits(worker, fmt):
    im = sample("RGB", (160, 120), "coffee.png")
    extra = {"speed": 8} if fmt == "AVIF" else {}
    at_90 = _file_size(worker, im, fmt, 90, **extra)
    at_1 = _file_size(worker, im, fmt, 1, **extra)
    budget = (at_90 + at_1) // 2
    response = ok(run({"image": {"base64": b64(save(im, "PNG"))},
                       "output": {"format": fmt, "quality": 90, "max_bytes": budget, **extra}}))
    meta = response["metadata"]
    q = meta["quality"]
    assert meta["max_bytes_met"] is True and 1 <= q < 90
    assert meta["bytes"] == len(result_bytes(response)) <= budget
    assert _file_size(worker, im, fmt, q, **extra) == meta["bytes"]
    assert _file_size(worker, im, fmt, q + 1, **extra) > budget  # the next quality up does not fit


def test_max_bytes_above_the_jobs_quality_size_keeps_the_jobs_quality(worker):
    im = sample("RGB", SIZE)
    budget = _file_size(worker, im, "JPEG", 80) + 1
    meta = ok(run({"image": {"base64": b64(save(im, "PNG"))},
                   "output": {"format": "JPEG", "quality": 80, "max_bytes": budget}}))["metadata"]
    assert (meta["quality"], meta["max_bytes_met"]) == (80, True)


def test_max_bytes_out_of_reach_returns_the_smallest_file_and_says_so(worker):
    im = sample("RGB", (160, 120), "astronaut.png")
    response = ok(run({"image": {"base64": b64(save(im, "PNG"))}, "output": {"format": "WEBP", "max_bytes": 50}}))
    meta = response["metadata"]
    assert meta["max_bytes_met"] is False and meta["bytes"] > 50
    assert meta["bytes"] <= _file_size(worker, im, "WEBP", 1)
    assert result_image(response).size == im.size


def test_kept_metadata_counts_against_max_bytes(worker):
    data = tagged_jpeg((160, 120))
    plain = ok(run({"image": {"base64": b64(data)}, "output": {"format": "JPEG", "max_bytes": 3000}}))
    kept = ok(run({"image": {"base64": b64(data)}, "output": {"format": "JPEG", "max_bytes": 3000,
                                                               "keep_metadata": True}}))
    assert kept["metadata"]["bytes"] <= 3000 and plain["metadata"]["bytes"] <= 3000
    assert kept["metadata"]["quality"] < plain["metadata"]["quality"]


def test_budget_search_encodes_each_candidate_quality_once_for_all_images(device):
    """Lockstep bisection: images whose next candidate is the same quality share one encoder
    call, and each image's result equals searching it alone."""
    images = torch.cat([to_tensor(sample("RGB", SIZE, name), device) for name in ("coffee.png", "chelsea.png")]
                       + [to_tensor(sample("RGB", SIZE, "coffee.png"), device)])
    calls = []

    def encode_at(batch, quality, indices):
        calls.append((quality, tuple(indices)))
        return encode(batch, "JPEG", quality)

    together = encode_within(images, 85, 2500, encode_at)
    assert calls[0] == (85, (0, 1, 2))
    assert all(len(set(q for q, _ in calls[i:i + 1])) == 1 for i in range(len(calls)))
    assert len({q for q, idx in calls if 0 in idx and 2 in idx}) == len([c for c in calls if 0 in c[1]])
    for i in range(3):
        alone = encode_within(images[i : i + 1], 85, 2500, lambda b, q, _: encode(b, "JPEG", q))[0]
        assert together[i] == alone


def test_a_cached_budget_result_reports_the_same_quality(worker):
    job = {"image": {"base64": b64(save(sample("RGB", SIZE), "PNG"))}, "output": {"format": "JPEG", "max_bytes": 1500}}
    first, second = ok(run(job)), ok(run(job))
    assert second["metadata"]["cached"] is True
    assert {k: second["metadata"][k] for k in ("quality", "max_bytes_met", "bytes")} == \
           {k: first["metadata"][k] for k in ("quality", "max_bytes_met", "bytes")}
    other = ok(run({**job, "output": {"format": "JPEG", "max_bytes": 1400}}))
    assert other["metadata"]["cached"] is False

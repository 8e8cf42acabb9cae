"""Animations as one stack (gpu_worker.codecs.animation, gpu_worker.stages.frames), on frames of
real photos (a camera panning over scikit-image's photos: tests/animations.py).

- the frames read are Pillow's (``seek(i)``, ``convert("RGBA")``), for GIF, WebP and APNG;
- WebP lossless out: every frame equals Pillow's frame-by-frame processing within 1 level;
- GIF out: the frame count, durations and loop are the source's, and the pixels are within the
  quantizer's error, measured on these photos (resize to 50 wide + sharpen, 12 frames, all three
  photos, opaque and with a moving alpha plane): colour of the visible pixels mean 1.3-1.9 levels,
  99th percentile 8-14, largest 77; alpha exactly 0 or 255, split at 128;
- the job path: frames kept for GIF and WebP, the first frame for PNG and JPEG, metadata, the
  frame limit and the frame-pixel budget checked from the header, trim refused, a corrupt
  animation failing alone.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from animations import durations, frame_durations, panning_frames, pillow_frames, write
from PIL import Image

from gpu_worker.codecs import probe
from gpu_worker.codecs.animation import decode_frames, encode_frames
from gpu_worker.codecs.encode import EncodeOptions
from gpu_worker.codecs.encode_more import encode_gif
from gpu_worker.config import Settings
from gpu_worker.jobs import JobRunner
from gpu_worker.operations import apply_reference
from gpu_worker.plan import compile_plan
from gpu_worker.stacking import run_plan_counted

SOURCES = ("GIF", "WEBP", "PNG")  # PNG: APNG
OPS = [{"type": "resize", "params": {"width": 50}}, {"type": "filter", "params": {"name": "sharpen"}}]
#: The GIF quantizer's error allowed on visible pixels' colour (measured: see the docstring).
GIF_MEAN_LEVELS, GIF_P99_LEVELS = 3.0, 20.0


def _gif_source(frames):
    return write([f.convert("P", palette=Image.Palette.ADAPTIVE) if f.mode == "RGB" else f for f in frames],
                 "GIF", loop=0)


def _source(fmt: str, transparent: bool = False, count: int = 8, size=(97, 61), name="astronaut.png") -> bytes:
    frames = panning_frames(count, size, name, transparent)
    return _gif_source(frames) if fmt == "GIF" else write(frames, fmt, loop=0)


def _arrays(images) -> np.ndarray:
    return np.stack([np.asarray(im.convert("RGBA")).astype(np.int16) for im in images])


def _visible(rgba: np.ndarray) -> np.ndarray:
    """RGBA with the colour of fully transparent pixels zeroed (it is not seen, and libwebp's
    animation decoder returns it as 0)."""
    out = rgba.copy()
    out[out[..., 3] == 0] = 0
    return out


def _runner(**overrides) -> JobRunner:
    settings = dataclasses.replace(Settings(), cache_max_bytes=0, **overrides)
    return JobRunner(settings, torch.device("cpu"))


def _job(data: bytes, fmt: str, operations=OPS, **extra) -> dict:
    return {"image": {"base64": base64.b64encode(data).decode()}, "operations": operations,
            "output": {"format": fmt}, **extra}


def _result_bytes(result: dict) -> bytes:
    assert result["success"], result.get("error")
    return base64.b64decode(result["processed_image"].split(",", 1)[1])


@pytest.mark.parametrize("transparent", [False, True], ids=["opaque", "alpha"])
@pytest.mark.parametrize("fmt", SOURCES)
def test_frames_are_pillows(fmt, transparent):
    data = _source(fmt, transparent)
    info = probe(data)
    assert info.frames == 8
    stack, timing = decode_frames(data, info, "cpu")
    assert stack.shape == (8, 4, 61, 97) and stack.dtype == torch.uint8
    assert np.array_equal(stack.permute(0, 2, 3, 1).numpy(), _arrays(pillow_frames(data)))
    assert list(timing.durations) == durations(8)
    assert timing.loop == 0


@pytest.mark.parametrize("fmt", SOURCES)
@pytest.mark.parametrize("transparent", [False, True], ids=["opaque", "alpha"])
def test_webp_lossless_every_frame_equals_pillow(device, fmt, transparent):
    """The stack through the plan (as the job's stages run it) and the lossless WebP writer,
    against Pillow's processing of each frame."""
    operations = OPS + [{"type": "rotate", "params": {"angle": 30}}, {"type": "adjust", "params": {"contrast": 1.3}}]
    data = _source(fmt, transparent)
    stack, timing = decode_frames(data, probe(data), device)
    ran = run_plan_counted(compile_plan(operations), list(stack.unbind(0)))
    assert ran.stacked == [8] * 8  # the frames ran as one stack
    out = encode_frames(torch.stack(ran.outputs), "WEBP", timing, 90, lossless=True)
    got = pillow_frames(out)
    expected = [apply_reference(frame, operations) for frame in pillow_frames(data)]
    assert len(got) == 8 and frame_durations(out) == durations(8)
    diff = np.abs(_visible(_arrays(got)) - _visible(_arrays(expected)))
    assert diff.max() <= 1, f"{diff.max()} levels from Pillow"


@pytest.mark.parametrize("name", ["astronaut.png", "coffee.png"])
@pytest.mark.parametrize("transparent", [False, True], ids=["opaque", "alpha"])
def test_gif_job_keeps_frames_durations_loop(name, transparent):
    data = _source("GIF", transparent, count=12, size=(160, 100), name=name)
    result = _runner().run(_job(data, "GIF", analysis="both"))
    out = _result_bytes(result)
    meta = result["metadata"]
    assert (meta["frames"], meta["animation"], meta["source"]["frames"]) == (12, "kept", 12)
    assert (meta["width"], meta["height"], meta["format"]) == (50, 31, "GIF")
    assert meta["stacked"] == 12
    assert result["analysis"]["source"]["width"] == 160 and result["analysis"]["result"]["width"] == 50
    with Image.open(io.BytesIO(out)) as im:
        assert (im.format, im.n_frames, im.info.get("loop")) == ("GIF", 12, 0)
    assert frame_durations(out) == durations(12)
    got = _arrays(pillow_frames(out))
    expected = _arrays(apply_reference(frame, OPS) for frame in pillow_frames(data))
    shown = expected[..., 3] >= 128
    assert np.array_equal(got[..., 3], np.where(shown, 255, 0)), "GIF alpha is the reference's, split at 128"
    colour = np.abs(got[..., :3] - expected[..., :3])[shown]
    assert colour.mean() <= GIF_MEAN_LEVELS and np.percentile(colour, 99) <= GIF_P99_LEVELS, \
        f"mean {colour.mean():.2f}, p99 {np.percentile(colour, 99)}, max {colour.max()}"


@pytest.mark.parametrize("fmt", SOURCES)
def test_webp_job_keeps_frames_durations_loop(fmt):
    data = write(panning_frames(6, transparent=True), fmt, loop=3) if fmt != "GIF" else \
        write([f.convert("P") for f in panning_frames(6)], "GIF", loop=3)
    result = _runner().run(_job(data, "WEBP"))
    out = _result_bytes(result)
    assert (result["metadata"]["frames"], result["metadata"]["animation"]) == (6, "kept")
    with Image.open(io.BytesIO(out)) as im:
        assert (im.format, im.n_frames, im.info.get("loop"), im.size) == ("WEBP", 6, 3, (50, 31))
    assert frame_durations(out) == durations(6)


def test_gif_without_loop_plays_once_in_webp_and_gif():
    data = write([f.convert("P") for f in panning_frames(3)], "GIF")  # no NETSCAPE loop extension
    for fmt, loop in (("GIF", None), ("WEBP", 1)):
        with Image.open(io.BytesIO(_result_bytes(_runner().run(_job(data, fmt))))) as im:
            assert im.n_frames == 3 and im.info.get("loop") == loop


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_other_formats_get_the_first_frame(fmt):
    data = _source("WEBP")
    result = _runner().run(_job(data, fmt))
    meta = result["metadata"]
    assert (meta["frames"], meta["animation"], meta["source"]["frames"]) == (1, "first frame", 8)
    with Image.open(io.BytesIO(_result_bytes(result))) as im:
        assert getattr(im, "n_frames", 1) == 1
        got = np.asarray(im.convert("RGB")).astype(np.int16)
    first = Image.open(io.BytesIO(data)).convert("RGB")
    expected = np.asarray(apply_reference(first, OPS)).astype(np.int16)
    assert np.abs(got - expected).max() <= (1 if fmt == "PNG" else 40)


def test_frame_limit_from_the_header_fails_only_its_item():
    """An APNG whose header claims 1,000 frames (it holds 3) is refused by MAX_ANIMATION_FRAMES,
    so from the header: decoding it would fail on the missing frames instead."""
    data = _apng_claiming(write(panning_frames(3), "PNG"), 1000)
    assert probe(data).frames == 1000
    still = write(panning_frames(1), "PNG")
    result = _runner(max_animation_frames=256).run(
        {"images": [{"image": {"base64": base64.b64encode(d).decode()}} for d in (data, still)],
         "operations": OPS, "output": {"format": "WEBP"}})
    first, second = result["results"]
    assert not first["success"] and "MAX_ANIMATION_FRAMES=256" in first["error"] and "1,000 frames" in first["error"]
    assert first["error"].startswith("images[0]: ")
    assert second["success"] and second["metadata"]["frames"] == 1
    # The same file to PNG: only the first frame is wanted, so no frame limit applies.
    assert _runner(max_animation_frames=256).run(_job(data, "PNG"))["success"]


def test_frames_count_against_the_pixel_limits():
    data = _source("GIF")  # 8 frames of 97x61 = 47,336 pixels
    over = _runner(max_decoded_pixels=40_000).run(_job(data, "GIF"))
    assert not over["success"] and "MAX_DECODED_PIXELS=40,000" in over["error"] and "8 frames" in over["error"]
    assert _runner(max_decoded_pixels=47_336).run(_job(data, "GIF"))["success"]
    assert _runner(max_decoded_pixels=40_000).run(_job(data, "JPEG"))["success"]  # one frame decoded
    batch = _runner(max_job_pixels=50_000).run({"images": [_job(data, "GIF"), _job(data, "PNG")]})
    assert not batch["success"] and "MAX_JOB_PIXELS" in batch["error"] and "53,253" in batch["error"]


def test_trim_is_refused_for_a_kept_animation():
    data = _source("GIF")
    result = _runner().run(_job(data, "GIF", operations=[{"type": "trim"}]))
    assert not result["success"] and "trim" in result["error"] and result["error"].startswith("operations")
    assert _runner().run(_job(data, "PNG", operations=[{"type": "trim"}]))["success"]


def test_a_corrupt_animation_fails_alone():
    good = _source("GIF")
    broken = good[: len(good) * 2 // 3]  # the later frames cut off
    result = _runner().run({"images": [_job(broken, "GIF"), _job(good, "GIF")]})
    first, second = result["results"]
    assert not first["success"] and first["error"].startswith("images[0]: ") and "GIF" in first["error"]
    assert "internal error" not in first["error"]
    assert second["success"] and second["metadata"]["frames"] == 8


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_still_gif_output(mode):
    frame = panning_frames(1, transparent=mode == "RGBA")[0].convert(mode)
    tensor = torch.from_numpy(np.asarray(frame).copy().reshape(61, 97, -1)).permute(2, 0, 1)
    with Image.open(io.BytesIO(encode_gif(tensor.unsqueeze(0), EncodeOptions())[0])) as im:
        got = _arrays([im])[0]
    expected = _arrays([frame])[0]
    if mode == "L":
        assert np.array_equal(got, expected)  # a grey palette holds every level
    else:
        shown = expected[..., 3] >= 128
        assert np.array_equal(got[..., 3], np.where(shown, 255, 0))
        assert np.abs(got[..., :3] - expected[..., :3])[shown].mean() <= GIF_MEAN_LEVELS


def _apng_claiming(data: bytes, frames: int) -> bytes:
    """``data`` (an APNG) with its acTL chunk's frame count set to ``frames`` (CRC fixed)."""
    pos = data.index(b"acTL") - 4
    body = struct.pack(">II", frames, struct.unpack(">I", data[pos + 12 : pos + 16])[0])
    chunk = struct.pack(">I", 8) + b"acTL" + body + struct.pack(">I", zlib.crc32(b"acTL" + body))
    return data[:pos] + chunk + data[pos + 20 :]


def test_a_kept_webp_animation_keeps_metadata_and_profile_and_meets_max_bytes():
    """An animated WebP out carries the source's EXIF (orientation 1), XMP and ICC profile when
    asked, as a still WebP does, and ``max_bytes`` bisects the quality of the whole animation."""
    profile = (Path(__file__).parent / "data" / "icc" / "compatibleWithAdobeRGB1998.icc").read_bytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turned
    exif[0x010F] = "Camera maker"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    frames = panning_frames(6, (120, 80), "coffee.png")
    source = write(frames, "WEBP", loop=0, icc_profile=profile, exif=exif.tobytes(), xmp=xmp)
    output = {"format": "WEBP", "quality": 90, "keep_metadata": True, "icc": "keep"}
    result = _runner().run({**_job(source, "WEBP"), "output": output})
    out = _result_bytes(result)
    assert result["metadata"]["frames"] == 6 and sorted(result["metadata"]["kept_metadata"]) == ["exif", "icc", "xmp"]
    with Image.open(io.BytesIO(out)) as im:
        assert im.n_frames == 6
        assert im.info["icc_profile"] == profile
        assert im.getexif()[0x010F] == "Camera maker" and im.getexif().get(0x0112, 1) == 1
        assert b"xmpmeta" in im.info["xmp"]

    unlimited = len(out)
    budget = unlimited * 2 // 3
    fitted = _runner().run({**_job(source, "WEBP"), "output": {**output, "max_bytes": budget}})
    data = _result_bytes(fitted)
    assert fitted["metadata"]["max_bytes_met"] is True and len(data) <= budget
    assert fitted["metadata"]["quality"] < 90
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 6 and im.info["icc_profile"] == profile  # the profile counted in the budget


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_frames_counts_what_was_written_when_equal_frames_merge(fmt):
    """The writers merge a frame equal to the one before it (adding its duration): ``frames``
    says how many the file holds, and the animation's total duration is kept."""
    moving = [frame.convert("RGB") for frame in panning_frames(3, (64, 48), "chelsea.png")]
    first, second = moving[0].copy(), moving[0].copy()  # differ in one pixel, until posterized
    first.putpixel((0, 0), (101, 101, 101))
    second.putpixel((0, 0), (100, 100, 100))
    source = write([first, second, moving[1], moving[2]], "WEBP", loop=0, duration=[100, 100, 100, 100])
    result = _runner().run(_job(source, fmt, operations=[{"type": "posterize", "params": {"bits": 2}}]))
    out = _result_bytes(result)
    with Image.open(io.BytesIO(out)) as im:
        written = im.n_frames
    assert result["metadata"]["frames"] == written == 3
    assert result["metadata"]["source"]["frames"] == 4
    assert sum(frame_durations(out)) == 400

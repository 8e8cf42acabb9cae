"""The RunPod handler end to end on real photos: every op and output format, the tutorial's output
and error shapes, analysis, base64 spellings, batches, the result cache and RGBA -> JPEG.

Every job goes through ``gpu_worker.handler.run_sync`` (the async handler on an event loop of its
own) with a runtime built for the test on the CPU, and on CUDA where present. Sources are small
crops of scikit-image's photos saved as PNG, so the decoded source is exactly the PIL image the
Pillow reference (`gpu_worker.operations.apply_reference`) is given; with PNG output the result
is compared pixel by pixel.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import re

import numpy as np
import pytest
import torch
import torchvision.io as tvio
from PIL import Image

import gpu_worker.runtime as runtime_module
from gpu_worker.operations import apply_reference
from conftest import cuda_only
from gpu_worker.config import Settings
from gpu_worker.formats import OUTPUT_FORMATS
from gpu_worker.handler import run_sync
from gpu_worker.runtime import build_runtime, set_runtime
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample
from tolerances import PILLOW_ATOL
from corpus import png as png_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest

SIZE = (97, 61)
FORMATS = tuple(OUTPUT_FORMATS)
#: A data URI of any output format: (MIME type, base64). tests/test_formats.py checks the table's
#: MIME types against Pillow's.
DATA_URI = re.compile(rf"^data:({'|'.join(re.escape(f.mime) for f in OUTPUT_FORMATS.values())});base64,"
                      r"([A-Za-z0-9+/]+={0,2})$")
#: A lossy output against the exact result may be this many dB worse than Pillow's own encoding
#: of the exact result at the same quality (on the CPU both use libjpeg-turbo / libwebp: equal).
LOSSY_PSNR_SLACK_DB = 1.0


# ---------------------------------------------------------------------------------------------
# helpers




def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def source(mode: str = "RGB", size=SIZE, name: str = "astronaut.png") -> tuple[Image.Image, str]:
    """A real photo crop and its PNG as base64."""
    im = sample(mode, size, name)
    return im, b64(png_bytes(im))


def run(job_input) -> dict:
    return run_sync({"id": "test-job", "input": job_input})


def output_image(response: dict) -> tuple[str, Image.Image]:
    """(MIME type, decoded image) of a successful response's data URI."""
    match = DATA_URI.match(response["processed_image"])
    assert match, response["processed_image"][:80]
    im = Image.open(io.BytesIO(base64.b64decode(match.group(2))))
    im.load()
    return match.group(1), im


def output_bytes(response: dict) -> bytes:
    return base64.b64decode(response["processed_image"].split(",", 1)[1])


def assert_ok(response: dict) -> dict:
    assert response.get("success") is True, response.get("error", response)
    return response


def assert_error_shape(response: dict) -> str:
    assert set(response) == {"success", "error"}, response
    assert response["success"] is False
    assert isinstance(response["error"], str) and response["error"].strip()
    return response["error"]


def flatten_on_white(im: Image.Image) -> Image.Image:
    """What a JPEG of an image with alpha should show: the image composited on white."""
    if im.mode == "LA":
        return flatten_on_white(im.convert("RGBA")).convert("L")
    if im.mode != "RGBA":
        return im
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, im).convert("RGB")


def as_stored(im: Image.Image, fmt: str) -> Image.Image:
    """``im`` as a ``fmt`` file holds it (the formats table's ``stored_as``: grey as RGB in WebP;
    an alpha channel the format drops is flattened onto white, as the table's ``alpha`` says)."""
    stored = OUTPUT_FORMATS[fmt].stored_as.get(im.mode, im.mode)
    if "A" in im.mode and "A" not in stored:
        im = flatten_on_white(im)
    return im.convert(stored)


def encode_with_pillow(im: Image.Image, fmt: str, quality: int) -> bytes:
    """Pillow's own encoding of ``im`` as the worker stores it (`as_stored`)."""
    im = as_stored(im, fmt)
    buf = io.BytesIO()
    im.save(buf, fmt, quality=quality)
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def comparable(expected: Image.Image, got: Image.Image, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Both images as arrays in the mode the output format stores ``expected`` in."""
    expected = as_stored(expected, fmt)
    return pil_array(expected), pil_array(got.convert(expected.mode))


# ---------------------------------------------------------------------------------------------
# fixtures




# ---------------------------------------------------------------------------------------------
# every op, every format

RESIZE_SIZINGS = {
    "width": {"width": 40},
    "height": {"height": 33},
    "box": {"width": 50, "height": 20},  # thumbnail sizing: fits inside, aspect kept
    "box-larger": {"width": 500, "height": 400},  # thumbnail never enlarges: same size
    "exact": {"width": 70, "height": 90, "maintain_aspect": False},
    "upscale-width": {"width": 150},
}
OPS: dict[str, tuple[dict, str]] = {}
for _sizing, _params in RESIZE_SIZINGS.items():
    for _filter in ("nearest", "bilinear", "bicubic", "lanczos"):
        OPS[f"resize-{_sizing}-{_filter}"] = ({"type": "resize", "params": {**_params, "filter": _filter}}, "resize")
OPS["resize-default-filter"] = ({"type": "resize", "params": {"width": 41}}, "resize")
OPS["crop-inside"] = ({"type": "crop", "params": {"left": 3, "top": 4, "right": 50, "bottom": 41}}, "crop")
OPS["crop-past-edges"] = ({"type": "crop", "params": {"left": -5, "top": 10, "right": 120, "bottom": 90}}, "crop")
OPS["crop-defaults"] = ({"type": "crop", "params": {"left": 20}}, "crop")
for _name in ("blur", "contour", "detail", "edge_enhance", "edge_enhance_more", "emboss", "find_edges", "sharpen",
              "smooth", "smooth_more", "grayscale"):
    OPS[f"filter-{_name}"] = ({"type": "filter", "params": {"name": _name}}, "grayscale" if _name == "grayscale" else "filter")
OPS["adjust-brightness"] = ({"type": "adjust", "params": {"brightness": 1.3}}, "adjust")
OPS["adjust-contrast"] = ({"type": "adjust", "params": {"contrast": 0.6}}, "adjust")
OPS["adjust-saturation"] = ({"type": "adjust", "params": {"saturation": 1.8}}, "adjust")
OPS["adjust-all"] = ({"type": "adjust", "params": {"brightness": 0.8, "contrast": 1.4, "saturation": 0.3}}, "adjust")
OPS["adjust-zero"] = ({"type": "adjust", "params": {"brightness": 0.0}}, "adjust")


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
@pytest.mark.parametrize("case", sorted(OPS))
def test_png_output_matches_pillow_reference(worker, case, mode):
    op, family = OPS[case]
    image, data = source(mode, name=COLOR_PHOTOS[sorted(OPS).index(case) % 3])
    response = assert_ok(run({"image": {"base64": data}, "operations": [op], "output": {"format": "PNG"}}))
    subtype, out = output_image(response)
    expected = apply_reference(image, [op])
    assert subtype == "image/png" and out.format == "PNG"
    assert (response["metadata"]["width"], response["metadata"]["height"]) == out.size == expected.size
    assert out.mode == expected.mode
    assert max_abs_diff(pil_array(out), pil_array(expected)) <= PILLOW_ATOL[family], case


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("case", sorted(OPS))
def test_lossy_outputs_decode_to_the_reference_size_and_pixels(worker, case, fmt):
    op, _ = OPS[case]
    image, data = source("RGB", name="coffee.png")
    response = assert_ok(run({"image": {"base64": data}, "operations": [op], "output": {"format": fmt.lower()}}))
    subtype, out = output_image(response)
    meta = response["metadata"]
    assert subtype == OUTPUT_FORMATS[fmt].mime and out.format == fmt and meta["format"] == fmt
    expected = apply_reference(image, [op])
    assert (meta["width"], meta["height"]) == out.size == expected.size
    assert meta["bytes"] == len(output_bytes(response))
    pillow_lossy = Image.open(io.BytesIO(encode_with_pillow(expected, fmt, 85)))
    assert psnr(*comparable(expected, out, fmt)) >= psnr(*comparable(expected, pillow_lossy, fmt)) - LOSSY_PSNR_SLACK_DB


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_quality_is_applied(worker, fmt):
    image, data = source("RGB", (257, 193), "astronaut.png")
    sizes = {}
    for quality in (10, 95):
        response = assert_ok(run({"image": {"base64": data}, "output": {"format": fmt, "quality": quality}}))
        _, out = output_image(response)
        pillow_lossy = Image.open(io.BytesIO(encode_with_pillow(image, fmt, quality)))
        assert psnr(*comparable(image, out, fmt)) >= psnr(*comparable(image, pillow_lossy, fmt)) - LOSSY_PSNR_SLACK_DB
        sizes[quality] = response["metadata"]["bytes"]
    assert sizes[10] < sizes[95] / 2


def test_chain_of_every_op_kind_matches_pillow(worker):
    ops = [
        {"type": "crop", "params": {"left": 5, "top": 3, "right": 90, "bottom": 58}},
        {"type": "resize", "params": {"width": 60, "height": 60}},
        {"type": "filter", "params": {"name": "sharpen"}},
        {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2, "saturation": 0.9}},
        {"type": "filter", "params": {"name": "grayscale"}},
    ]
    image, data = source("RGB", name="chelsea.png")
    _, out = output_image(assert_ok(run({"image": {"base64": data}, "operations": ops, "output": {"format": "PNG"}})))
    expected = apply_reference(image, ops)
    assert out.mode == "L" and out.size == expected.size
    assert max_abs_diff(pil_array(out), pil_array(expected)) <= len(ops)  # at most 1 level per op


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_every_source_mode_to_every_format(worker, mode, fmt):
    image = sample("RGBA" if mode == "LA" else mode, SIZE, "rocket.jpg")
    if mode == "LA":
        image = image.convert("LA")
    response = assert_ok(run({"image": {"base64": b64(png_bytes(image))}, "output": {"format": fmt}}))
    _, out = output_image(response)
    assert out.size == SIZE == (response["metadata"]["width"], response["metadata"]["height"])
    expected, got = comparable(image, out, fmt)
    if fmt == "PNG":
        assert out.mode == image.mode and np.array_equal(expected, got)
    elif fmt == "GIF" and "A" in image.mode:  # one bit of alpha (the table's `alpha`): shown where >= 128
        shown = expected[..., -1] >= 128
        assert np.array_equal(got[..., -1] == 255, shown) and np.array_equal(got[..., -1] == 0, ~shown)
        assert psnr(expected[shown][:, :-1], got[shown][:, :-1]) >= 30
    else:
        assert psnr(expected, got) >= 30


# ---------------------------------------------------------------------------------------------
# response shapes


def test_tutorial_output_shape(worker):
    _, data = source()
    response = run({"image": {"base64": data}, "operations": [{"type": "resize", "params": {"width": 48}}],
                    "output": {"format": "JPEG", "quality": 80}})
    assert_ok(response)
    assert set(response) == {"success", "processed_image", "metadata"}  # no analysis unless asked
    assert response["processed_image"].startswith("data:image/jpeg;base64,")
    meta = response["metadata"]
    assert meta["width"] == 48 and meta["height"] == int(61 * 48 / 97)
    assert meta["format"] == "JPEG" and meta["quality"] == 80
    assert meta["device"] == str(worker.device)
    assert meta["source"] == {"format": "PNG", "width": 97, "height": 61, "mode": "RGB",
                              "bytes": len(base64.b64decode(data)), "exif": False, "gps": False, "xmp": False,
                              "iptc": False, "icc": None, "frames": 1}
    assert meta["kept_metadata"] == [] and "max_bytes_met" not in meta and "speed" not in meta
    timings = meta["timings_ms"]
    for key in ("fetch", "decode", "ops", "encode", "total"):
        assert isinstance(timings[key], (int, float)) and timings[key] >= 0, key
    assert timings["total"] >= max(timings[k] for k in ("decode", "ops", "encode"))
    # JSON-serialisable as the SDK will send it
    import json

    assert json.loads(json.dumps(response)) == response


def test_default_output_is_jpeg_quality_85(worker):
    _, data = source()
    response = assert_ok(run({"image": {"base64": data}}))
    assert response["processed_image"].startswith("data:image/jpeg;base64,")
    assert response["metadata"]["format"] == "JPEG" and response["metadata"]["quality"] == 85


@pytest.mark.parametrize("spelling, fmt", [("jpg", "JPEG"), ("Png", "PNG"), ("webp", "WEBP"), ("JPEG", "JPEG")])
def test_format_spellings(worker, spelling, fmt):
    _, data = source()
    response = assert_ok(run({"image": {"base64": data}, "output": {"format": spelling}}))
    assert response["metadata"]["format"] == fmt
    assert response["processed_image"].startswith(f"data:{OUTPUT_FORMATS[fmt].mime};base64,")


@pytest.mark.parametrize(
    "job_input",
    [
        {"image": {"base64": "bm90IGFuIGltYWdl"}},  # "not an image"
        {"image": {"base64": "QUJD"}, "operations": [{"type": "nope"}]},
        {"operations": []},
        {},
        None,
        "a string",
    ],
    ids=["not-an-image", "unknown-op", "no-image", "empty", "null", "string"],
)
def test_error_shape_is_success_false_and_a_message_only(worker, job_input):
    assert_error_shape(run(job_input))


@pytest.mark.parametrize("job", [None, [], "job", 3, {"id": "x"}], ids=["null", "list", "str", "int", "no-input"])
def test_malformed_job_envelope_is_an_error_not_an_exception(worker, job):
    assert_error_shape(run_sync(job))


# ---------------------------------------------------------------------------------------------
# analysis


def numpy_analysis(arr: np.ndarray) -> tuple[dict[str, list[int]], float]:
    """Histograms and the tutorial's brightness (601 luma mean, alpha ignored) with numpy."""
    channels = arr.shape[2]
    names = {1: "l", 2: "la", 3: "rgb", 4: "rgba"}[channels]
    hists = {name: np.bincount(arr[:, :, i].ravel(), minlength=256).tolist() for i, name in enumerate(names)}
    if channels >= 3:
        luma = arr[:, :, 0] * 0.299 + arr[:, :, 1] * 0.587 + arr[:, :, 2] * 0.114
    else:
        luma = arr[:, :, 0].astype(np.float64)
    return hists, float(luma.mean())


def check_analysis(stats: dict, arr: np.ndarray, fmt: str) -> None:
    h, w, c = arr.shape
    assert stats["size"] == [w, h] and stats["width"] == w and stats["height"] == h
    assert stats["mode"] == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    assert stats["format"] == fmt
    hists, brightness = numpy_analysis(arr)
    assert set(stats["histograms"]) == set(hists)
    for name, hist in stats["histograms"].items():
        assert len(hist) == 256 and sum(hist) == w * h, name
        assert hist == hists[name], name
    assert stats["brightness"] == pytest.approx(brightness, abs=1e-4)


@pytest.mark.parametrize("analysis", ["source", "result", "both", True, False])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_analysis_matches_numpy_on_the_same_pixels(worker, analysis, mode):
    image, data = source(mode, name="chelsea.png")
    ops = [{"type": "resize", "params": {"width": 45}}, {"type": "filter", "params": {"name": "smooth"}}]
    response = assert_ok(run({"image": {"base64": data}, "operations": ops, "output": {"format": "PNG"},
                              "analysis": analysis}))
    targets = {"source": {"source"}, "result": {"result"}, "both": {"source", "result"}, True: {"result"},
               False: set()}[analysis]
    assert set(response.get("analysis", {})) == targets
    if "source" in targets:
        check_analysis(response["analysis"]["source"], pil_array(image), "PNG")
    if "result" in targets:
        _, out = output_image(response)  # PNG is lossless: the pixels analysed are the ones returned
        check_analysis(response["analysis"]["result"], pil_array(out), "PNG")


def test_source_analysis_of_a_jpeg_names_jpeg_and_result_names_the_output_format(worker):
    im = sample("RGB", SIZE, "coffee.png")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    response = assert_ok(run({"image": {"base64": b64(buf.getvalue())}, "output": {"format": "WEBP"},
                              "analysis": "both"}))
    if worker.device.type == "cuda":  # the worker decodes JPEGs with nvjpeg there
        data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        decoded = tvio.decode_jpeg(data, device=worker.device).permute(1, 2, 0).cpu().numpy()
    else:  # libjpeg-turbo, as Pillow
        decoded = pil_array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    check_analysis(response["analysis"]["source"], decoded, "JPEG")
    assert response["analysis"]["result"]["format"] == "WEBP"


# ---------------------------------------------------------------------------------------------
# base64 spellings


@pytest.mark.parametrize(
    "spell",
    [
        lambda s: s,
        lambda s: "data:image/png;base64," + s,
        lambda s: "data:image/jpeg;base64," + s,  # the mime type is only a label
        lambda s: "DATA:image/png;BASE64," + s,
        lambda s: "\n".join(s[i : i + 76] for i in range(0, len(s), 76)),  # MIME line breaks
        lambda s: s.rstrip("="),  # padding left out
        lambda s: s.replace("+", "-").replace("/", "_"),  # URL-safe alphabet
    ],
    ids=["plain", "data-uri", "data-uri-other-mime", "data-uri-upper", "line-breaks", "unpadded", "urlsafe"],
)
def test_base64_spellings_give_the_same_result(worker, spell):
    _, data = source("RGB", name="rocket.jpg")
    job = {"operations": [{"type": "filter", "params": {"name": "emboss"}}], "output": {"format": "PNG"}}
    plain = assert_ok(run({**job, "image": {"base64": data}}))
    spelled = assert_ok(run({**job, "image": {"base64": spell(data)}}))
    assert output_bytes(spelled) == output_bytes(plain)


# ---------------------------------------------------------------------------------------------
# batches


def test_batch_results_in_order_defaults_overrides_and_one_bad_item(worker):
    photos = {name: source("RGB", SIZE, name) for name in COLOR_PHOTOS}
    tall_image, tall = source("RGB", (61, 97), "chelsea.png")
    crop = [{"type": "crop", "params": {"left": 2, "top": 5, "right": 40, "bottom": 70}}]
    job = {
        "operations": [{"type": "resize", "params": {"width": 40}}],
        "output": {"format": "PNG"},
        "images": [
            {"image": {"base64": photos["astronaut.png"][1]}},
            {"image": {"base64": photos["coffee.png"][1]}},
            {"image": {"base64": tall}, "operations": crop},  # its own operations
            {"image": {"base64": "this is !! not base64"}},  # fails alone
            {"image": {"base64": photos["rocket.jpg"][1]}, "output": {"format": "JPEG"}},  # its own output
            {"image": {"base64": photos["chelsea.png"][1]}, "operations": [{"type": "bogus"}]},  # fails alone
        ],
    }
    response = assert_ok(run(job))
    assert set(response) == {"success", "results", "metadata"}
    results = response["results"]
    assert len(results) == 6
    assert response["metadata"]["count"] == 6 and response["metadata"]["failed"] == 2
    assert response["metadata"]["device"] == str(worker.device)
    assert {"decode", "ops", "encode", "total"} <= set(response["metadata"]["timings_ms"])

    for index, name in ((0, "astronaut.png"), (1, "coffee.png")):
        _, out = output_image(assert_ok(results[index]))
        expected = apply_reference(photos[name][0], job["operations"])
        assert out.size == expected.size == (40, 25)
        assert max_abs_diff(pil_array(out), pil_array(expected)) <= PILLOW_ATOL["resize"]
    _, out = output_image(assert_ok(results[2]))
    assert np.array_equal(pil_array(out), pil_array(apply_reference(tall_image, crop)))
    assert "images[3]" in assert_error_shape(results[3]) and "base64" in results[3]["error"]
    subtype, out = output_image(assert_ok(results[4]))
    assert subtype == "image/jpeg" and out.size == (40, 25) and results[4]["metadata"]["format"] == "JPEG"
    error = assert_error_shape(results[5])
    assert "images[5]" in error and "bogus" in error

    # Same shape and same operations: one stacked kernel call of three images.
    assert [results[i]["metadata"]["stacked"] for i in (0, 1, 2, 4)] == [3, 3, 1, 3]


def test_batch_items_equal_the_same_jobs_run_alone(worker):
    items = [source("RGB", SIZE, name)[1] for name in COLOR_PHOTOS]
    ops = [{"type": "resize", "params": {"width": 30, "filter": "bicubic"}}, {"type": "filter", "params": {"name": "detail"}}]
    batch = assert_ok(run({"operations": ops, "output": {"format": "PNG"}, "analysis": "result",
                           "images": [{"image": {"base64": data}} for data in items]}))
    assert all(r["metadata"]["stacked"] == len(items) for r in batch["results"])
    set_runtime(build_runtime(worker.settings))  # fresh cache: the single jobs really run
    for data, result in zip(items, batch["results"]):
        alone = assert_ok(run({"image": {"base64": data}, "operations": ops, "output": {"format": "PNG"},
                               "analysis": "result"}))
        assert output_bytes(alone) == output_bytes(result)
        assert alone["analysis"] == result["analysis"]
        assert alone["metadata"]["stacked"] == 1


def test_batch_level_analysis_default_and_item_override(worker):
    _, data = source()
    response = assert_ok(run({"analysis": "source", "images": [
        {"image": {"base64": data}},
        {"image": {"base64": data}, "analysis": False},
    ]}))
    assert set(response["results"][0]["analysis"]) == {"source"}
    assert "analysis" not in response["results"][1]


def test_batch_where_every_item_fails_still_answers_per_item(worker):
    response = run({"images": [{"image": {"base64": "@@"}}, 7, {"image": {"url": "ftp://example.com/x.png"}}]})
    assert response["success"] is True and response["metadata"]["failed"] == 3
    for i, result in enumerate(response["results"]):
        assert f"images[{i}]" in assert_error_shape(result)


# ---------------------------------------------------------------------------------------------
# cache


def test_second_identical_job_is_a_cache_hit_with_identical_bytes(worker):
    _, data = source("RGB", name="coffee.png")
    job = {"image": {"base64": data}, "operations": [{"type": "resize", "params": {"width": 50}}],
           "output": {"format": "WEBP", "quality": 70}, "analysis": "both"}
    first = assert_ok(run(job))
    second = assert_ok(run(job))
    assert first["metadata"]["cached"] is False and second["metadata"]["cached"] is True
    assert second["processed_image"] == first["processed_image"]
    assert second["analysis"] == first["analysis"]
    for key in ("width", "height", "format", "quality", "bytes", "source"):
        assert second["metadata"][key] == first["metadata"][key], key

    # The key is the source bytes, not their spelling: a data URI of the same bytes hits too.
    spelled = assert_ok(run({**job, "image": {"base64": "data:image/png;base64," + data}}))
    assert spelled["metadata"]["cached"] is True

    # Anything that changes the result misses.
    for changed in (
        {**job, "output": {"format": "WEBP", "quality": 71}},
        {**job, "output": {"format": "PNG", "quality": 70}},
        {**job, "operations": [{"type": "resize", "params": {"width": 51}}]},
        {**job, "operations": [{"type": "resize", "params": {"width": 50, "filter": "nearest"}}]},
        {**job, "analysis": "source"},
        {**job, "image": {"base64": source("RGB", name="chelsea.png")[1]}},
    ):
        response = assert_ok(run(changed))
        assert response["metadata"]["cached"] is False, changed


def test_default_params_spelled_out_share_the_cache_entry(worker):
    _, data = source()
    first = assert_ok(run({"image": {"base64": data}, "operations": [{"type": "resize", "params": {"width": 50}}]}))
    second = assert_ok(run({"image": {"base64": data}, "operations": [
        {"type": "resize", "params": {"width": 50, "filter": "lanczos", "maintain_aspect": True}}],
        "output": {"format": "jpg", "quality": 85}}))
    assert second["metadata"]["cached"] is True
    assert second["processed_image"] == first["processed_image"]


def test_cache_disabled_never_reports_a_hit(worker):
    set_runtime(build_runtime(dataclasses.replace(worker.settings, cache_max_bytes=0)))
    _, data = source()
    job = {"image": {"base64": data}}
    assert [assert_ok(run(job))["metadata"]["cached"] for _ in range(3)] == [False, False, False]


# ---------------------------------------------------------------------------------------------
# alpha to JPEG (the tutorial's image_to_base64 crashed here)


@pytest.mark.parametrize("kind", ["RGBA", "LA", "P-transparent"])
def test_jpeg_output_of_a_source_with_alpha_is_flattened_on_white(worker, kind):
    rgba = sample("RGBA", SIZE, "chelsea.png")
    im = {"RGBA": rgba, "LA": rgba.convert("LA"), "P-transparent": rgba.quantize(64)}[kind]
    response = assert_ok(run({"image": {"base64": b64(png_bytes(im))}, "output": {"format": "JPEG", "quality": 95}}))
    _, out = output_image(response)
    reference = im.convert("RGBA") if kind == "P-transparent" else im
    expected = flatten_on_white(reference)
    assert out.mode == expected.mode and out.size == SIZE
    assert psnr(pil_array(expected), pil_array(out)) >= 30
    # Fully transparent pixels come out white, not black (or whatever colour hides under alpha 0).
    alpha = np.asarray(reference.getchannel("A"))
    assert (alpha == 0).sum() > 100
    assert np.asarray(out.convert("L"))[alpha == 0].mean() > 240


@cuda_only
@pytest.mark.cuda
def test_cuda_with_the_libjpeg_codec_returns_the_cpu_workers_bytes():
    """CUDA_JPEG_CODEC=libjpeg: JPEG in and out through libjpeg-turbo on the host, the operations
    on the GPU (bit-identical to the CPU's), so the files equal the CPU worker's byte for byte."""
    jpegs = []
    for name in COLOR_PHOTOS:
        buf = io.BytesIO()
        sample("RGB", (301, 203), name).save(buf, "JPEG", quality=90)
        jpegs.append(b64(buf.getvalue()))
    job = {"images": [{"image": {"base64": data}} for data in jpegs], "analysis": "source",
           "operations": [{"type": "resize", "params": {"width": 120}}, {"type": "filter", "params": {"name": "sharpen"}},
                          {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2}}]}
    previous = runtime_module._runtime
    answers = {}
    try:
        for device, codec in (("cpu", "nvjpeg"), ("cuda", "libjpeg")):
            settings = dataclasses.replace(Settings(), gpu_worker_device=device, cuda_jpeg_codec=codec)
            set_runtime(build_runtime(settings))
            answers[device] = assert_ok(run(job))
    finally:
        set_runtime(previous)
    assert answers["cuda"]["metadata"]["device"] == "cuda"
    for on_cpu, on_cuda in zip(answers["cpu"]["results"], answers["cuda"]["results"]):
        assert on_cuda["processed_image"] == on_cpu["processed_image"]
        assert on_cuda["analysis"] == on_cpu["analysis"]


@cuda_only
@pytest.mark.cuda
def test_cuda_with_the_hybrid_codec_encodes_nvjpegs_pixels_with_libjpeg():
    """CUDA_JPEG_CODEC=hybrid: nvjpeg decodes, the operations run on the GPU, and libjpeg-turbo
    encodes on host threads (chunks of 2, so encodes run behind the next chunk): each file is
    libjpeg-turbo's encoding of the pixels the nvjpeg codec gives as PNG."""
    jpegs = []
    for name in COLOR_PHOTOS:
        buf = io.BytesIO()
        sample("RGB", (301, 203), name).save(buf, "JPEG", quality=90)
        jpegs.append(b64(buf.getvalue()))
    ops = [{"type": "resize", "params": {"width": 120}}, {"type": "filter", "params": {"name": "sharpen"}}]
    previous = runtime_module._runtime
    answers = {}
    try:
        for codec, fmt in (("nvjpeg", "PNG"), ("hybrid", "JPEG")):
            settings = dataclasses.replace(Settings(), gpu_worker_device="cuda", cuda_jpeg_codec=codec, chunk_images=2)
            set_runtime(build_runtime(settings))
            answers[codec] = assert_ok(run({"images": [{"image": {"base64": data}} for data in jpegs],
                                            "operations": ops, "output": {"format": fmt, "quality": 85}}))
    finally:
        set_runtime(previous)
    for as_png, hybrid in zip(answers["nvjpeg"]["results"], answers["hybrid"]["results"]):
        pixels = tvio.decode_png(torch.frombuffer(bytearray(output_bytes(as_png)), dtype=torch.uint8))
        expected = tvio.encode_jpeg(pixels, quality=85).numpy().tobytes()
        assert output_bytes(hybrid) == expected

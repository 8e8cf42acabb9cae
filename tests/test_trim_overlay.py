"""What is special about ``trim`` (an output size known only after it runs) and ``overlay`` (a
parameter that is an image the job's intake fetches); their Pillow parity is in
tests/test_operations.py.

trim: the operations after it bind again per image (equal shapes stacked again), the output-pixel
limit holds there, a batch job's metadata states each image's own size, the kernel's conventions.
overlay: fetched once per job from a real loopback server, before any source is decoded; a failing
overlay refuses the items naming the field; its pixels count in the batch's limit; bad parameters
are refused before any fetch.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import sys

import numpy as np
import pytest
import torch
from http_servers import LoopbackServer
from photos import COLOR_PHOTOS, pil_array, sample, to_tensor
from PIL import Image

from gpu_worker import Pipeline
from gpu_worker.config import Settings
from gpu_worker.errors import InvalidInput, LimitExceeded
from gpu_worker.jobs import JobRunner
from gpu_worker.operations import apply_reference
from gpu_worker.operations.overlay import RGBA_PNG
from gpu_worker.plan import compile_plan

import kernels


def framed(name: str, size: tuple[int, int], box: tuple[int, int], fill=(250, 250, 250)) -> Image.Image:
    """A real photo of ``size`` on a plain ``fill`` canvas of ``box`` (w, h), placed off centre."""
    canvas = Image.new("RGB", box, fill)
    canvas.paste(sample("RGB", size, name), ((box[0] - size[0]) // 3, (box[1] - size[1]) // 4))
    return canvas


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(response: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(response["processed_image"].split(",", 1)[1])))


# --- trim: sizes known after running ------------------------------------------------------------


def test_steps_after_trim_bind_per_image_and_equal_shapes_stack_again(device):
    ops = [{"type": "trim", "params": {}}, {"type": "resize", "params": {"height": 20}},
           {"type": "flip", "params": {"direction": "vertical"}}]
    images = [framed(COLOR_PHOTOS[0], (30, 24), (60, 50)), framed(COLOR_PHOTOS[1], (20, 31), (60, 50)),
              framed(COLOR_PHOTOS[2], (30, 24), (60, 50))]
    out = Pipeline(ops, device=device).run_pil(images)
    for got, image in zip(out, images):
        assert np.array_equal(pil_array(got), pil_array(apply_reference(image, ops)))
    assert [im.size for im in out] == [(25, 20), (12, 20), (25, 20)]
    with pytest.raises(ValueError, match="different sizes"):  # one (B, C, H, W) tensor cannot hold them
        Pipeline(ops, device=device)(torch.cat([to_tensor(im, device) for im in images]))
    with pytest.raises(ValueError, match="known only after"):
        Pipeline(ops).output_size(60, 50)


def test_stacked_as_on_cuda_trim_runs_once_per_stack_and_equals_image_by_image(monkeypatch):
    from gpu_worker import stacking

    plan = compile_plan([{"type": "trim", "params": {"threshold": 30}}, {"type": "resize", "params": {"width": 24}},
                         {"type": "crop", "params": {"bottom": 12}}], max_output_pixels=10_000)
    images = [to_tensor(framed(p, s, (60, 50)))[0] for p, s in zip(COLOR_PHOTOS[:3], ((30, 24), (20, 31), (30, 24)))]
    calls = []
    split = stacking.BoundPlan.split
    monkeypatch.setattr(stacking.BoundPlan, "split", lambda self, batch: calls.append(len(batch)) or split(self, batch))
    stacked = stacking.run_stacked(plan.bind((3, 50, 60)), images)
    assert calls == [3], "the data-dependent step runs once on the whole stack"
    alone = stacking.run_plan(plan, images)
    assert all(torch.equal(a, b) for a, b in zip(stacked, alone))
    assert [tuple(t.shape) for t in stacked] == [(3, 12, 24), (3, 12, 24), (3, 12, 24)]


def test_the_output_pixel_limit_holds_for_the_steps_after_trim():
    # Untrimmed, 40 wide at 400 tall is within 20,000 pixels; trimmed to 3 columns, it is not.
    plan = compile_plan([{"type": "trim", "params": {}}, {"type": "resize", "params": {"width": 400}}],
                        max_output_pixels=200_000)
    strip = torch.full((1, 3, 40, 40), 255, dtype=torch.uint8)
    strip[:, :, 5:35, 10:13] = 0
    bound = plan.bind((3, 40, 40))
    assert bound.out_shape == (3, 40, 40) and not bound.shape_known
    with pytest.raises(LimitExceeded, match=r"400x4000 image .* MAX_OUTPUT_PIXELS=200,000"):
        bound(strip)


def test_a_batch_job_states_each_trimmed_size_and_refuses_only_the_image_over_the_limit(device):
    settings = dataclasses.replace(Settings(), gpu_worker_device=str(device), max_output_pixels=100_000)
    wide = framed(COLOR_PHOTOS[0], (40, 30), (80, 60))
    thin = Image.new("RGB", (80, 60), "white")
    thin.paste(sample("RGB", (2, 30), COLOR_PHOTOS[1]), (20, 10))  # 2 columns: 300 wide is 4500 tall
    job = {"images": [{"image": {"base64": png_b64(wide)}}, {"image": {"base64": png_b64(thin)}}],
           "operations": [{"type": "trim", "params": {"threshold": 20}}, {"type": "resize", "params": {"width": 300}}],
           "output": {"format": "PNG"}}
    result = JobRunner(settings, device).run(job)
    first, second = result["results"]
    assert first["success"], first
    assert (first["metadata"]["width"], first["metadata"]["height"]) == decoded(first).size == (300, 225)
    assert np.array_equal(pil_array(decoded(first)), pil_array(apply_reference(wide, job["operations"])))
    assert not second["success"]
    assert "MAX_OUTPUT_PIXELS=100,000" in second["error"] and "300x4500" in second["error"]


def test_trim_kernel_conventions(device):
    x = torch.cat([to_tensor(framed(p, (20, 15), (40, 30)), device) for p in COLOR_PHOTOS[:3]])
    before = x.clone()
    out = kernels.trim(x)
    assert torch.equal(x, before)
    assert len(out) == 3 and all(t.dtype == torch.uint8 and t.device == x.device and t.ndim == 3 for t in out)
    for i, t in enumerate(out):
        assert torch.equal(t, kernels.trim(x[i : i + 1])[0]), "batched differs from alone"
        t.fill_(7)
    assert torch.equal(x, before), "a result shares the input's storage"
    assert kernels.trim(x[:0]) == []
    flat = torch.full((2, 4, 5, 6), 9, dtype=torch.uint8, device=device)
    assert [tuple(t.shape) for t in kernels.trim(flat)] == [(4, 5, 6), (4, 5, 6)]  # all background: whole
    with pytest.raises(ValueError):
        kernels.trim(x, threshold=300)


def test_blocks_of_rows_give_the_same_results(monkeypatch):
    x = torch.cat([to_tensor(framed(p, (20, 15), (40, 30))) for p in COLOR_PHOTOS[:3]])
    mark = torch.from_numpy(np.asarray(Image.open(io.BytesIO(base64.b64decode(RGBA_PNG))))).permute(2, 0, 1)
    boxes, tiled = kernels.trim_boxes(x, 10), kernels.overlay(x, mark, tile=True, opacity=0.5)
    monkeypatch.setattr(sys.modules["kernels.trim"], "_BLOCK_ELEMENTS", 1)  # one row per block
    monkeypatch.setattr(sys.modules["kernels.overlay"], "_BLOCK_ELEMENTS", 1)
    assert kernels.trim_boxes(x, 10) == boxes
    assert torch.equal(kernels.overlay(x, mark, tile=True, opacity=0.5), tiled)


# --- overlay: a resource fetched once per job ---------------------------------------------------


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    with LoopbackServer() as running:
        yield running


def test_overlay_url_is_fetched_once_per_job_and_applied_to_every_image(device, server):
    server.add_bytes("/mark.png", base64.b64decode(RGBA_PNG), content_type="image/png")
    photos = [sample("RGB", (40, 30), p) for p in COLOR_PHOTOS[:3]]
    op = {"type": "overlay", "params": {"image": {"url": server.url("/mark.png")}, "margin": 2, "opacity": 0.7}}
    job = {"images": [{"image": {"base64": png_b64(im)}} for im in photos], "operations": [op],
           "output": {"format": "PNG"}}
    result = JobRunner(dataclasses.replace(Settings(), gpu_worker_device=str(device)), device).run(job)
    assert server.hits["/mark.png"] == 1
    local = {"type": "overlay", "params": {**op["params"], "image": {"base64": RGBA_PNG}}}
    for response, photo in zip(result["results"], photos):
        assert response["success"], response
        assert np.array_equal(pil_array(decoded(response)), pil_array(apply_reference(photo, [local])))


def test_a_failing_overlay_refuses_the_items_naming_the_field_before_any_decode(device, server, monkeypatch):
    server.add_bytes("/gone.png", b"not here", status=404)
    decodes = []
    monkeypatch.setattr("gpu_worker.stages.device.decode_chunk", lambda *a, **k: decodes.append(a) or [])
    job = {"images": [{"image": {"base64": png_b64(sample("RGB", (20, 20)))}}] * 2,
           "operations": [{"type": "flip", "params": {"direction": "vertical"}},
                          {"type": "overlay", "params": {"image": {"url": server.url("/gone.png")}}}]}
    result = JobRunner(dataclasses.replace(Settings(), gpu_worker_device=str(device)), device).run(job)
    assert server.hits["/gone.png"] == 1 and decodes == []
    for i, response in enumerate(result["results"]):
        assert not response["success"]
        assert response["error"].startswith(f"images[{i}]: operations[1] (overlay).params.image.url"), response
        assert "404" in response["error"]
    not_an_image = {"image": {"base64": png_b64(sample("RGB", (20, 20)))},
                    "operations": [{"type": "overlay", "params": {"image": {"base64": "aGVsbG8="}}}]}
    response = JobRunner(Settings(), torch.device("cpu")).run(not_an_image)
    assert response["error"].startswith("operations[0] (overlay).params.image: "), response


def test_overlay_pixels_count_in_the_batch_limit():
    photo = {"image": {"base64": png_b64(sample("RGB", (20, 20)))}}
    ops = [{"type": "overlay", "params": {"image": {"base64": RGBA_PNG}}}]  # 14x10 = 140 pixels
    within = dataclasses.replace(Settings(), max_job_pixels=2 * 400 + 140)
    assert JobRunner(within, torch.device("cpu")).run({"images": [photo, photo], "operations": ops})["success"]
    over = dataclasses.replace(Settings(), max_job_pixels=2 * 400 + 139)
    response = JobRunner(over, torch.device("cpu")).run({"images": [photo, photo], "operations": ops})
    assert not response["success"] and "MAX_JOB_PIXELS" in response["error"]


@pytest.mark.parametrize("params, field", [
    ({"image": {"base64": RGBA_PNG}, "gravity": "up"}, "params.gravity"),
    ({"image": {"base64": RGBA_PNG}, "gravity": [0.5, 1.5]}, "params.gravity"),
    ({"image": {"base64": RGBA_PNG}, "opacity": 1.5}, "params.opacity"),
    ({"image": {"base64": RGBA_PNG}, "margin": -1}, "params.margin"),
    ({"image": {"url": "http://a", "base64": RGBA_PNG}}, "params.image"),
    ({"image": "https://example.com/mark.png"}, "params.image"),
    ({}, "params.image"),
])
def test_bad_overlay_parameters_are_refused_naming_the_field(params, field):
    with pytest.raises(InvalidInput, match=rf"^operations\[0\] \(overlay\)\.{field}"):
        compile_plan([{"type": "overlay", "params": params}])


@pytest.mark.parametrize("params, field", [({"threshold": 256}, "threshold"), ({"color": "#12"}, "color"),
                                           ({"threshold": 1.5}, "threshold")])
def test_bad_trim_parameters_are_refused_naming_the_field(params, field):
    with pytest.raises(InvalidInput, match=rf"^operations\[0\] \(trim\)\.params\.{field}"):
        compile_plan([{"type": "trim", "params": params}])


def test_equal_overlays_from_different_sources_share_a_plan_key():
    as_data_uri = {"base64": "data:image/png;base64," + RGBA_PNG}
    plans = [Pipeline([{"type": "overlay", "params": {"image": image}}], device="cpu").plan
             for image in ({"base64": RGBA_PNG}, as_data_uri)]
    assert plans[0].key == plans[1].key and "sha256" in plans[0].key and RGBA_PNG not in plans[0].key

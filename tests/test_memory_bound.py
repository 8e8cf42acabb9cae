"""Peak memory of one job stays within ``JOB_MEMORY_FACTOR`` times the bytes of the largest image it
holds (its decoded source, or a larger intermediate or result), plus ``JOB_MEMORY_SLACK_BYTES``
(see :mod:`gpu_worker.limits`).

Every job runs through :class:`gpu_worker.jobs.JobRunner` on the CPU, set up as the worker sets
itself up, in a child process (a fresh interpreter: ``benchmarks/memory_peak.py``'s child), which
reads its own peak resident memory (``ru_maxrss``) and subtracts the resident memory before the
job (after a warm-up, the free memory handed back and the high-water mark reset before each
case). The sources are 12 MP photo-like images: large enough that a whole-image temporary shows
(36 MB per copy for RGB), small enough for the suite. Cases: a resize of RGB and RGBA, with
analysis of both source and result, a JPEG whose EXIF orientation turns it, every output format,
and every registered operation (those not listed by hand with their 1080p benchmark parameters,
``benchmarks/operations.py``). Pillow-exactness of the blocked kernels is covered by the kernel tests; the
block boundaries themselves are exercised below with tiny blocks.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
from PIL import Image

from benchmarks.memory_peak import make_png, measure
from benchmarks.operations import PARAMS
from gpu_worker.limits import JOB_MEMORY_FACTOR, JOB_MEMORY_SLACK_BYTES
from gpu_worker.operations import REGISTRY
from gpu_worker.plan import compile_plan
from gpu_worker.resources import load_resources

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/clear_refs"),
                                reason="measures resident memory through Linux's /proc")

SIZE = (4000, 3000)  # 12 MP

RESIZE = {"type": "resize", "params": {"width": 800}}

#: name -> (source, job beside "image").
CASES = {
    "rgb-resize": ("rgb", {"operations": [RESIZE]}),
    "rgb-resize-analysis-both": ("rgb", {"operations": [RESIZE], "analysis": "both"}),
    "rgba-resize": ("rgba", {"operations": [RESIZE], "output": {"format": "PNG"}}),
    "rgba-resize-analysis-both": ("rgba", {"operations": [RESIZE], "output": {"format": "PNG"}, "analysis": "both"}),
    "jpeg-exif-rotated-tall-resize": ("jpeg6", {"operations": [{"type": "resize", "params": {"height": 500}}]}),
    "rgb-bicubic-0.9": ("rgb", {"operations": [{"type": "resize", "params": {"width": 3601, "filter": "bicubic"}}]}),
    "rgba-upscale": ("rgba", {"operations": [{"type": "crop", "params": {"right": 1000, "bottom": 1000}},
                                             {"type": "resize", "params": {"width": 3000, "filter": "bilinear"}}],
                              "output": {"format": "PNG"}}),
    "rgb-nearest": ("rgb", {"operations": [{"type": "resize", "params": {"width": 3999, "filter": "nearest"}}]}),
    "rgb-crop-past-edges": ("rgb", {"operations": [{"type": "crop", "params": {"left": -50, "top": -50}}]}),
    "rgb-blur": ("rgb", {"operations": [{"type": "filter", "params": {"name": "blur"}}]}),
    "rgb-detail": ("rgb", {"operations": [{"type": "filter", "params": {"name": "detail"}}]}),
    "rgba-sharpen": ("rgba", {"operations": [{"type": "filter", "params": {"name": "sharpen"}}]}),
    "rgb-grayscale": ("rgb", {"operations": [{"type": "filter", "params": {"name": "grayscale"}}]}),
    "rgb-brightness-contrast": ("rgb", {"operations": [{"type": "adjust", "params": {"brightness": 1.2, "contrast": 1.1}}]}),
    "rgba-adjust-all": ("rgba", {"operations": [{"type": "adjust", "params": {"brightness": 1.2, "contrast": 1.1,
                                                                             "saturation": 0.8}}]}),
    "rgb-png-out": ("rgb", {"operations": [{"type": "crop", "params": {"right": 2000}}], "output": {"format": "PNG"}}),
    "rgba-jpeg-out": ("rgba", {"operations": [], "output": {"format": "JPEG"}}),
    "rgba-webp-out": ("rgba", {"operations": [{"type": "crop", "params": {"right": 1500, "bottom": 1500}}],
                               "output": {"format": "WEBP"}}),
}


def _benchmark_params(name: str, entry) -> list[tuple[str, dict]]:
    """(case suffix, params) per benchmark row of an operation (PARAMS may list several)."""
    rows = PARAMS.get(name, entry.examples[0])
    return [("", rows)] if not isinstance(rows, list) else [(f"-{i}", p) for i, p in enumerate(rows)]


#: Every registered operation the cases above leave out, on the RGB source.
CASES.update({f"rgb-op-{name}{suffix}": ("rgb", {"operations": [{"type": name, "params": params}]})
              for name, entry in REGISTRY.items()
              if not any(op["type"] == name for _, job in CASES.values() for op in job.get("operations", []))
              for suffix, params in _benchmark_params(name, entry)})

#: (C, H, W) of each source as decoded (the JPEG shown turned by its EXIF orientation).
SHAPES = {"rgb": (3, SIZE[1], SIZE[0]), "rgba": (4, SIZE[1], SIZE[0]), "jpeg6": (3, SIZE[0], SIZE[1])}


def largest_image_bytes(source: str, job: dict) -> int:
    """Bytes of the largest image the job holds: its source, or a larger step's result."""
    bound = load_resources(compile_plan(job.get("operations", []))).bind(SHAPES[source])  # (overlay's image)
    return max(c * h * w for c, h, w in [bound.in_shape, *(step.out_shape for step in bound.steps)])


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory")
    paths = {"rgb": str(folder / "rgb.png"), "rgba": str(folder / "rgba.png"), "jpeg6": str(folder / "exif6.jpg")}
    make_png(paths["rgb"], SIZE, 3)
    make_png(paths["rgba"], SIZE, 4)
    with Image.open(paths["rgb"]) as im:  # stored 3000 wide and 4000 tall, shown turned
        exif = Image.Exif()
        exif[0x0112] = 6
        im.transpose(Image.Transpose.ROTATE_90).save(paths["jpeg6"], "JPEG", quality=90, exif=exif.tobytes())
    return paths


@pytest.fixture(scope="module")
def measured(sources):
    cases = [{"name": name, "path": sources[source], "job": job} for name, (source, job) in CASES.items()]
    return {row["name"]: row for row in measure(cases, timeout=300)}


@pytest.mark.parametrize("name", list(CASES))
def test_peak_memory_of_a_job_is_within_the_bound(measured, name):
    row = measured[name]
    assert row["success"], row["error"]
    largest = largest_image_bytes(*CASES[name])
    assert largest >= row["pixels_bytes"]
    bound = JOB_MEMORY_FACTOR * largest + JOB_MEMORY_SLACK_BYTES
    assert row["extra_mb"] * 1e6 <= bound, (
        f"{name}: {row['extra_mb']:.0f} MB over the {row['baseline_mb']:.0f} MB before the job; the largest "
        f"image it holds is {largest / 1e6:.0f} MB (bound: {JOB_MEMORY_FACTOR} x that + "
        f"{JOB_MEMORY_SLACK_BYTES / 1e6:.0f} MB = {bound / 1e6:.0f} MB)")


# --- the blocked kernels give the same pixels whatever the block size ------------------------


def test_tiny_blocks_give_the_same_results(monkeypatch):
    import gpu_worker.codecs.encode  # noqa: F401 - sys.modules below
    import kernels
    import kernels.stats as stats
    import kernels.transpose as transpose

    resize_module = sys.modules["kernels.resize"]
    resize_cpu = sys.modules["kernels.resize_cpu"]
    filters = sys.modules["kernels.filters"]
    color = sys.modules["kernels.color"]
    encode_module = sys.modules["gpu_worker.codecs.encode"]
    generator = torch.Generator().manual_seed(12)
    rgba = torch.randint(0, 256, (2, 4, 67, 45), generator=generator, dtype=torch.uint8)
    rgba[:, 3, :5] = 0
    rgba[:, 3, 5:9] = 255
    channels_last = rgba[:, :3].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)

    def everything():
        return [
            kernels.histograms(rgba), kernels.mean_luma(rgba), kernels.mean_luma(channels_last),
            kernels.resize(rgba, (31, 20)), kernels.resize(rgba, (90, 50), "bicubic"),
            kernels.resize(channels_last, (23, 40)), kernels.resize(channels_last, (29, 44), "bilinear"),
            kernels.resize(rgba, (100, 13), "nearest"), kernels.resize(rgba, (13, 100), "nearest"),
            kernels.apply_filter(rgba, "detail"), kernels.apply_filter(rgba, "sharpen"),
            kernels.apply_filter(channels_last, "smooth_more"),
            kernels.grayscale(rgba), kernels.adjust(rgba, 1.2, 0.8), kernels.adjust(channels_last, 0.9, 1.3, 1.7),
            encode_module.flatten_alpha(rgba),
            transpose.transpose(rgba, "rotate_90"), transpose.transpose(channels_last, "transverse"),
        ]

    whole = everything()
    monkeypatch.setattr(stats, "BLOCK_ELEMENTS", 2 * 4 * 45 * 3 + 7)  # 3 rows of the batch, rounded down
    monkeypatch.setattr(resize_module, "_ALPHA_BLOCK_ELEMENTS", 500)
    monkeypatch.setattr(resize_cpu, "_MAX_ROW_LENGTH", 16)  # bands of columns in the height pass
    monkeypatch.setattr(resize_cpu, "_WIDTH_BAND_ELEMENTS", 1)  # bands of the fewest rows
    monkeypatch.setattr(resize_cpu, "_WIDTH_BAND_MIN_ROWS", 5)
    monkeypatch.setattr(transpose, "TILE", 8)
    monkeypatch.setattr(filters, "CPU_CHUNK_ELEMENTS", 100)
    monkeypatch.setattr(color, "CPU_PIECE_PIXELS", 50)
    monkeypatch.setattr(color, "CPU_PIECE_PIXELS_LARGE", 50)
    monkeypatch.setattr(encode_module, "_FLATTEN_BLOCK_ELEMENTS", 300)
    for got, expected in zip(everything(), whole):
        assert torch.equal(got, expected)


def test_analysis_luma_is_exact():
    from gpu_worker.analysis import analyze

    image = torch.tensor([[[10, 20]], [[30, 41]], [[250, 0]]], dtype=torch.uint8)  # (3, 1, 2)
    stats = analyze([image, image[:1]], ["PNG", "PNG"])
    assert stats[0]["brightness"] == round((299 * 30 + 587 * 71 + 114 * 250) / 2000, 4)
    assert stats[1]["brightness"] == 15.0
    assert stats[0]["histograms"]["g"][41] == 1

"""Property-based fuzzing of the job schema with hypothesis.

Whatever JSON a stranger sends, the worker answers with a dict holding a bool ``success``, within
a time bound, and never raises: an error is a short message, never an "internal error" (which
would mean an exception escaped a stage). Three sources of jobs:

- arbitrary JSON (recursive: null, bools, huge ints, NaN/inf floats, text, lists, objects whose
  keys are often the schema's own field names, so the fuzzer reaches past the first check);
- valid jobs (real photos, and an animated GIF, operations with in-range parameters), which must
  succeed with the output size the plan predicts and the frames their metadata states;
- valid jobs mutated a few times: a value replaced by junk of another type, a field removed, an
  extra field added, an op name or parameter changed, huge numbers, NaN, nested junk.

Runs are reproducible (``derandomize=True``, no example database) and sized to take ~20 s on
two cores. The runner's output-pixel limit is lowered to 1 MP so no example may legitimately
spend more than a fraction of the time bound on the CPU.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import gpu_worker.runtime as runtime_module
from gpu_worker.config import Settings
from gpu_worker.formats import OUTPUT_FORMATS
from gpu_worker.handler import run_sync
from gpu_worker.jobs import JobRunner
from gpu_worker.plan import compile_plan
from gpu_worker.runtime import build_runtime, set_runtime
from photos import sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest

#: Wall-clock bound for one job, seconds (tiny images; limits keep every job small).
JOB_TIME_BOUND_S = 2.0
#: Longest acceptable error message: a message names the problem, it does not echo the input.
MAX_MESSAGE_CHARS = 2_000

FUZZ_SETTINGS = dict(
    deadline=int(JOB_TIME_BOUND_S * 1000),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

SETTINGS = dataclasses.replace(Settings(), gpu_worker_device="cpu", cache_max_bytes=0, max_output_pixels=1_000_000,
                               max_batch_items=8)
RUNNER = JobRunner(SETTINGS, torch.device("cpu"))
#: Every spelling of every output format a job may use: canonical names, aliases, lower case.
SPELLINGS = sorted({spelling for f in OUTPUT_FORMATS.values() for name in (f.name, *f.aliases)
                    for spelling in (name, name.lower())})


def _encode(im: Image.Image, fmt: str, **params) -> str:
    im = im.copy()
    im.info.pop("icc_profile", None)  # scikit-image's sRGB profile: libpng warns about it on grey
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return base64.b64encode(buf.getvalue()).decode("ascii")


#: Small real photos in several formats and modes: (base64, (channels, height, width)).
SOURCES = [
    (_encode(sample("RGB", (24, 16), "astronaut.png"), "JPEG", quality=90), (3, 16, 24)),
    (_encode(sample("RGBA", (16, 24), "coffee.png"), "PNG"), (4, 24, 16)),
    (_encode(sample("L", (20, 20), "chelsea.png"), "PNG"), (1, 20, 20)),
    (_encode(sample("RGB", (17, 13), "rocket.jpg"), "WEBP", quality=80), (3, 13, 17)),
    (_encode(sample("RGB", (1, 1), "coffee.png"), "PNG"), (3, 1, 1)),
    # Three frames: GIF and WebP out read and write all of them (gpu_worker.codecs.animation).
    (_encode(sample("RGB", (18, 14), "astronaut.png"), "GIF", save_all=True, duration=[30, 60, 90], loop=0,
             append_images=[sample("RGB", (18, 14), name) for name in ("coffee.png", "chelsea.png")]), (3, 14, 18)),
]

FIELD_NAMES = ["image", "images", "url", "base64", "operations", "output", "analysis", "type", "params",
               "format", "quality", "upload", "width", "height", "maintain_aspect", "filter", "left", "top",
               "right", "bottom", "name", "brightness", "contrast", "saturation", "resize", "crop", "id", "input"]




# ---------------------------------------------------------------------------------------------
# strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30, 65_535, 65_536, 1_000_001])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=16)
    | st.sampled_from(FIELD_NAMES + ["JPEG", "PNG", "WEBP", "lanczos", "blur", "grayscale", "both", "source",
                                     "data:image/png;base64,", "http://127.0.0.1:1/x.png", "file:///etc/passwd"])
)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=24,
)

filters = st.sampled_from(["nearest", "bilinear", "bicubic", "lanczos"])
small_side = st.integers(min_value=1, max_value=48)


@st.composite
def valid_ops(draw) -> dict:
    kind = draw(st.sampled_from(["resize", "crop", "filter", "adjust"]))
    if kind == "resize":
        params = {}
        sides = draw(st.sampled_from(["width", "height", "both"]))
        if sides in ("width", "both"):
            params["width"] = draw(small_side)
        if sides in ("height", "both"):
            params["height"] = draw(small_side)
        if draw(st.booleans()):
            params["maintain_aspect"] = draw(st.booleans())
        if draw(st.booleans()):
            params["filter"] = draw(filters)
        return {"type": "resize", "params": params}
    if kind == "crop":
        params = {}
        for start, end in (("left", "right"), ("top", "bottom")):
            if draw(st.booleans()):  # a box: any start, a positive extent
                params[start] = draw(st.integers(-8, 30))
                params[end] = params[start] + draw(small_side)
            else:  # the end left out: it is the image's edge, so the start stays before it
                params[start] = draw(st.integers(-8, 0))
        return {"type": "crop", "params": params}
    if kind == "filter":
        name = draw(st.sampled_from(["blur", "contour", "detail", "edge_enhance", "edge_enhance_more", "emboss",
                                     "find_edges", "sharpen", "smooth", "smooth_more", "grayscale"]))
        return {"type": "filter", "params": {"name": name}}
    factors = draw(st.dictionaries(st.sampled_from(["brightness", "contrast", "saturation"]),
                                   st.floats(min_value=0.0, max_value=4.0), min_size=1))
    return {"type": "adjust", "params": factors}


@st.composite
def valid_jobs(draw) -> tuple[dict, tuple[int, int, int]]:
    data, shape = draw(st.sampled_from(SOURCES))
    job: dict = {"image": {"base64": data}, "operations": draw(st.lists(valid_ops(), max_size=4))}
    if draw(st.booleans()):
        output = {"format": draw(st.sampled_from(SPELLINGS))}
        if draw(st.booleans()):
            output["quality"] = draw(st.integers(1, 100))
        job["output"] = output
    if draw(st.booleans()):
        job["analysis"] = draw(st.sampled_from([True, False, "source", "result", "both"]))
    return job, shape


def _paths(value, prefix=()) -> list[tuple]:
    """Every path into a JSON value (the root included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


def _get(value, path):
    for part in path:
        value = value[part]
    return value


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


MUTATIONS = ("replace-junk", "replace-scalar", "delete", "add-field", "retype", "huge", "nan", "nest", "op-name")


@st.composite
def mutated_jobs(draw) -> dict:
    job, _ = draw(valid_jobs())
    if draw(st.booleans()):  # sometimes as a batch, with defaults beside 'images'
        job = {"images": [job, draw(valid_jobs())[0]], **draw(st.dictionaries(
            st.sampled_from(["operations", "output", "analysis"]), json_values, max_size=1))}
    job = _copy(job)
    for _ in range(draw(st.integers(1, 2))):
        paths = [p for p in _paths(job) if p]
        deep = [p for p in paths if "operations" in p or "output" in p]
        if deep and draw(st.booleans()):  # half the time, hit what lies past the schema check
            paths = deep
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(job, path[:-1]), path[-1]
        current = parent[key]
        action = draw(st.sampled_from(MUTATIONS))
        if action == "replace-junk":
            parent[key] = draw(json_values)
        elif action == "replace-scalar":
            parent[key] = draw(scalars)
        elif action == "delete":
            del parent[key]
        elif action == "add-field":
            if isinstance(current, dict):
                current[draw(keys)] = draw(json_values)
            elif isinstance(current, list):
                current.insert(draw(st.integers(0, len(current))), draw(json_values))
            else:
                parent[key] = [current, draw(scalars)]
        elif action == "retype":
            parent[key] = (str(current) if not isinstance(current, str)
                           else float(len(current)) if draw(st.booleans()) else [current])
        elif action == "huge":
            parent[key] = draw(st.sampled_from([10**6, 65_535, 2**31 - 1, 2**64, 10**300, -(10**9), 1e308, -1e308]))
        elif action == "nan":
            parent[key] = draw(st.sampled_from([math.nan, math.inf, -math.inf, -0.0]))
        elif action == "nest":
            parent[key] = {"a": [{"b": [current]}]}
        else:  # op-name: another op's name, a wrong case, a near miss
            parent[key] = draw(st.sampled_from(["resize", "crop", "filter", "adjust", "Resize", "twirl", "blur", "",
                                                "grayscale", "resize ", "cropp"]))
    return job


# ---------------------------------------------------------------------------------------------
# checks


def check_response(response, seconds: float) -> None:
    assert isinstance(response, dict), type(response)
    assert isinstance(response.get("success"), bool), response
    assert seconds < JOB_TIME_BOUND_S, f"job took {seconds:.2f} s"
    if response["success"] is False:
        assert set(response) == {"success", "error"}, response
        check_message(response["error"])
    elif "results" in response:
        for index, item in enumerate(response["results"]):
            assert isinstance(item, dict) and isinstance(item.get("success"), bool), item
            if item["success"]:
                assert item["processed_image"].startswith("data:image/")
            else:
                check_message(item["error"])
                # a batch item's error says which item it is
                assert item["error"].startswith(f"images[{index}]"), item["error"]
    else:
        assert response["processed_image"].startswith("data:image/")


def check_message(message) -> None:
    assert isinstance(message, str) and message.strip(), message
    assert "internal error" not in message, message
    assert len(message) <= MAX_MESSAGE_CHARS, f"{len(message)} chars: {message[:200]}..."


def run_timed(job_input):
    started = time.perf_counter()
    response = RUNNER.run(job_input)  # raising here fails the example with the traceback
    return response, time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# properties


@settings(max_examples=500, **FUZZ_SETTINGS)
@given(job_input=json_values | st.dictionaries(keys, json_values, max_size=5))
def test_arbitrary_json_gets_an_answer(job_input):
    check_response(*run_timed(job_input))


@settings(max_examples=250, **FUZZ_SETTINGS)
@given(job_input=st.fixed_dictionaries({"image": json_values}, optional={
    "operations": json_values | st.lists(st.dictionaries(keys, json_values, max_size=3), max_size=3),
    "output": json_values | st.dictionaries(st.sampled_from(["format", "quality", "upload"]), scalars),
    "analysis": json_values,
}))
def test_schema_shaped_junk_gets_an_answer(job_input):
    check_response(*run_timed(job_input))


@settings(max_examples=500, **FUZZ_SETTINGS)
@given(job_input=mutated_jobs())
def test_mutated_valid_jobs_get_an_answer(job_input):
    check_response(*run_timed(job_input))


@settings(max_examples=200, **FUZZ_SETTINGS)
@given(case=valid_jobs())
def test_valid_jobs_succeed_with_the_predicted_size(case):
    job, shape = case
    response, seconds = run_timed(job)
    check_response(response, seconds)
    assert response["success"] is True, response["error"]
    _, height, width = compile_plan(job["operations"]).output_shape(shape)
    assert (response["metadata"]["width"], response["metadata"]["height"]) == (width, height)
    encoded = base64.b64decode(response["processed_image"].split(",", 1)[1])
    with Image.open(io.BytesIO(encoded)) as out:
        assert out.size == (width, height)
        assert out.format == response["metadata"]["format"]
        assert getattr(out, "n_frames", 1) == response["metadata"]["frames"]


@pytest.fixture(scope="module")
def handler_runtime():
    previous = runtime_module._runtime
    set_runtime(build_runtime(SETTINGS))
    yield
    set_runtime(previous)


@settings(max_examples=150, **FUZZ_SETTINGS)
@given(job=json_values | st.fixed_dictionaries({"id": json_values, "input": json_values | mutated_jobs()}))
def test_the_handler_answers_any_job_envelope(handler_runtime, job):
    started = time.perf_counter()
    response = run_sync(job)
    check_response(response, time.perf_counter() - started)

"""Property-based fuzzing of the job schema with hypothesis.

Whatever JSON a stranger sends, the worker answers with a dict holding a bool ``success`` and
never raises (nor hangs: a generous per-job guard): an error is a short message, never an "internal error" (which
would mean an exception escaped a stage). Three sources of jobs:

- arbitrary JSON (recursive: null, bools, huge ints, NaN/inf floats, text, lists, objects whose
  keys are often the schema's own field names, so the fuzzer reaches past the first check);
- valid jobs (real photos, and an animated GIF; operations drawn from the registry, with
  parameters from each entry's examples and field types (tests/op_params.py) that its model
  accepts and that bind to the image), which must succeed with the output size the plan predicts
  and the frames their metadata states;
- valid jobs mutated a few times: a value replaced by junk of another type, a field removed, an
  extra field added, an op name or parameter changed, huge numbers, NaN, nested junk.

Runs are reproducible (``derandomize=True``, no example database). The runner's output-pixel
limit is lowered to 1 MP, and drawn valid jobs make at most MAX_DRAWN_PIXELS, so every job is
small; speed is not asserted here (benchmarks/ measure it).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import time

import pytest
import torch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from PIL import Image

import gpu_worker.runtime as runtime_module
from gpu_worker.config import Settings
from gpu_worker.errors import JobError
from gpu_worker.formats import OUTPUT_FORMATS, output_format
from gpu_worker.handler import run_sync
from gpu_worker.jobs import JobRunner
from gpu_worker.operations import REGISTRY
from gpu_worker.plan import compile_plan
from gpu_worker.resources import load_resources
from gpu_worker.runtime import build_runtime, set_runtime
import op_params
from photos import sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest

#: Seconds after which one job counts as hung. Not a speed check: jobs here take milliseconds,
#: and this is ten times the most any took on two busy cores.
HANG_GUARD_S = 20.0
#: Most pixels a drawn valid job's result may have (per frame): the jobs stay small.
MAX_DRAWN_PIXELS = 64 * 64
#: Longest acceptable error message: a message names the problem, it does not echo the input.
MAX_MESSAGE_CHARS = 2_000

FUZZ_SETTINGS = dict(
    deadline=None,  # time is HANG_GUARD_S's business, per job
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

#: Every registered operation, and every name its parameters use.
OPERATIONS = list(REGISTRY)
PARAM_NAMES = sorted({name for entry in REGISTRY.values() for name in entry.params_model.model_fields})
#: The sources with more than one frame.
ANIMATED = {data for data, _ in SOURCES if getattr(Image.open(io.BytesIO(base64.b64decode(data))), "n_frames", 1) > 1}
FIELD_NAMES = ["image", "images", "url", "base64", "operations", "output", "analysis", "type", "params",
               "format", "quality", "upload", "id", "input"] + OPERATIONS + PARAM_NAMES




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

#: Tries at drawing one operation the model accepts and that binds before leaving it out.
OP_ATTEMPTS = 8


def _binds(operations: list[dict], shape: tuple[int, int, int]):
    """The plan of ``operations`` bound to ``shape`` (C, H, W), resources loaded, or None when it
    is refused (its model, a resource, its bind, or a result over MAX_DRAWN_PIXELS)."""
    try:
        plan = compile_plan(operations)
        if plan.resources():
            plan = load_resources(plan)
        bound = plan.bind(shape)
    except JobError:
        return None
    _, height, width = bound.out_shape
    return bound if height * width <= MAX_DRAWN_PIXELS else None


def _draw_op(draw, names: list[str], before: list[dict], shape: tuple[int, int, int]):
    """An operation named from ``names`` whose drawn parameters its model accepts and that binds
    after ``before``, and the bound plan; (None, None) after OP_ATTEMPTS tries."""
    for _attempt in range(OP_ATTEMPTS):
        name = draw(st.sampled_from(names))
        op = {"type": name, "params": draw(op_params.params(REGISTRY[name]))}
        bound = _binds(before + [op], shape)
        if bound is not None:
            return op, bound
    return None, None


@st.composite
def valid_ops(draw, shape: tuple[int, int, int], first: str | None = None) -> list[dict]:
    """Up to 4 operations from the registry (the first named ``first`` when given), each with
    drawn parameters (tests/op_params.py) that its model accepts and that bind to the image as
    the steps before leave it. A step whose result's size depends on the pixels (trim) ends the
    list: later steps would bind per image."""
    ops: list[dict] = []
    if first is not None:
        op, bound = _draw_op(draw, [first], ops, shape)
        if op is None:
            reject()
        ops.append(op)
        if not bound.shape_known:
            return ops
    for _ in range(draw(st.integers(0, 4 - len(ops)))):
        op, bound = _draw_op(draw, OPERATIONS, ops, shape)
        if op is None:
            continue
        ops.append(op)
        if not bound.shape_known:
            break
    return ops


@st.composite
def valid_jobs(draw, first: str | None = None) -> tuple[dict, tuple[int, int, int]]:
    data, shape = draw(st.sampled_from(SOURCES))
    job: dict = {"image": {"base64": data}, "operations": draw(valid_ops(shape, first))}
    formats = SPELLINGS
    if data in ANIMATED and not _binds(job["operations"], shape).shape_known:
        # Frames trimmed each to its own size cannot share an animation: such a job is refused
        # (gpu_worker.stages.frames), so a valid one asks for a single-frame format.
        formats = [f for f in formats if not output_format(f).animation]
    if draw(st.booleans()) or len(formats) < len(SPELLINGS):
        output = {"format": draw(st.sampled_from(formats))}
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
            parent[key] = draw(st.sampled_from(OPERATIONS + ["Resize", "twirl", "blur", "", "grayscale", "resize ",
                                                             "cropp"]))
    return job


# ---------------------------------------------------------------------------------------------
# checks


def check_response(response, seconds: float) -> None:
    assert isinstance(response, dict), type(response)
    assert isinstance(response.get("success"), bool), response
    assert seconds < HANG_GUARD_S, f"job took {seconds:.2f} s: hung?"
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
    check_valid_job(*case)


@pytest.mark.parametrize("name", OPERATIONS)
def test_valid_jobs_with_each_operation_succeed(name):
    """The test above with each registered operation first, so every one is drawn in jobs
    (the mix above draws some rarely)."""
    @settings(max_examples=8, **FUZZ_SETTINGS)
    @given(case=valid_jobs(first=name))
    def check(case):
        check_valid_job(*case)

    check()


def check_valid_job(job: dict, shape: tuple[int, int, int]) -> None:
    """The job succeeds with the size its plan predicts (at most it, after trim), in the format
    and with the frames its metadata states."""
    response, seconds = run_timed(job)
    check_response(response, seconds)
    assert response["success"] is True, (job["operations"], response["error"])
    bound = _binds(job["operations"], shape)
    _, height, width = bound.out_shape
    size = (response["metadata"]["width"], response["metadata"]["height"])
    if bound.shape_known:
        assert size == (width, height)
    else:  # trim: at most the size the plan allowed for
        assert size[0] <= width and size[1] <= height, (size, (width, height))
    encoded = base64.b64decode(response["processed_image"].split(",", 1)[1])
    with Image.open(io.BytesIO(encoded)) as out:
        assert out.size == size
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

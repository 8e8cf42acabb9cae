"""Worker settings: defaults here, ``worker.yaml`` on top, environment variables last.

Every setting has one environment variable (its name in upper case, e.g. ``MAX_CONCURRENCY``).
The YAML file is found at ``$GPU_WORKER_CONFIG``, else ``worker.yaml`` inside the package (so an
installed wheel reads it);
a missing file means the defaults below. The README's configuration table lists them all.
A setting's former name (:data:`RENAMED`) still works, in the file and in the environment, with
one warning naming the new one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG_ENV = "GPU_WORKER_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "worker.yaml"

MB = 1_000_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """All worker settings. Units are in the names: bytes, pixels, ms, s."""

    #: Where kernels run: auto (CUDA if present, else CPU), cpu, cuda, cuda:N.
    gpu_worker_device: str = "auto"
    #: Jobs one worker takes at once (the SDK's concurrency_modifier). 0: per device, as
    #: :func:`max_concurrency_for` says (CPU: CPU_THREADS, i.e. its cores; CUDA: CUDA_MAX_CONCURRENCY).
    max_concurrency: int = 0
    #: Log level for the SDK and the worker (unset, the SDK logs whole outputs at DEBUG).
    runpod_log_level: str = "INFO"
    #: Seconds jobs in progress get to finish after SIGTERM; past it they are reported failed and
    #: the worker exits (0: no limit, the SDK's behaviour; gpu_worker.sdk_patches, fix 2).
    shutdown_grace_s: float = 0.0
    #: In RunPod's job loop the worker runs under a supervisor (gpu_worker.supervisor) that
    #: reports the jobs of a crashed worker failed and starts a fresh one, this many times within
    #: 10 minutes; at the next crash it exits, for the platform to replace the worker. 0: no supervisor.
    supervisor_restarts: int = 3
    #: CPU: images worked on at once, each on one torch thread (0: every core the process may use,
    #: cgroup CPU quota included; gpu_worker.cpu_pool.available_cores). CUDA: the threads that
    #: encode on the host (PNG, WebP, and JPEG unless CUDA_JPEG_CODEC=nvjpeg), and decode JPEG
    #: with CUDA_JPEG_CODEC=libjpeg.
    cpu_threads: int = 0
    #: CUDA only: the resize passes as kernels compiled by torch.compile (several times faster, the
    #: same pixels; compiling takes a few seconds once): 1 compiles them in the background while
    #: jobs run the eager tap loop, 2 compiles them before the worker takes jobs, 0 never.
    cuda_compile: int = 1
    #: CUDA only: the JPEG codec. nvjpeg decodes and encodes on the GPU (fast; its pixels are a few
    #: levels from Pillow's); libjpeg decodes and encodes on the host with libjpeg-turbo, Pillow's
    #: pixels and files, on CPU_THREADS threads; hybrid decodes with nvjpeg and encodes with
    #: libjpeg-turbo on the host, beside the GPU's work on the next chunk.
    cuda_jpeg_codec: str = "nvjpeg"

    # --- limits (checked before the step they guard) ---
    max_source_bytes: int = 50 * MB
    max_decoded_pixels: int = 50 * MB  # 50 MP, imgproxy's default
    max_output_pixels: int = 50 * MB
    max_operations: int = 50
    max_batch_items: int = 256
    max_job_pixels: int = 1_000 * MB  # total decoded pixels of one batch job
    #: Frames of an animation kept as one (F, C, H, W) stack (GIF or WebP out); their pixels,
    #: frames x width x height, count against MAX_DECODED_PIXELS and MAX_JOB_PIXELS.
    max_animation_frames: int = 256
    fetch_timeout_s: float = 15.0

    # --- device work ---
    #: Images of a batch job handed to the device at once; while one chunk's operations run, the
    #: next one decodes and the last one's host encodes run (0: as many as MAX_STACK_PIXELS allows).
    chunk_images: int = 16

    # --- cross-job batcher ---
    batch_wait_ms: float = 5.0
    max_stack_pixels: int = 200 * MB  # pixels stacked into one kernel call

    # --- result cache ---
    cache_max_bytes: int = 256 * MB  # 0 turns the cache off

    # --- outputs ---
    upload_threshold_bytes: int = 8 * MB  # larger serialized results go to the bucket
    bucket_name: str = "gpu-worker-outputs"

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


#: Former setting names -> current ones. Deployed endpoints may still set the old names (in
#: worker.yaml or as environment variables); they are read as the new ones, with a warning.
RENAMED = {"max_batch_pixels": "max_job_pixels", "batch_max_pixels": "max_stack_pixels"}


#: MAX_CONCURRENCY=0 on CUDA: enough concurrent single-image jobs for the cross-job batcher to stack
#: into one kernel call (not yet measured on a GPU; see BENCHMARKS.md, "single-image jobs").
CUDA_MAX_CONCURRENCY = 32


def max_concurrency_for(settings: Settings, device_type: str, cores: int) -> int:
    """Jobs taken at once: ``settings.max_concurrency`` when set (> 0); else, per device,
    ``cores`` on the CPU (the images worked on at once: CPU_THREADS, by default every core) and
    :data:`CUDA_MAX_CONCURRENCY` on CUDA. The CPU's choice comes from the sweep in BENCHMARKS.md."""
    if settings.max_concurrency > 0:
        return settings.max_concurrency
    return CUDA_MAX_CONCURRENCY if device_type == "cuda" else max(1, cores)


def load_settings(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from defaults, then the YAML file, then the environment.

    Raises ValueError naming the setting when a value has the wrong type or is out of range.
    """
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    values: dict[str, object] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of setting: value")
        values.update(_renamed(loaded, str(path), upper=False))
    given = {name.upper(): environ[name.upper()] for name in [*Settings.names(), *RENAMED] if name.upper() in environ}
    for variable, value in _renamed(given, "environment", upper=True).items():
        values[variable.lower()] = value
    unknown = sorted(set(values) - set(Settings.names()))
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(Settings.names())}")
    return Settings(**{name: _coerce(name, value) for name, value in values.items()})


def _renamed(values: dict, where: str, upper: bool) -> dict:
    """``values`` (YAML keys, or environment variables when ``upper``) with each former name
    (:data:`RENAMED`) replaced by its current one, and one warning line per former name found.
    When both names are given, the current name's value wins (the warning says so)."""
    out = dict(values)
    for old, new in RENAMED.items():
        old, new = (old.upper(), new.upper()) if upper else (old, new)
        if old not in out:
            continue
        value = out.pop(old)
        if new in out:
            log.warning("%s: %s is the former name of %s; both are set, so %s=%s is used and %s ignored",
                        where, old, new, new, out[new], old)
        else:
            log.warning("%s: %s is now named %s; please rename it (the old name still works)", where, old, new)
            out[new] = value
    return out


#: Settings that take one of a few values.
CHOICES = {"cuda_jpeg_codec": ("nvjpeg", "libjpeg", "hybrid"), "cuda_compile": (0, 1, 2)}


def _coerce(name: str, value: object) -> object:
    """A YAML or environment value as the setting's type (an int may be written 50_000_000 or 5e7)."""
    kind = type(getattr(Settings, name))
    try:
        if kind is int:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, bool) or not float(number).is_integer():
                raise ValueError
            result = int(number)
        elif kind is float:
            result = float(value)
            if result != result or result in (float("inf"), float("-inf")):
                raise ValueError
        else:
            result = str(value)
    except (TypeError, ValueError):
        noun = {int: "an integer", float: "a finite number"}.get(kind, "a string")
        raise ValueError(f"setting {name} ({name.upper()}) must be {noun}, got {value!r}") from None
    if kind in (int, float) and result < 0:
        raise ValueError(f"setting {name} ({name.upper()}) must not be negative, got {value!r}")
    if name in CHOICES and result not in CHOICES[name]:
        raise ValueError(f"setting {name} ({name.upper()}) must be one of {', '.join(map(str, CHOICES[name]))}, got {value!r}")
    return result

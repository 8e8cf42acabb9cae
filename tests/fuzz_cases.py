"""Fuzz cases (`fuzz_harness.Case`) from mutants and seeds: single jobs and mixed batch jobs.

Every job is an ordinary base64 job with a small operation list: a resize to 24 pixels wide
(its filter varies) and an adjust; its output format cycles through the output formats in the
formats table's order (gpu_worker.formats; those that hold animation also get each animated
seed, keeping its frames), and one job in three also asks for analysis
(``"both"``: source and result). All of it follows from the case's number, so case N is always
the same job.
"""

from __future__ import annotations

import base64
import random

from fuzz_harness import Case
from gpu_worker.formats import OUTPUT_FORMATS, formats_with
from mutants import SEED_SIZE, Mutant, mutant, seeds

FILTERS = ("lanczos", "bicubic", "bilinear", "nearest")
FORMATS = tuple(OUTPUT_FORMATS)
#: Seeds with several frames: their seed cases run once more with each output format that keeps
#: every frame, so frame reading and the animated writers run in the child.
ANIMATED_SEEDS = ("png-apng", "webp-animated", "webp-animated-alpha", "gif-animated", "gif-animated-alpha")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def job_settings(number: int) -> dict:
    """The operations, output and analysis of job ``number`` (everything but the image)."""
    settings = {
        "operations": [
            {"type": "resize", "params": {"width": 24, "filter": FILTERS[number % len(FILTERS)]}},
            {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2}},
        ],
        "output": {"format": FORMATS[number % len(FORMATS)], "quality": 80},
    }
    if number % 3 == 0:
        settings["analysis"] = "both"
    return settings


def single_job(data: bytes, number: int) -> dict:
    return {"image": {"base64": b64(data)}, **job_settings(number)}


def mutant_case(m: Mutant) -> Case:
    """A mutant as a single-image job; it may succeed (some mutants are still valid) or fail."""
    return Case(m.name, single_job(m.data, m.number))


def mutant_cases(start: int, count: int, size: tuple[int, int] = SEED_SIZE) -> list[Case]:
    """Mutants ``start`` .. ``start + count - 1`` of seeds of ``size``, as single jobs."""
    return [mutant_case(mutant(n, size)) for n in range(start, start + count)]


def seed_cases() -> list[Case]:
    """Every unmutated seed as a single job that must succeed (the harness's own sanity check)."""
    cases = [Case(f"seed {name}", single_job(data, i), must_succeed=True)
             for i, (name, data) in enumerate(seeds().items())]
    for name in ANIMATED_SEEDS:
        for fmt in formats_with("animation"):
            job = single_job(seeds()[name], 1)
            job["output"] = {"format": fmt, "quality": 80}
            cases.append(Case(f"seed {name} to {fmt}", job, must_succeed=True))
    return cases


def batch_case(number: int, good: int = 3, bad: int = 3, first_mutant: int = 0) -> Case:
    """Batch ``number``: ``good`` valid seeds and ``bad`` mutants, shuffled. Only mutants may fail;
    ``parts`` holds the items as single jobs, to name a crash's culprit."""
    rng = random.Random(number)
    names = list(seeds())
    items: list[tuple[str, bytes, bool]] = [
        (f"seed {name}", seeds()[name], True) for name in rng.sample(names, good)]
    for _ in range(bad):
        m = mutant(first_mutant + rng.randrange(100_000))
        items.append((m.name, m.data, False))
    rng.shuffle(items)
    job = {"images": [{"image": {"base64": b64(data)}} for _, data, _ in items], **job_settings(number)}
    must = [i for i, (_, _, valid) in enumerate(items) if valid]
    bad_names = ", ".join(name for name, _, valid in items if not valid)
    parts = [Case(f"batch-{number} item {i}: {name}", single_job(data, number), must_succeed=valid)
             for i, (name, data, valid) in enumerate(items)]
    return Case(f"batch-{number} [{bad_names}]", job, must_succeed=must, parts=parts)

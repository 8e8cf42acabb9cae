"""A bounded slice of the mutation-fuzz campaign, in child processes (issue #12).

Mutants of real-photo seeds in every input format (`mutants`) go through the worker's real job
path as base64 jobs, in two long-lived child interpreters (`fuzz_harness`), so that a decoder
crash is a failed test naming the mutant instead of a dead test run. Also: every unmutated seed
must succeed, and batch jobs mixing valid seeds with mutants must fail only mutants.

The slice is ``SLICE_MUTANTS`` mutants from number ``SLICE_START`` on (about 15-30 s on two
cores); `make fuzz` (``python -m benchmarks.fuzz_campaign``) runs thousands. Any failure below
names the case; ``mutants.mutant(N)`` rebuilds mutant N's bytes.
"""

from __future__ import annotations

import pytest

from fuzz_cases import batch_case, mutant_cases, seed_cases, single_job
from fuzz_harness import Case, Limits, Report, run_cases, summarize_log
from mutants import MUTATIONS_BY_FORMAT, mutant, seed_format, seeds

SLICE_START = 0
SLICE_MUTANTS = 400
SLICE_BATCHES = 12
#: Per-case bounds for the slice: seeds are 61x43, but a mutant may declare up to the worker's
#: 50 MP limit, which it must refuse or decode within these.
LIMITS = Limits(case_timeout_s=20.0, memory_bound_mb=1536.0, max_isolations=6, max_restarts=15)


@pytest.fixture(scope="module")
def slice_report() -> Report:
    """Seeds, the mutant slice and the batch mixes, run once for the module's tests."""
    cases = (seed_cases() + mutant_cases(SLICE_START, SLICE_MUTANTS)
             + [batch_case(n, first_mutant=SLICE_START) for n in range(SLICE_BATCHES)])
    return run_cases(cases, workers=2, limits=LIMITS)


def _failures(report: Report, prefix: str = "") -> list[str]:
    return [str(f) for f in report.findings if f.case.startswith(prefix)]


def test_every_seed_succeeds(slice_report):
    """The unmutated seeds are valid files of every format: each must come back as an image."""
    assert not _failures(slice_report, "seed "), "\n".join(_failures(slice_report, "seed "))
    missing = [f"seed {name}" for name in seeds() if f"seed {name}" not in slice_report.results]
    assert not missing, missing


def test_no_mutant_crashes_hangs_overruns_memory_or_misbehaves(slice_report):
    """Each mutant is answered, in time and memory, with a clean failure or a correct image."""
    found = [str(f) for f in slice_report.findings if not f.case.startswith(("seed ", "batch-"))]
    assert not found, f"{len(found)} findings of {SLICE_MUTANTS} mutants:\n" + "\n".join(found)


def test_batches_mixing_valid_and_mutated_items_fail_only_the_mutants(slice_report):
    """A batch of valid seeds and mutants: every seed item succeeds, every item is answered."""
    assert not _failures(slice_report, "batch-"), "\n".join(_failures(slice_report, "batch-"))
    batches = [name for name in slice_report.results if name.startswith("batch-")]
    assert len(batches) == SLICE_BATCHES


def test_the_slice_reaches_the_decoders(slice_report):
    """The slice is not all refused at the door: many mutants still decode, many are refused."""
    outcomes = slice_report.outcomes()
    assert outcomes.get("ok", 0) > SLICE_MUTANTS // 10, outcomes
    assert outcomes.get("refused", 0) > SLICE_MUTANTS // 10, outcomes


# ---------------------------------------------------------------------------------------------
# the generator and the harness themselves


def test_mutants_are_deterministic_and_named():
    first = [mutant(n) for n in range(0, 200, 7)]
    again = [mutant(n) for n in range(0, 200, 7)]
    assert [m.data for m in first] == [m.data for m in again]
    assert all(m.data != seeds()[m.seed] for m in first)
    assert len({m.name for m in first}) == len(first)
    assert first[1].name.startswith("00007 ") and first[1].seed in first[1].name


def test_every_format_has_seeds_and_mutations():
    formats = {seed_format(name) for name in seeds()}
    assert formats == {"png", "jpeg", "webp", "avif", "gif", "bmp", "tiff", "ppm", "ico"}
    assert formats <= set(MUTATIONS_BY_FORMAT)
    kinds = {mutant(n).mutation.split("@")[0].split("=")[0].split("-")[0] for n in range(SLICE_MUTANTS)}
    for expected in ("flip", "bitflip", "truncate", "dup", "drop", "swap", "length", "ihdr", "body"):
        assert expected in kinds, (expected, sorted(kinds))


def test_the_harness_names_a_crashing_case_and_carries_on():
    """A real crash (the child sends itself SIGSEGV at one case) is a finding naming that case;
    the cases after it still run, in a fresh child; run alone, the case crashes again."""
    good = seeds()["png-rgb8"]
    cases = [Case("before", single_job(good, 1), must_succeed=True),
             Case("crasher", single_job(good, 2), raise_signal="SIGSEGV"),
             Case("after", single_job(good, 3), must_succeed=True)]
    report = run_cases(cases, workers=1, limits=Limits(max_isolations=1))
    assert [(f.kind, f.case) for f in report.findings] == [("crash", "crasher")], report.findings
    assert "SIGSEGV" in report.findings[0].detail and "crash" in report.findings[0].isolated
    assert set(report.results) == {"before", "after"}
    assert report.children == 3  # the first, the isolation run, the one carrying on


def test_summarize_log_names_the_fatal_frame():
    log = ("libpng error: IDAT: incorrect data check\nFatal Python error: Segmentation fault\n\n"
           "Current thread 0x1 (most recent call first):\n"
           '  File "/v/torch/_ops.py", line 1350 in __call__\n'
           '  File "/v/torchvision/io/image.py", line 97 in decode_png\n'
           '  File "/w/gpu_worker/codecs/decode.py", line 281 in _decode_cpu\n'
           "\nExtension modules: numpy\n")
    assert summarize_log(log) == ("Fatal Python error: Segmentation fault in decode_png (io/image.py:97) <- "
                                  "_decode_cpu (codecs/decode.py:281); printed before: "
                                  "libpng error: IDAT: incorrect data check")

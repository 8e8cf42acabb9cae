"""The long mutation-fuzz campaign (issue #12): thousands of mutants and batch mixes through the
worker, in child processes, then Pillow's own test images (`benchmarks.corpus_campaign`).

    python -m benchmarks.fuzz_campaign [--mutants 30000] [--large 2000] [--start 1000] [--batches 1000]
                                       [--workers 2] [--timeout 30] [--memory-mb 1536]
                                       [--no-corpus] [--out benchmarks/results/fuzz-latest.json]

Mutants ``start`` .. ``start + mutants - 1`` (`tests/mutants.py`; the default start leaves out
the numbers the test suite's slice runs) of the 61x43 seeds, and ``large`` more of 257x193 seeds,
go through the real job path one job each (about 4 ms a case per core on this machine), and
``batches`` batch jobs mix three valid seeds with three mutants each (only the mutants may fail).
Every case must be answered within ``--timeout`` seconds and ``--memory-mb`` of resident memory
above its child's baseline, with a clean failure or an image of the size its metadata states
(`tests/fuzz_harness.py`). Prints the counts (mutants tried, time, crashes, hangs, memory-bound
violations, misbehaviour), every finding with the case's name, and writes everything to
``--out`` (JSON). Exits 1 when anything was found.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the generator and the harness live with the tests

from fuzz_cases import batch_case, mutant_cases, seed_cases  # noqa: E402
from fuzz_harness import Limits, Report, run_cases  # noqa: E402
from mutants import SEED_SIZE, seed_format  # noqa: E402

#: Seed size of the ``--large`` mutants: multi-strip TIFFs, many JPEG MCUs and IDAT rows.
LARGE_SEED_SIZE = (257, 193)


def machine() -> str:
    """A line naming the machine: CPU model, cores, memory, Python."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {len(os.sched_getaffinity(0))} cores, {mem_gb:.0f} GB, Python {platform.python_version()}"


def by_format(report: Report) -> dict[str, dict[str, int]]:
    """Outcomes of the single-mutant cases by seed format ("00042 png-rgba@257x193 ..." -> png)."""
    def fmt(name: str) -> str:
        return seed_format(name.split()[1].split("@")[0])

    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, result in report.results.items():
        if name[:5].isdigit():
            table[fmt(name)][result["outcome"]] += 1
    for finding in report.findings:
        if finding.case[:5].isdigit() and finding.kind != "problem":
            table[fmt(finding.case)][finding.kind] += 1
    return {fmt: dict(counts) for fmt, counts in sorted(table.items())}


def extremes(report: Report) -> dict[str, object]:
    """The slowest case and the largest memory peak, with their names."""
    if not report.results:
        return {}
    slowest = max(report.results.items(), key=lambda kv: kv[1]["ms"])
    hungriest = max(report.results.items(), key=lambda kv: kv[1]["peak_kb"])
    return {"slowest_ms": slowest[1]["ms"], "slowest_case": slowest[0],
            "peak_mb": round(hungriest[1]["peak_kb"] / 1024, 1), "peak_case": hungriest[0]}


def summary_lines(title: str, report: Report, tried: str) -> list[str]:
    counts = report.counts()
    lines = [f"== {title}: {tried} in {report.seconds:.0f} s ({report.children} child processes)",
             f"   crashes {counts['crash']}, hangs {counts['hang']}, memory-bound violations {counts['memory']}, "
             f"misbehaving answers {counts['problem']}",
             f"   outcomes: {report.outcomes()}"]
    ext = extremes(report)
    if ext:
        lines.append(f"   slowest case {ext['slowest_ms']:.0f} ms ({ext['slowest_case']}); largest memory peak "
                     f"{ext['peak_mb']} MB above baseline ({ext['peak_case']})")
    lines += [f"   {finding}" for finding in report.findings]
    return lines


def run_mutants(args: argparse.Namespace, limits: Limits) -> tuple[Report, dict]:
    cases = (seed_cases() + mutant_cases(args.start, args.mutants)
             + mutant_cases(args.start, args.large, LARGE_SEED_SIZE)
             + [batch_case(10_000 + n, first_mutant=args.start) for n in range(args.batches)])
    report = run_cases(cases, workers=args.workers, limits=limits, workdir=args.workdir)
    tried = (f"{args.mutants + args.large} mutants (numbers {args.start}-{args.start + args.mutants - 1} of "
             f"{SEED_SIZE[0]}x{SEED_SIZE[1]} seeds, {args.start}-{args.start + args.large - 1} of "
             f"{LARGE_SEED_SIZE[0]}x{LARGE_SEED_SIZE[1]} seeds), {args.batches} batch mixes")
    for line in summary_lines("mutation fuzz", report, tried):
        print(line, flush=True)
    print(f"   by seed format: {json.dumps(by_format(report))}")
    record = {"mutants": args.mutants, "large_mutants": args.large, "start": args.start, "batches": args.batches, "seconds": round(report.seconds, 1),
              "children": report.children, "counts": report.counts(), "outcomes": report.outcomes(),
              "by_format": by_format(report), **extremes(report), "findings": [str(f) for f in report.findings]}
    return report, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=30_000)
    parser.add_argument("--large", type=int, default=2_000, help=f"mutants of {LARGE_SEED_SIZE} seeds")
    parser.add_argument("--start", type=int, default=1000, help="first mutant number (the test slice uses 0-399)")
    parser.add_argument("--batches", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--memory-mb", type=float, default=1536.0, help="resident memory per case above baseline")
    parser.add_argument("--isolations", type=int, default=25, help="crashes re-run alone, per worker")
    parser.add_argument("--no-corpus", action="store_true", help="skip Pillow's Tests/images")
    parser.add_argument("--workdir", default=None, help="keep case files and child logs here")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz-latest.json"))
    args = parser.parse_args(argv)
    limits = Limits(case_timeout_s=args.timeout, memory_bound_mb=args.memory_mb, max_isolations=args.isolations,
                    max_restarts=10_000)
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"{started:%Y-%m-%d %H:%M} UTC on {machine()}", flush=True)
    report, record = run_mutants(args, limits)
    results = {"date": f"{started:%Y-%m-%d %H:%M} UTC", "machine": machine(), "fuzz": record}
    found = sum(report.counts().values())
    if not args.no_corpus:
        from benchmarks import corpus_campaign

        corpus = corpus_campaign.run(workers=args.workers, limits=limits, workdir=args.workdir)
        results["corpus"] = corpus
        found += sum(corpus["counts"].values()) + len(corpus["refused_but_pillow_reads"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"written: {args.out}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

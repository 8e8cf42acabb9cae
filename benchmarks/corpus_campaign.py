"""Pillow's own test images through the worker: a real-world corpus of awkward files nobody here made.

    python -m benchmarks.corpus_campaign [--workers 2] [--cache DIR] [--out FILE]

Pillow's source distribution on PyPI ships ``Tests/images`` (about a thousand files: every format
Pillow reads, odd modes, truncated and broken files, fuzzer finds). `corpus_dir` downloads the
sdist of the installed Pillow version once with ``pip download`` (PyPI only) and unpacks just
that directory into a cache (default ``~/.cache/gpu-image-worker/pillow-<version>``); nothing
is committed.

`run` then sends every file, as a base64 job, through the worker in the child-process harness
(`tests/fuzz_harness.py`: a crash, hang or memory overrun is a finding naming the file) and
records how many files there are, how many Pillow reads (open and load the first frame, in this
process), how many the worker reads, and every file Pillow reads but the worker refuses, with
the worker's message. Those in a format the worker accepts (`ACCEPTED`) are bugs; others (PCX,
TGA, PSD, ...) are refused by design and only counted, as are files over the worker's 50 MP limit.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_cases import single_job  # noqa: E402
from fuzz_harness import Case, Limits, run_cases  # noqa: E402
from gpu_worker.formats import SOURCE_PILLOW_NAMES  # noqa: E402

#: Pillow format names of the files the worker reads (the formats table's; MPO, JPEG's
#: multi-picture variant, included).
ACCEPTED = SOURCE_PILLOW_NAMES
#: The worker's default MAX_DECODED_PIXELS: larger files are refused by design.
PIXEL_LIMIT = 50_000_000
#: Largest file sent (the worker's MAX_SOURCE_BYTES).
MAX_BYTES = 50_000_000
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpu-image-worker"


def corpus_dir(cache: Path = DEFAULT_CACHE) -> Path:
    """``Tests/images`` of the installed Pillow's sdist, downloaded and unpacked once."""
    version = metadata.version("pillow")
    target = cache / f"pillow-{version}"
    images = target / "Tests" / "images"
    if images.is_dir() and any(images.iterdir()):
        return images
    with tempfile.TemporaryDirectory(prefix="pillow-sdist-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"pillow=={version}", "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("pillow-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/Tests/images/" in m.name and (m.isfile() or m.isdir())]
            for member in members:  # drop the "pillow-<version>/" prefix
                member.name = member.name.split("/", 1)[1]
            tar.extractall(target, members=members, filter="data")
    return images


def corpus_files(images: Path) -> list[Path]:
    """Every regular file under ``images``, sorted."""
    return sorted(p for p in images.rglob("*") if p.is_file())


def pillow_reads(data: bytes) -> tuple[bool, str, str]:
    """(whether Pillow opens it and loads its first frame, its format, its size or error)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or "?"
                im.load()
                return True, fmt, f"{im.width}x{im.height} {im.mode}"
    except Exception as exc:  # any refusal counts as "Pillow does not read it"
        return False, "", f"{type(exc).__name__}: {str(exc)[:120]}"


def run(workers: int = 2, limits: Limits = Limits(case_timeout_s=30.0), workdir: str | None = None,
        cache: Path = DEFAULT_CACHE) -> dict:
    """Run the corpus; print and return the record (counts, findings, refused files)."""
    images = corpus_dir(cache)
    files = corpus_files(images)
    pillow: dict[str, tuple[bool, str, str]] = {}
    cases = []
    for number, path in enumerate(files):
        name = str(path.relative_to(images))
        data = path.read_bytes()
        pillow[name] = pillow_reads(data)
        if len(data) <= MAX_BYTES:
            cases.append(Case(name, single_job(data, number)))
    report = run_cases(cases, workers=workers, limits=limits, workdir=workdir)
    worker_ok = {name for name, result in report.results.items() if result["outcome"] == "ok"}
    bugs, by_design = [], collections.Counter()
    for name, (reads, fmt, info) in pillow.items():
        if not reads or name in worker_ok:
            continue
        error = report.results.get(name, {}).get("error", "not answered (see findings)")
        pixels = _pixels(info)
        if fmt not in ACCEPTED:
            by_design[f"format {fmt}"] += 1
        elif pixels > PIXEL_LIMIT:
            by_design["over the 50 MP limit"] += 1
        else:
            bugs.append({"file": name, "format": fmt, "pillow": info, "worker": error})
    record = {
        "source": f"Pillow {metadata.version('pillow')} sdist, Tests/images",
        "files": len(files), "sent": len(cases), "pillow_reads": sum(1 for r in pillow.values() if r[0]),
        "worker_reads": len(worker_ok),
        "worker_reads_but_pillow_not": sorted(n for n in worker_ok if not pillow[n][0]),
        "refused_by_design": dict(by_design), "refused_but_pillow_reads": bugs,
        "seconds": round(report.seconds, 1), "counts": report.counts(), "findings": [str(f) for f in report.findings],
    }
    _print(record)
    return record


def _pixels(info: str) -> int:
    try:
        w, h = info.split()[0].split("x")
        return int(w) * int(h)
    except ValueError:
        return 0


def _print(record: dict) -> None:
    counts = record["counts"]
    print(f"== corpus ({record['source']}): {record['files']} files, Pillow reads {record['pillow_reads']}, "
          f"the worker reads {record['worker_reads']}; {record['seconds']:.0f} s", flush=True)
    print(f"   crashes {counts['crash']}, hangs {counts['hang']}, memory-bound violations {counts['memory']}, "
          f"misbehaving answers {counts['problem']}")
    print(f"   Pillow reads, the worker refuses by design: {record['refused_by_design']}")
    print(f"   the worker reads, Pillow does not: {record['worker_reads_but_pillow_not']}")
    print(f"   Pillow reads, the worker refuses, format accepted ({len(record['refused_but_pillow_reads'])}):")
    for bug in record["refused_but_pillow_reads"]:
        print(f"     {bug['file']} ({bug['format']} {bug['pillow']}): {bug['worker']}")
    for finding in record["findings"]:
        print(f"   {finding}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per file")
    parser.add_argument("--memory-mb", type=float, default=1536.0)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "corpus-latest.json"))
    args = parser.parse_args(argv)
    limits = Limits(case_timeout_s=args.timeout, memory_bound_mb=args.memory_mb, max_isolations=25,
                    max_restarts=10_000)
    record = run(args.workers, limits, cache=args.cache)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"written: {args.out}")
    return 1 if sum(record["counts"].values()) or record["refused_but_pillow_reads"] else 0


if __name__ == "__main__":
    sys.exit(main())

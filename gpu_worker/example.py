"""``make run``: run the worker's handler on a job file and save the result image.

Usage: ``python -m gpu_worker.example [job.json] [--out DIR]`` (default: ``test_input.json``,
``out/``). Prints a short summary: sizes, device, timings and where the files are. The base64
image itself is never printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from gpu_worker.formats import OUTPUT_FORMATS


def save_result(result: dict[str, Any], out_dir: Path, stem: str) -> str:
    """Write one successful result's image to ``out_dir``; returns a one-line summary."""
    meta = result["metadata"]
    if "processed_image" not in result:
        return f"{stem}: {meta['width']}x{meta['height']} {meta['format']} stored at {result.get('processed_image_url')}"
    data = base64.b64decode(result["processed_image"].split("base64,", 1)[1])
    path = out_dir / f"{stem}.{OUTPUT_FORMATS[meta['format']].extension}"
    path.write_bytes(data)
    src = meta["source"]
    timings = ", ".join(f"{k} {v:.1f}" for k, v in meta["timings_ms"].items())
    line = (f"{stem}: {src['width']}x{src['height']} {src['format']} -> {meta['width']}x{meta['height']} "
            f"{meta['format']} ({len(data):,} bytes) on {meta['device']}\n    timings ms: {timings}\n    saved: {path}")
    for target, stats in result.get("analysis", {}).items():
        line += f"\n    analysis of the {target}: mean brightness {stats['brightness']:.1f}, mode {stats['mode']}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", nargs="?", default="test_input.json", help="a RunPod job file {\"input\": {...}}")
    parser.add_argument("--out", default="out", help="folder for the result images")
    args = parser.parse_args(argv)
    os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

    from gpu_worker.handler import run_sync

    job = json.loads(Path(args.job).read_text())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    response = run_sync({"id": "example", **job})
    if not response.get("success"):
        print(f"job failed: {response.get('error')}", file=sys.stderr)
        return 1
    results = response.get("results", [response])
    for i, result in enumerate(results):
        stem = "result" if len(results) == 1 else f"result_{i}"
        print(save_result(result, out_dir, stem) if result["success"] else f"{stem}: failed: {result['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

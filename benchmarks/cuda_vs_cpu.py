"""CUDA output against CPU output on the reference job, stage by stage (needs a GPU).

    python -m benchmarks.cuda_vs_cpu [--n 16] [--out FILE.json]

For the benchmark's 1920x1080 JPEG q90 photos, prints how many levels (0-255) apart the two
devices are after each stage, and after the whole job:

- decode: ``torchvision.io.decode_jpeg`` on the CPU (libjpeg-turbo, Pillow's decoder) against
  nvjpeg on CUDA, one batched call;
- ops: the reference operations (``Pipeline``) on the same CPU-decoded pixels, on each device;
- encode: the CPU result JPEG-encoded q85 on each device, both decoded by Pillow;
- job: the whole reference job through the handler, on a CPU and on a CUDA runtime, PNG out (so
  the comparison sees the decode and the ops, not an encoder);
- job-jpeg: the same with the reference job's JPEG q85 output;
- job-jpeg with CUDA_JPEG_CODEC=libjpeg: JPEG decoded and encoded on the host by libjpeg-turbo;
- job-jpeg with CUDA_JPEG_CODEC=hybrid: decoded by nvjpeg, encoded on the host by libjpeg-turbo.

Each row: max and mean absolute difference, and the share of values more than 1 level apart.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json

import numpy as np
import torch
import torchvision.io as tvio
from PIL import Image

from benchmarks import images
from benchmarks.peers import OPERATIONS, OUTPUT


def diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Levels apart: max, mean, and the fraction of values over 1 apart."""
    a, b = (np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.int16) for x in (a, b))
    d = np.abs(a - b)
    return {"max": int(d.max()), "mean": round(float(d.mean()), 4), "over_1": round(float((d > 1).mean()), 6)}


def worst(rows: list[dict[str, float]]) -> dict[str, float]:
    return {"max": max(r["max"] for r in rows), "mean": round(sum(r["mean"] for r in rows) / len(rows), 4),
            "over_1": round(max(r["over_1"] for r in rows), 6)}


def pil_levels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def run_job(device: str, jpegs: list[bytes], output: dict, codec: str = "nvjpeg") -> list[bytes]:
    """The reference job through the handler on a runtime for ``device`` (and CUDA_JPEG_CODEC
    ``codec``); the result files."""
    from gpu_worker.config import Settings
    from gpu_worker.handler import run_sync
    from gpu_worker.runtime import build_runtime, set_runtime

    settings = dataclasses.replace(Settings(), gpu_worker_device=device, cuda_jpeg_codec=codec,
                                   cache_max_bytes=0, upload_threshold_bytes=1 << 30)  # all inline
    set_runtime(build_runtime(settings))
    job = {"images": [{"image": {"base64": base64.b64encode(j).decode()}} for j in jpegs],
           "operations": OPERATIONS, "output": output}
    response = run_sync({"id": f"compare-{device}", "input": job})
    assert response.get("success"), response
    return [base64.b64decode(r["processed_image"].split(",", 1)[1]) for r in response["results"]]


def compare(n: int) -> dict[str, dict[str, float]]:
    from gpu_worker.codecs.encode import encode
    from gpu_worker.pipeline import Pipeline

    jpegs = images.jpegs(n)
    datas = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    on_cpu = [tvio.decode_jpeg(d) for d in datas]
    on_cuda = tvio.decode_jpeg(datas, device="cuda")
    result = {"decode": worst([diff(a, b) for a, b in zip(on_cpu, on_cuda)])}

    stack = torch.stack(on_cpu)
    ops_cpu = Pipeline(OPERATIONS, device="cpu")(stack)
    ops_cuda = Pipeline(OPERATIONS, device="cuda")(stack.cuda())
    result["ops"] = diff(ops_cpu, ops_cuda)

    quality = OUTPUT["quality"]
    enc_cpu = encode(ops_cpu, "JPEG", quality)
    enc_cuda = encode(ops_cpu.cuda(), "JPEG", quality)
    result["encode"] = worst([diff(pil_levels(a), pil_levels(b)) for a, b in zip(enc_cpu, enc_cuda)])

    for name, output, codec in (("job", {"format": "PNG"}, "nvjpeg"), ("job-jpeg", OUTPUT, "nvjpeg"),
                                ("job-jpeg, CUDA_JPEG_CODEC=libjpeg", OUTPUT, "libjpeg"),
                                ("job-jpeg, CUDA_JPEG_CODEC=hybrid", OUTPUT, "hybrid")):
        cpu, cuda = run_job("cpu", jpegs, output), run_job("cuda", jpegs, output, codec)
        result[name] = worst([diff(pil_levels(a), pil_levels(b)) for a, b in zip(cpu, cuda)])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="photos (default 16)")
    parser.add_argument("--out", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.cuda_vs_cpu needs a CUDA device")
    result = compare(args.n)
    print(f"CUDA against CPU, {args.n} photos 1920x1080 JPEG q90, levels apart (0-255)\n")
    print("| stage | max | mean | share over 1 level |\n|---|---|---|---|")
    for stage, row in result.items():
        print(f"| {stage} | {row['max']} | {row['mean']} | {row['over_1']:.4%} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()

"""Output formats on a 1080p photo: encode time and file size of JPEG, WebP and AVIF (at several
speeds) through the worker's own encoder (`gpu_worker.codecs.encode`, on the CPU), with each
file's PSNR against the photo so sizes can be compared at comparable quality.

    python -m benchmarks.formats                 # photos 0 and 1, quality 80, 5 repeats
    python -m benchmarks.formats --photos 1 --repeats 2 --quality 75

Prints a Markdown table (BENCHMARKS.md, "Output formats"). AVIF runs libavif's own threads (every
core the process may use); JPEG and WebP run on one thread.
"""

from __future__ import annotations

import argparse
import io
import platform
import time

import numpy as np
import torch
from PIL import Image

from benchmarks import images
from benchmarks.timing import median_ms
from gpu_worker.codecs import encode

#: (label, format, extra encoder arguments)
VARIANTS = (
    ("JPEG", "JPEG", {}),
    ("WebP", "WEBP", {}),
    ("WebP lossless", "WEBP", {"lossless": True}),
    ("AVIF speed 4", "AVIF", {"speed": 4}),
    ("AVIF speed 6 (default)", "AVIF", {"speed": 6}),
    ("AVIF speed 8", "AVIF", {"speed": 8}),
    ("AVIF speed 10", "AVIF", {"speed": 10}),
)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def measure(photo: Image.Image, quality: int, repeats: int) -> list[dict]:
    """One row per variant: median encode ms, bytes, PSNR (dB) of the decoded file."""
    array = np.asarray(photo)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
    rows = []
    for label, fmt, extra in VARIANTS:
        ms = median_ms(lambda: encode(tensor, fmt, quality, **extra), repeats)
        data = encode(tensor, fmt, quality, **extra)[0]
        with Image.open(io.BytesIO(data)) as im:
            decoded = np.asarray(im.convert("RGB"))
        rows.append({"variant": label, "ms": ms, "bytes": len(data), "psnr": psnr(array, decoded)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2, help="how many 1080p photos (benchmarks.images)")
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"quality {args.quality}, median of {args.repeats}\n")
    print("| photo | variant | encode ms | KB | PSNR dB |\n| --- | --- | ---: | ---: | ---: |")
    for i in range(args.photos):
        name = images.PHOTOS[i % len(images.PHOTOS)]
        for row in measure(images.image(i), args.quality, args.repeats):
            print(f"| {name} | {row['variant']} | {row['ms']:.0f} | {row['bytes'] / 1000:.0f} | {row['psnr']:.1f} |")


if __name__ == "__main__":
    main()

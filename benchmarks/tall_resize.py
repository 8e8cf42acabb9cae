"""Resize time of tall images against the same pixels laid out wide, and against Pillow.

    python -m benchmarks.tall_resize [--repeats 5]

Each case is a photo-like JPEG decoded as the worker decodes it (libjpeg-turbo through
torchvision: a channels-last tensor), then resized with :func:`kernels.resize` (Lanczos) on the
CPU with the worker's thread settings (``worker_kernels``); the same pixels transposed (the wide
layout, resized to the transposed size) and Pillow's ``Image.resize`` on the same file run beside
it. Prints the median ms of each.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
import torchvision.io as tvio
from PIL import Image

from benchmarks.timing import median_ms
from gpu_worker.config import Settings
from gpu_worker.runtime import worker_kernels
from kernels import resize

#: (width, height) of the tall source, output width (height follows the aspect ratio).
CASES = (((1080, 10001), 540), ((240, 59141), 120), ((1080, 4000), 540))


def photo(size: tuple[int, int]) -> Image.Image:
    """scikit-image's astronaut tiled and scaled to ``size``: photo-like content at any shape."""
    import skimage.data

    base = Image.fromarray(skimage.data.astronaut())
    w, h = size
    tiles = np.tile(np.asarray(base), (max(1, h // 512 + 1), max(1, w // 512 + 1), 1))
    return Image.fromarray(tiles[:h, :w].copy())


def jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with worker_kernels(Settings(), torch.device("cpu")):  # as in a job of the worker
        print(f"torch threads {torch.get_num_threads()}; Lanczos; median of {args.repeats} (ms)")
        print(f"{'source':>12s} {'output':>10s} {'tall':>8s} {'wide':>8s} {'Pillow tall':>12s}")
        for (w, h), out_w in CASES:
            out_h = int(h * out_w / w)
            tall_im = photo((w, h))
            wide_im = tall_im.transpose(Image.Transpose.TRANSPOSE)
            tall = tvio.decode_jpeg(torch.frombuffer(bytearray(jpeg(tall_im)), dtype=torch.uint8))[None]
            wide = tvio.decode_jpeg(torch.frombuffer(bytearray(jpeg(wide_im)), dtype=torch.uint8))[None]
            with Image.open(io.BytesIO(jpeg(tall_im))) as f:
                pil = f.convert("RGB")
            t_tall = median_ms(lambda: resize(tall, (out_h, out_w), "lanczos"), args.repeats)
            t_wide = median_ms(lambda: resize(wide, (out_w, out_h), "lanczos"), args.repeats)
            t_pil = median_ms(lambda: pil.resize((out_w, out_h), Image.Resampling.LANCZOS), args.repeats)
            print(f"{w:>5d}x{h:<6d} {out_w:>4d}x{out_h:<5d} {t_tall:8.1f} {t_wide:8.1f} {t_pil:12.1f}", flush=True)


if __name__ == "__main__":
    main()

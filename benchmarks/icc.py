"""ICC conversion to sRGB per 1080p image: ours (the LittleCMS table applied on the device) against
Pillow's ImageCms (LittleCMS on the host) and pyvips' ``icc_transform`` (LittleCMS inside libvips).

    python -m benchmarks.icc [--n 8] [--repeats 3] [--device cpu] [--profiles adobe,prophoto,p3]

For each profile: ``n`` 1080p photos (benchmarks/images.py) taken as pixels in the profile's space,
converted to sRGB, perceptual intent. Ours: `gpu_worker.color_management.to_srgb` on the images
stacked into one ``(n, 3, 1080, 1920)`` tensor on ``--device`` (the worker's thread set-up on the
CPU); the table is built before timing, and its one-off build (LittleCMS on all 2**24 colours,
host) is reported on its own. Pillow: one transform built once (`ImageCms.buildTransform`), applied
image by image. pyvips: ``icc_transform("srgb", input_profile=..., intent="perceptual")`` image by
image, written to memory so libvips computes it. Milliseconds per image, median of ``--repeats``
after one warm-up. "max diff" is the largest difference from Pillow's pixels, in levels.
Memory: the table's bytes on the device, and on CUDA the peak allocated during the conversion
above what was held before it.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import tempfile
import time

import numpy as np

#: Profile -> where its bytes come from (tests/data/icc, or the test's Display P3 writer).
PROFILES = {
    "adobe": "compatibleWithAdobeRGB1998.icc",
    "prophoto": "ProPhotoRGB.icc",
    "p3": "display_p3",
}


def _profile(name: str) -> bytes:
    import sys

    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
    sys.path.insert(0, tests)
    from icc_profiles import profile

    return profile(PROFILES[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    args = parser.parse_args()

    import pyvips
    import torch
    from PIL import ImageCms

    from benchmarks.images import three_ways
    from benchmarks.timing import median_ms
    from gpu_worker import color_management
    from gpu_worker.config import Settings
    from gpu_worker.device import select_device
    from gpu_worker.runtime import worker_kernels

    pyvips.cache_set_max(0)
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    device = select_device(args.device)
    with worker_kernels(Settings(), device):  # as in a job of the worker
        pils, batch, vips_images = three_ways(args.n, device)
        srgb = ImageCms.createProfile("sRGB")

        print(f"{args.n} x 1920x1080 RGB, ms per image, median of {args.repeats} (ours on {device}, "
              f"torch threads {torch.get_num_threads()})")
        print(f"{'profile':<10} {'table build ms':>14} {'table MB':>8} {'ours':>8} {'Pillow':>8} {'pyvips':>8} "
              f"{'ours max diff':>13} {'pyvips max diff':>15} {'CUDA peak MB':>12}")
        for name in [p for p in args.profiles.split(",") if p]:
            icc = _profile(name)
            source = color_management.read_profile(icc)
            started = time.perf_counter()
            table = color_management.srgb_table(source, device)
            build_ms = (time.perf_counter() - started) * 1000
            table_mb = table.numel() / 1e6

            peak_mb = None
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
                out = color_management.to_srgb(batch, source)
                torch.cuda.synchronize(device)
                peak_mb = (torch.cuda.max_memory_allocated(device) - before - out.numel()) / 1e6
            else:
                out = color_management.to_srgb(batch, source)

            def ours() -> None:
                color_management.to_srgb(batch, source)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)

            transform = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb, "RGB", "RGB",
                                                renderingIntent=ImageCms.Intent.PERCEPTUAL)
            with tempfile.NamedTemporaryFile(suffix=".icc") as f:
                f.write(icc)
                f.flush()

                def vips_one(im):
                    return im.icc_transform("srgb", input_profile=f.name, intent="perceptual").write_to_memory()

                row = [median_ms(ours, args.repeats) / args.n,
                       median_ms(lambda: [transform.apply(im) for im in pils], args.repeats) / args.n,
                       median_ms(lambda: [vips_one(im) for im in vips_images], args.repeats) / args.n]
                vips_first = np.frombuffer(vips_one(vips_images[0]), np.uint8).reshape(1080, 1920, -1)[:, :, :3]
            pillow_first = np.asarray(transform.apply(pils[0])).astype(np.int16)
            ours_diff = int(np.abs(out[0].permute(1, 2, 0).cpu().numpy().astype(np.int16) - pillow_first).max())
            vips_diff = int(np.abs(vips_first.astype(np.int16) - pillow_first).max())
            peak = f"{peak_mb:12.1f}" if peak_mb is not None else f"{'—':>12}"
            print(f"{name:<10} {build_ms:14.0f} {table_mb:8.1f} {row[0]:8.2f} {row[1]:8.2f} {row[2]:8.2f} "
                  f"{ours_diff:13d} {vips_diff:15d} {peak}")


if __name__ == "__main__":
    main()

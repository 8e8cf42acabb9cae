"""The tolerance table for every parity test: max abs difference per pixel (uint8 levels), from
each operation's registry entry (gpu_worker.operations), rtol always 0.

Pillow computes filters and blends in float32 with its own summation order, and torch sums in
another, so a value that lands exactly on a rounding edge can come out one level apart.
"""

from gpu_worker.operations import REGISTRY

#: Op (and the kernels of the ``filter`` op: ``grayscale``) -> allowed max abs difference against Pillow.
PILLOW_ATOL = {name: entry.tolerance for name, entry in REGISTRY.items()}
PILLOW_ATOL["grayscale"] = REGISTRY["filter"].tolerance

#: CUDA against CPU on the same input.
CUDA_VS_CPU_ATOL = 1

"""The one tolerance table for every parity test: max abs difference per pixel (uint8 levels).

Pillow computes filters and blends in float32 with its own summation order, and torch sums in
another, so a value that lands exactly on a rounding edge can come out one level apart.
"""

#: Kernel or op -> allowed max abs difference against Pillow (rtol is always 0).
PILLOW_ATOL = {
    "filter": 1,
    "grayscale": 1,
    "adjust": 1,
    "resize": 1,
    "crop": 0,
}

#: CUDA against CPU on the same input.
CUDA_VS_CPU_ATOL = 1

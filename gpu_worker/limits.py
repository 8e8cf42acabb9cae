"""Bounds the worker keeps by construction, stated once (the README's "Limits and security")."""

#: Most extra resident memory one job takes at its peak, as a multiple of the bytes (width x
#: height x channels) of the largest image it holds: its decoded source, or an intermediate or
#: result larger than that (an enlarging resize, an expanded rotate); decode, orientation,
#: analysis, operations and encode together, plus :data:`JOB_MEMORY_SLACK_BYTES`. WebP output is the exception: libwebp's own
#: buffers come on top, up to about 9x the output's pixels' bytes for RGBA and 3x for RGB.
#: ``tests/test_memory_bound.py`` checks it per step on 12 MP images; ``benchmarks/memory_peak.py``
#: measures it (BENCHMARKS.md, "Memory per job").
JOB_MEMORY_FACTOR = 4.0

#: The fixed part of the bound: work buffers of a fixed size (a few MB per thread) and what the
#: allocator keeps in its free lists between them, whatever the image's size.
JOB_MEMORY_SLACK_BYTES = 64_000_000

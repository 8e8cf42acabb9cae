"""Bounds the worker keeps by construction, stated once (the README's "Limits and security")."""

#: Most extra resident memory one job may take at its peak, as a multiple of its decoded source
#: pixels' bytes (width x height x channels): decode, operations, analysis and encode together.
#: ``tests/test_memory_bound.py`` checks it per step; ``benchmarks/memory_peak.py`` measures it.
JOB_MEMORY_FACTOR = 4.0

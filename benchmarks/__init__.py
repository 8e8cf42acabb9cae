"""Benchmarks: this project against plain Pillow and libvips, side by side in one run."""

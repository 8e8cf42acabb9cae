"""``python -m gpu_worker`` with one native crash injected, for tests/test_supervisor.py.

Decoding a PNG with the ``tEXt`` chunk ``crash-with`` = N dies from SIGSEGV (a read of address 0
through ctypes, as a faulting decoder would) once N jobs are in flight according to the worker's
own crash journal (at most 30 s later), so a test can crash the worker with bystander jobs held.
Every other image decodes as usual. Run as a script: ``python tests/crash_injection/crashing_worker.py``.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import re
import time

from gpu_worker.__main__ import main
from gpu_worker.crash_journal import JOURNAL_ENV, read_journal

MARKER = re.compile(rb"tEXtcrash-with\x00(\d+)")
decode_module = importlib.import_module("gpu_worker.codecs.decode")
real_decode_cpu = decode_module._decode_cpu


def crashing_decode_cpu(data, info):
    marker = MARKER.search(data)
    if marker:
        deadline = time.monotonic() + 30
        while len(read_journal(os.environ[JOURNAL_ENV])) < int(marker[1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        ctypes.string_at(0)  # SIGSEGV
    return real_decode_cpu(data, info)


decode_module._decode_cpu = crashing_decode_cpu

if __name__ == "__main__":
    main()

"""GPU image worker: Pillow-exact operations on batched tensors, as a library and a RunPod worker.

>>> from gpu_worker import Pipeline
>>> pipe = Pipeline([{"type": "resize", "params": {"width": 800}}])
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Pipeline", "Plan", "compile_plan"]
__version__ = "0.1.0"

#: Public names and their modules, imported on first use: the supervisor process
#: (gpu_worker.supervisor) imports this package and must not load torch.
_LAZY = {"Pipeline": "gpu_worker.pipeline", "Plan": "gpu_worker.plan", "compile_plan": "gpu_worker.plan"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gpu_worker' has no attribute {name!r}")

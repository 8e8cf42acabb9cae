"""GPU image worker: Pillow-exact operations on batched tensors, as a library and a RunPod worker.

>>> from gpu_worker import Pipeline
>>> pipe = Pipeline([{"type": "resize", "params": {"width": 800}}])
"""

from gpu_worker.pipeline import Pipeline
from gpu_worker.plan import Plan, compile_plan

__all__ = ["Pipeline", "Plan", "compile_plan"]
__version__ = "0.1.0"

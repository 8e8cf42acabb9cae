"""RunPod Hub's entry file: the worker's handler, started the way ``python -m gpu_worker`` starts it.

RunPod Hub expects a ``handler.py`` (with a ``Dockerfile`` and ``README.md``) at the repository
root. The handler lives in :mod:`gpu_worker.handler`; ``python handler.py`` runs exactly what the
images' ``CMD ["python", "-u", "-m", "gpu_worker"]`` runs (settings, SDK patches, warm-up,
supervisor, then ``runpod.serverless.start``), and takes the same arguments (``--test_input``,
``--rp_serve_api``, ``serve``).
"""

from gpu_worker.__main__ import main
from gpu_worker.handler import handler

__all__ = ["handler", "main"]

if __name__ == "__main__":
    main()

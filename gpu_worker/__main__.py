"""``python -m gpu_worker``: start the RunPod worker.

The SDK's own modes work unchanged: with no ``RUNPOD_WEBHOOK_GET_JOB`` it runs ``test_input.json``
(or ``--test_input '{...}'``) once; ``--rp_serve_api`` serves the local API; otherwise it polls
RunPod's job queue.
"""

from __future__ import annotations

import os


def main() -> None:
    from gpu_worker.config import load_settings

    settings = load_settings()
    # The SDK reads its log level at import; unset, it is DEBUG and logs whole outputs (base64).
    os.environ.setdefault("RUNPOD_LOG_LEVEL", settings.runpod_log_level)

    import runpod

    from gpu_worker.handler import handler
    from gpu_worker.startup import prepare_worker

    prepare_worker(settings)
    runpod.serverless.start({
        "handler": handler,
        "concurrency_modifier": lambda current: settings.max_concurrency,
    })


if __name__ == "__main__":
    main()

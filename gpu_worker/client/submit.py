"""One job run with retries: transient failures are tried again after a growing pause, input
errors are not."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from gpu_worker.client.backends import Permanent, Stopped, Transient


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` further tries after the first; the pause before try ``n`` (1-based) is
    ``backoff_s * 2 ** (n - 1)``, at most ``max_backoff_s``, times a random 0.5-1.5 (so clients
    that failed together do not come back together)."""

    retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def pause(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


class GaveUp(Exception):
    """The job failed: permanently, or transiently on every try. ``transient`` says which;
    ``kind`` is the last transient failure's :attr:`Transient.kind` (None when permanent);
    ``halted`` says a set ``stop`` cut the tries short."""

    def __init__(self, message: str, transient: bool, kind: Optional[str] = None, halted: bool = False) -> None:
        super().__init__(message)
        self.transient, self.kind, self.halted = transient, kind, halted


def run_with_retries(run: Callable[[dict[str, Any]], dict[str, Any]], job_input: dict[str, Any],
                     policy: RetryPolicy, stop: Optional[threading.Event] = None,
                     on_retry: Callable[[int, str], None] = lambda attempt, error: None) -> dict[str, Any]:
    """``run(job_input)``'s output; GaveUp with the last error when no try succeeded. A set
    ``stop`` ends the waiting between tries (GaveUp, transient, ``halted``)."""
    for attempt in range(policy.retries + 1):
        try:
            return run(job_input)
        except Permanent as exc:
            raise GaveUp(str(exc), transient=False) from None
        except Stopped as exc:
            raise GaveUp(f"{exc} (not tried again: the run is stopping)", transient=True, halted=True) from None
        except Transient as exc:
            if attempt == policy.retries:
                raise GaveUp(f"{exc} (gave up after {attempt + 1} tries)", transient=True, kind=exc.kind) from None
            on_retry(attempt + 1, str(exc))
            pause = policy.pause(attempt + 1)
            if stop is not None:
                if stop.wait(pause):
                    raise GaveUp(f"{exc} (not tried again: the run is stopping)", transient=True, kind=exc.kind,
                                 halted=True) from None
            else:
                time.sleep(pause)
    raise AssertionError("unreachable")

"""The circuit breaker: when the endpoint is gone, stop sending jobs.

Each job already retries its transient failures (:mod:`gpu_worker.client.submit`); a job that
still failed is one data point. When ``threshold`` jobs in a row end failing the same transient
way (the same :attr:`~gpu_worker.client.backends.Transient.kind`: "network: ConnectionError",
"HTTP 503", ...) and none ended with an answer in between, the endpoint is taken to be down: the
run sends no more jobs, and the images not sent are reported as not attempted (the manifest has
no record of them, so running the same command again sends them).

A job that got an answer (its images done, or some failed for their input, or the whole job
refused for its input) shows the endpoint is up and starts the count again; a failure of
another kind starts it at one.
"""

from __future__ import annotations

import threading
from typing import Optional

#: Jobs in a row that fail the same transient way before the run stops (``--give-up-after``).
DEFAULT_THRESHOLD = 3


class Breaker:
    """Counts jobs that failed the same transient way in a row; thread-safe.

    Args:
        threshold: that many in a row trip it; 0 never does.
    """

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.reason: Optional[str] = None  # set once tripped: why the run stopped
        self._kind: Optional[str] = None
        self._count = 0
        self._lock = threading.Lock()

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def answered(self) -> None:
        """A job got an answer from the endpoint: the count starts again."""
        with self._lock:
            self._kind, self._count = None, 0

    def failed(self, kind: str, error: str) -> bool:
        """A job failed transiently on every try, of ``kind``, last with ``error``. True when
        this trips the breaker (once; later calls return False)."""
        with self._lock:
            if self.reason is not None or self.threshold <= 0:
                return False
            self._count = self._count + 1 if kind == self._kind else 1
            self._kind = kind
            if self._count < self.threshold:
                return False
            self.reason = (f"{self._count} jobs in a row failed the same way ({kind}) with none answered in "
                           f"between: the endpoint looks down or unreachable; the last error: {error}")
            return True

"""The result cache the job contract promises (``metadata.cached``): bounded in bytes, least
recently used evicted first.

Keys hash the source bytes with the normalised operations and output settings, so the same image
under the same job gives a hit whatever URL or base64 spelling it came from. Values are the
encoded result and its metadata; their size is counted in bytes of encoded image.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class ResultCache:
    """A thread-safe LRU cache holding at most ``max_bytes`` of values.

    >>> cache = ResultCache(max_bytes=10)
    >>> cache.put("a", "x" * 6, 6); cache.put("b", "y" * 6, 6)
    >>> cache.get("a") is None, cache.get("b")
    (True, 'yyyyyy')
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            self._items.move_to_end(key)
            return entry[0]

    def put(self, key: str, value: Any, size: int) -> None:
        """Store ``value`` counted as ``size`` bytes; a value larger than the cache is not kept."""
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def __len__(self) -> int:
        return len(self._items)

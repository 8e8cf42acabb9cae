"""How the kernels run in the calling context: a value per call, never a process-wide switch.

Two choices are not the kernels' to make, since they depend on who calls them:

- ``piece_map`` (CPU): how a kernel's independent pieces are spread over threads
  (:mod:`kernels.parallel`). None, the default, runs them one after another in the calling
  thread, leaving parallel work to torch's own threads.
- ``compiled_resize`` (CUDA): whether the resize passes run as compiled kernels
  (:mod:`kernels.resize_cuda`) or as the eager tap loop; True by default.

A library user, or a test calling a kernel, gets the defaults. The worker decides its own once
from its settings (``gpu_worker.stages.policy.DevicePolicy``) and runs each job inside
:func:`using`. The value lives in a :class:`contextvars.ContextVar`, so two runtimes with different
settings in one process do not see each other's. A new thread starts with the defaults: work a job
hands to other threads carries the job's context (``contextvars.copy_context().run``), as
``gpu_worker.cpu_pool`` and ``gpu_worker.overlap`` do.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

#: ``piece_map(work, items) -> [work(item) for item in items]``, in order, possibly on other threads.
PieceMap = Callable[[Callable[[Any], Any], Iterable[Any]], list]


@dataclass(frozen=True)
class KernelContext:
    """How the kernels called in this context run; see the module docstring."""

    piece_map: PieceMap | None = None
    compiled_resize: bool = True


DEFAULT = KernelContext()

_current: contextvars.ContextVar[KernelContext] = contextvars.ContextVar("kernel_context", default=DEFAULT)


def current() -> KernelContext:
    """The context kernels called from here run in."""
    return _current.get()


@contextmanager
def using(context: KernelContext) -> Iterator[KernelContext]:
    """Run the kernels called inside the ``with`` block (in this thread, and in work handed on in
    a copy of this context) in ``context``; the previous one is back afterwards."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)

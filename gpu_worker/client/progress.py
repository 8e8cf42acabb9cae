"""The progress bar (tqdm: images done, images/s, ETA) and the run's summary."""

from __future__ import annotations

import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass
class Summary:
    """What a run did.

    Attributes:
        listed: images the sources listed.
        done: images processed and written by this run.
        failed: ``{"source", "error"}`` for each image that was not.
        skipped: images the manifest already had done (same operations), not sent again.
        not_attempted: images never sent because the run stopped early (``stopped``); the
            manifest has no record of them, so running the same command again sends them.
            ``listed == done + len(failed) + skipped + not_attempted``.
        stopped: why the run stopped before sending every image ("" when it did not).
        bytes_in: bytes read from files and objects and sent (URL sources: the sizes the worker
            reported fetching).
        bytes_out: bytes of results written.
        wall_s: seconds from the start of the run to its end.
        dest: where the results went.
    """

    listed: int = 0
    done: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: int = 0
    not_attempted: int = 0
    stopped: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    wall_s: float = 0.0
    dest: str = ""

    @property
    def images_per_s(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "failed_count": len(self.failed), "wall_s": round(self.wall_s, 3),
                "images_per_s": round(self.images_per_s, 2)}

    def text(self) -> str:
        lines = [f"done {self.done}, failed {len(self.failed)}, skipped {self.skipped} (already done) "
                 f"of {self.listed} images, in {self.wall_s:.1f} s ({self.images_per_s:.1f} images/s)",
                 f"bytes in {self.bytes_in:,}, bytes out {self.bytes_out:,}; results in {self.dest}"]
        lines += [f"failed: {f['source']}: {f['error']}" for f in self.failed]
        if self.stopped:
            lines.append(f"STOPPED: {self.stopped}")
            lines.append(f"{self.not_attempted} images not attempted: run the same command again (when the endpoint "
                         "is back) for them and the failed ones; what is done is not sent again")
        return "\n".join(lines)


#: tqdm's default bar with the rate always in images/s (tqdm's own turns it into s/img below 1/s).
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


class Progress:
    """A thread-safe progress bar over the images to send, on stderr: images ended of
    ``total``, images/s and the ETA (tqdm's ``img/s`` and ``<remaining``), and how many failed.
    ``initial_failed`` images failed before anything ran (refused by the packer): counted, not
    in the rate. ``enabled`` None shows it only on a terminal."""

    def __init__(self, total: int, enabled: Optional[bool] = None, initial_failed: int = 0) -> None:
        from tqdm import tqdm

        self._lock = threading.Lock()
        self._bar = tqdm(total=total, initial=initial_failed, unit="img", file=sys.stderr, dynamic_ncols=True,
                         smoothing=0.1, disable=(None if enabled is None else not enabled), desc="images",
                         bar_format=BAR_FORMAT)
        self._failed = initial_failed
        if initial_failed:
            self._bar.set_postfix(failed=initial_failed)

    def advance(self, done: int, failed: int) -> None:
        with self._lock:
            self._failed += failed
            if failed:
                self._bar.set_postfix(failed=self._failed, refresh=False)
            self._bar.update(done + failed)

    def note(self, message: str) -> None:
        with self._lock:
            self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()

"""A group of results encoded as their job's ``output`` says: format, quality, lossless, speed,
the kept metadata and the size budget.

Called by the encode stage (`gpu_worker.stages.device`) for items that share one ``output``
(and, on the GPU, one shape); returns, per item, the file and what the response's metadata says
about it (`Encoded.metadata`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from gpu_worker.codecs import encode
from gpu_worker.codecs.budget import encode_within
from gpu_worker.codecs.metadata import Kept, SourceMetadata, kept_metadata, writable
from gpu_worker.formats import OUTPUT_FORMATS
from gpu_worker.schema import OutputSpec


@dataclass(frozen=True)
class Encoded:
    """One result's file and the facts about it the response reports.

    Attributes:
        data: the encoded file.
        quality: the quality it was encoded at (the job's, or lower under ``max_bytes``).
        budget_met: under ``max_bytes``: whether the file fits; None without a budget.
        kept: the metadata written into it ("exif", "xmp").
        speed: the encoder's speed (AVIF); None where the format has none.
    """

    data: bytes
    quality: int
    budget_met: Optional[bool] = None
    kept: list[str] = field(default_factory=list)
    speed: Optional[int] = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The keys this adds to the response's ``metadata``."""
        out: dict[str, Any] = {"quality": self.quality, "kept_metadata": list(self.kept)}
        if self.budget_met is not None:
            out["max_bytes_met"] = self.budget_met
        if self.speed is not None:
            out["speed"] = self.speed
        return out


def encode_results(batch: torch.Tensor, output: OutputSpec, sources: Sequence[SourceMetadata],
                   nvjpeg: bool) -> list[Encoded]:
    """Encode a uint8 ``(B, C, H, W)`` batch as ``output`` says.

    Args:
        batch: the results, on any device.
        output: the job's output settings, shared by the batch.
        sources: per image, what its source carried (kept when ``output.keep_metadata``).
        nvjpeg: see `gpu_worker.codecs.encode`.

    Returns:
        One `Encoded` per image, in batch order.
    """
    fmt = OUTPUT_FORMATS[output.format]
    kept = [writable(output.format, kept_metadata(s, fmt.metadata)) if output.keep_metadata else Kept()
            for s in sources]
    any_kept = any(k.names() for k in kept)

    def encode_at(images: torch.Tensor, quality: int, indices: list[int]) -> list[bytes]:
        return encode(images, output.format, quality, lossless=output.lossless, nvjpeg=nvjpeg,
                      speed=output.encoder_speed, metadata=[kept[i] for i in indices] if any_kept else None)

    if output.max_bytes is None:
        files = encode_at(batch, output.quality, list(range(batch.shape[0])))
        return [Encoded(data, output.quality, None, k.names(), output.encoder_speed) for data, k in zip(files, kept)]
    fitted = encode_within(batch, output.quality, output.max_bytes, encode_at)
    return [Encoded(f.data, f.quality, f.met, k.names(), output.encoder_speed) for f, k in zip(fitted, kept)]

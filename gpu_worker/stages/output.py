"""A group of results encoded as their job's ``output`` says: format, quality, lossless, speed,
the kept metadata and ICC profile, and the size budget.

What a result keeps (`gpu_worker.codecs.containers.Kept`) is decided before encoding and written
by the encoder into every file it tries, so a ``max_bytes`` budget counts the EXIF, XMP and the
profile too.

Called by the encode stage (`gpu_worker.stages.device`) for items that share one ``output``
(and, on the GPU, one shape); returns, per item, the file and what the response's metadata says
about it (`Encoded.metadata`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from gpu_worker.codecs import animation, encode
from gpu_worker.codecs.animation import Timing
from gpu_worker.codecs.budget import Fitted, encode_within
from gpu_worker.codecs.containers import Kept, writable
from gpu_worker.codecs.encode import stored_colours
from gpu_worker.codecs.metadata import SourceMetadata, kept_metadata
from gpu_worker.color_management import SourceProfile
from gpu_worker.formats import OUTPUT_FORMATS
from gpu_worker.schema import OutputSpec


@dataclass(frozen=True)
class Encoded:
    """One result's file and the facts about it the response reports.

    Attributes:
        data: the encoded file.
        quality: the quality it was encoded at (the job's, or lower under ``max_bytes``).
        budget_met: under ``max_bytes``: whether the file fits; None without a budget.
        kept: what of the source was written into it ("exif", "xmp", "icc").
        speed: the encoder's speed (AVIF); None where the format has none.
        frames: an animated file's frame count as written (the GIF and WebP writers merge a frame
            identical to the one before it into that one, adding its duration); None for a still.
    """

    data: bytes
    quality: int
    budget_met: Optional[bool] = None
    kept: list[str] = field(default_factory=list)
    speed: Optional[int] = None
    frames: Optional[int] = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The keys this adds to the response's ``metadata``."""
        out: dict[str, Any] = {"quality": self.quality, "kept_metadata": list(self.kept)}
        if self.budget_met is not None:
            out["max_bytes_met"] = self.budget_met
        if self.speed is not None:
            out["speed"] = self.speed
        if self.frames is not None:
            out["frames"] = self.frames
        return out


def kept_profile(profile: Optional[SourceProfile], format: str, channels: int) -> Optional[bytes]:
    """The profile (``output.icc`` "keep") a ``format`` file of a ``channels``-channel result
    carries: ``profile``'s bytes when the format carries one and the profile describes the
    file's colours (a grey profile in a grey file, RGB in RGB: WebP stores grey as RGB, so a
    grey profile is not written there, nor after an operation turned grey into RGB or back)."""
    if profile is None or not OUTPUT_FORMATS[format].icc:
        return None
    colours = stored_colours(format, channels)
    return profile.data if profile.applies_to("L" if colours == 1 else "RGB", colours) else None


def encode_results(batch: torch.Tensor, output: OutputSpec, sources: Sequence[SourceMetadata],
                   nvjpeg: bool, profiles: Optional[Sequence[Optional[SourceProfile]]] = None,
                   timing: Optional[Timing] = None) -> list[Encoded]:
    """Encode a uint8 ``(B, C, H, W)`` batch as ``output`` says.

    Args:
        batch: the results, on any device.
        output: the job's output settings, shared by the batch.
        sources: per image, what its source carried (kept when ``output.keep_metadata``).
        nvjpeg: see `gpu_worker.codecs.encode`.
        profiles: per image, the source's ICC profile to keep (``output.icc`` "keep"; the
            caller decides: `gpu_worker.stages.color.profile_to_keep`), or None; embedded where
            `kept_profile` says.
        timing: the batch is one kept animation's frames ``(F, C, H, W)`` with these durations,
            loop and disposal, written as one animated file (one source, one ``sources`` entry).

    Returns:
        One `Encoded` per image, in batch order.
    """
    fmt = OUTPUT_FORMATS[output.format]
    profiles = profiles if profiles is not None else [None] * len(sources)
    kept = []
    for source, profile in zip(sources, profiles):
        metadata = kept_metadata(source, fmt.metadata) if output.keep_metadata else Kept()
        icc = kept_profile(profile, output.format, batch.shape[1])
        kept.append(writable(output.format, dataclasses.replace(metadata, icc=icc)))
    any_kept = any(kept)
    if timing is not None:
        batch = batch.unsqueeze(0)  # one "image": the whole animation

    def encode_at(images: torch.Tensor, quality: int, indices: list[int]) -> list[bytes]:
        if timing is not None:
            return [animation.encode_frames(images[0], output.format, timing, quality, lossless=output.lossless,
                                            kept=kept[0])]
        return encode(images, output.format, quality, lossless=output.lossless, nvjpeg=nvjpeg,
                      speed=output.encoder_speed, metadata=[kept[i] for i in indices] if any_kept else None)

    if output.max_bytes is None:
        fitted = [Fitted(data, output.quality, None)
                  for data in encode_at(batch, output.quality, list(range(batch.shape[0])))]
    else:
        fitted = encode_within(batch, output.quality, output.max_bytes, encode_at)
    return [Encoded(f.data, f.quality, f.met, k.names(), output.encoder_speed,
                    animation.written_frames(f.data) if timing is not None else None) for f, k in zip(fitted, kept)]

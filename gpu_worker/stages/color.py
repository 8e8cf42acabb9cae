"""The ICC profile stages: sources converted to sRGB right after decoding (``output.icc`` "srgb",
the default), and, with "keep", the source's profile handed to the encoder
(`gpu_worker.stages.output`), which writes it into the file it encodes.

CMYK sources are converted through their profile while they are decoded, on the host
(gpu_worker.codecs.decode), whatever ``output.icc`` says: no output format here holds CMYK.
"""

from __future__ import annotations

from typing import Optional

from gpu_worker.color_management import SourceProfile, to_srgb
from gpu_worker.stages.item import Item, describe_failure, live


def convert_sources(items: list[Item]) -> None:
    """Each decoded source with a profile of its colours, and ``output.icc`` "srgb", converted to
    sRGB on its device (`gpu_worker.color_management.to_srgb`; sRGB profiles leave it as it is)."""
    for item in live(items):
        profile = item.profile
        if profile is None or item.source is None or item.spec.output.icc != "srgb" or profile.color_space == "CMYK":
            continue
        try:
            item.source = to_srgb(item.source, profile)
        except Exception as exc:  # noqa: BLE001 - one item's profile must not end the others
            item.fail(item.named(describe_failure("converting the source to sRGB by its ICC profile", exc)))


def profile_to_keep(item: Item) -> Optional[SourceProfile]:
    """The source profile ``item``'s result keeps: its own with ``output.icc`` "keep", unless
    the source was CMYK (converted to sRGB while decoding); None otherwise."""
    profile = item.profile
    if profile is None or item.spec.output.icc != "keep" or profile.color_space == "CMYK":
        return None
    return profile

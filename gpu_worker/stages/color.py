"""The ICC profile stages: sources converted to sRGB right after decoding (``output.icc`` "srgb",
the default), and the source's profile embedded in the encoded result ("keep").

CMYK sources are converted through their profile while they are decoded, on the host
(gpu_worker.codecs.decode), whatever ``output.icc`` says: no output format here holds CMYK.
"""

from __future__ import annotations

from gpu_worker.codecs.icc import embed_profile
from gpu_worker.color_management import to_srgb
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


def embed_profiles(items: list[Item]) -> None:
    """With ``output.icc`` "keep": the source's profile put into each encoded result whose format
    carries one (gpu_worker.codecs.icc.CARRIES_PROFILE)."""
    for item in live(items):
        profile = item.profile
        if item.encoded is None or profile is None or item.spec.output.icc != "keep" or profile.color_space == "CMYK":
            continue
        try:
            item.encoded = embed_profile(item.encoded, item.spec.output.format, profile.data)
        except Exception as exc:  # noqa: BLE001
            item.fail(item.named(describe_failure("embedding the ICC profile", exc)))

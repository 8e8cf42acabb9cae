"""The job's input schema (the job contract of RunPod's custom-worker tutorial), validated before
any download or decode.

A single-image job::

    {"image": {"url": "https://..."} | {"base64": "..."},
     "operations": [{"type": "resize", "params": {"width": 800}}, ...],
     "output": {"format": "JPEG", "quality": 1..100, "upload": false, "lossless": false,
                "speed": 0..10, "keep_metadata": false, "max_bytes": 1.., "icc": "srgb" | "keep"},
     "analysis": "source" | "result" | "both" | true | false}

A batch job is ``{"images": [<single-image job>, ...]}``; ``operations``, ``output`` and
``analysis`` given beside ``images`` are defaults for items that leave them out. Items are
validated one by one, so a bad item fails only itself.

The output formats, and which ``output`` settings apply to which of them, are the formats table's
(`gpu_worker.formats`); the fields' descriptions are built from it.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from gpu_worker.errors import InvalidInput, LimitExceeded
from gpu_worker.formats import OUTPUT_FORMATS, QUALITY_RANGE, formats_with, output_format
from gpu_worker.validation import describe, short



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ImageSource(_Strict):
    """Where the image comes from: exactly one of ``url`` or ``base64``."""

    url: Optional[str] = Field(default=None, min_length=1, max_length=8192)
    base64: Optional[str] = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.url is None) == (self.base64 is None):
            raise ValueError("give exactly one of 'url' or 'base64'")
        return self


_SPEEDS = [f.speed for f in OUTPUT_FORMATS.values() if f.speed is not None]


def _applies(attribute: str) -> str:
    """The formats a setting applies to, for its description: "JPEG, WEBP, AVIF"."""
    return ", ".join(formats_with(attribute))


def _format_names() -> str:
    """The accepted names, for the description."""
    aliases = [f"{a} ({f.name})" for f in OUTPUT_FORMATS.values() for a in f.aliases]
    return f"one of {', '.join(OUTPUT_FORMATS)}, any case" + (f"; also {', '.join(aliases)}" if aliases else "")


def _speed_ranges() -> str:
    """Each format's ``speed`` range and default, for the description."""
    return "; ".join(f"{f.name}: {f.speed[0]} slowest, smallest file, to {f.speed[1]} fastest, default {f.speed[2]}"
                     for f in OUTPUT_FORMATS.values() if f.speed is not None)


class OutputSpec(_Strict):
    """How the result is encoded and returned. Which settings apply to which format is the
    formats table's (`gpu_worker.formats`); a setting given for a format it does not apply to is
    refused, naming the field."""

    format: str = Field(default="JPEG", description=_format_names())
    quality: int = Field(default=85, ge=QUALITY_RANGE[0], le=QUALITY_RANGE[1],
                         description=f"the encoder's quality ({_applies('quality')}; the others ignore it)")
    upload: bool = Field(default=False, description="put the result in the bucket and return a presigned URL "
                                                     "even when it is small")
    lossless: bool = Field(default=False, description=f"store every pixel exactly ({_applies('lossless')})")
    speed: Optional[int] = Field(default=None, ge=min(s[0] for s in _SPEEDS), le=max(s[1] for s in _SPEEDS),
                                 description=f"the encoder's speed ({_speed_ranges()}); unset: the format's default")
    keep_metadata: bool = Field(default=False, description="keep the source's EXIF (orientation set to 1) and XMP "
                                                           f"where the format carries them ({_applies('metadata')})")
    max_bytes: Optional[int] = Field(default=None, ge=1, description=(
        f"the largest file, bytes: the highest quality not above `quality` that fits ({_applies('budget')})"))
    icc: Literal["srgb", "keep"] = Field(default="srgb", description=(
        "`srgb`: a source with an ICC profile that is not sRGB is converted to sRGB before the operations, "
        "and the result carries no profile; `keep`: the pixels stay in the source's space and its profile "
        "is embedded in the result"))

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        try:
            return output_format(value).name
        except KeyError:
            raise ValueError(f"unknown output format {short(value)}; allowed: {', '.join(OUTPUT_FORMATS)}") from None

    @field_validator("lossless", "speed", "max_bytes")
    @classmethod
    def _applies_to_format(cls, value: Any, info: ValidationInfo) -> Any:
        """A setting for a format it does not apply to is an error (not silently ignored)."""
        fmt = info.data.get("format")
        if fmt is None or value in (None, False):
            return value
        attribute = {"lossless": "lossless", "speed": "speed", "max_bytes": "budget"}[info.field_name]
        allowed = formats_with(attribute)
        if fmt not in allowed:
            raise ValueError(f"applies to {', '.join(allowed)} only, not {fmt}")
        if info.field_name == "speed":
            low, high, _ = OUTPUT_FORMATS[fmt].speed
            if not low <= value <= high:
                raise ValueError(f"{fmt} takes speed {low} to {high}")
        if info.field_name == "max_bytes" and info.data.get("lossless"):
            raise ValueError("has no quality to search with lossless: true; give one of them")
        return value

    @property
    def encoder_speed(self) -> Optional[int]:
        """The speed the encoder runs at: the job's, else the format's default (None: no speed)."""
        spec = OUTPUT_FORMATS[self.format].speed
        return None if spec is None else (spec[2] if self.speed is None else self.speed)


ANALYSIS_TARGETS = ("source", "result", "both")


class ImageJob(_Strict):
    """One image, its operations, its output settings and what to analyse."""

    image: ImageSource
    operations: list[Any] = Field(default_factory=list)  # validated by gpu_worker.plan
    output: OutputSpec = Field(default_factory=OutputSpec)
    analysis: Any = False

    @field_validator("analysis")
    @classmethod
    def _known_analysis(cls, value: Any) -> Any:
        if isinstance(value, bool) or value in ANALYSIS_TARGETS:
            return value
        raise ValueError(f"must be true, false or one of {', '.join(ANALYSIS_TARGETS)}")

    @property
    def analysis_targets(self) -> tuple[str, ...]:
        """Which images to analyse: () / ("source",) / ("result",) / ("source", "result")."""
        if self.analysis is True or self.analysis == "result":
            return ("result",)
        if self.analysis == "source":
            return ("source",)
        if self.analysis == "both":
            return ("source", "result")
        return ()


ITEM_FIELDS = sorted(ImageJob.model_fields)
BATCH_DEFAULT_FIELDS = ("operations", "output", "analysis")


def parse_item(data: Any, where: str = "input") -> ImageJob:
    """Validate one single-image job; InvalidInput names the field and the problem."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be an object, got {type(data).__name__}")
    try:
        return ImageJob.model_validate(data)
    except ValidationError as exc:
        prefix = "" if where == "input" else where
        raise InvalidInput(describe(exc, prefix, {where: ITEM_FIELDS})) from None


def split_batch(data: dict, max_items: int) -> list[dict]:
    """The raw items of a batch job, each with the batch's defaults filled in (not yet validated)."""
    images = data["images"]
    extra = sorted(set(data) - {"images", *BATCH_DEFAULT_FIELDS})
    if extra:
        raise InvalidInput(f"input: unknown field {short(extra[0])} beside 'images'; allowed: "
                           f"{', '.join(('images', *BATCH_DEFAULT_FIELDS))}")
    if not isinstance(images, list):
        raise InvalidInput(f"input.images must be a list of image jobs, got {type(images).__name__}")
    if not images:
        raise InvalidInput("input.images is empty: give at least one image job")
    if len(images) > max_items:
        raise LimitExceeded(f"{len(images)} images is over the limit of {max_items} per batch job (MAX_BATCH_ITEMS)")
    defaults = {key: data[key] for key in BATCH_DEFAULT_FIELDS if key in data}
    return [{**defaults, **item} if isinstance(item, dict) else item for item in images]

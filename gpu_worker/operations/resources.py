"""Resource parameters: an operation parameter that names an image the job's intake fetches.

A parameter typed :class:`ImageResource` (``overlay``'s ``image``) is ``{"url": ...}`` or
``{"base64": ...}``, validated like the job's own ``image``. Compiling a plan touches no network;
before any source is decoded the job's intake fetches, probes (the same byte and pixel limits as a
source) and decodes every resource of the job once (:func:`gpu_worker.resources.load_resources`),
and :meth:`gpu_worker.plan.Plan.with_resources` gives the plan whose parameters hold the decoded
images. A loaded resource stands in the plan's key as the SHA-256 of its bytes, so equal images
give equal keys (and stack together) whatever URL they came from. ``bind`` reads the image from
:attr:`ImageResource.image`. This module defines no ``OPERATION``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from pydantic import PrivateAttr, model_serializer

from gpu_worker.errors import InvalidInput
from gpu_worker.schema import ImageSource


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A fetched and decoded resource: uint8 ``(C, H, W)`` (C 1..4, EXIF orientation applied) on
    the device the job runs on, and the SHA-256 (hex) of its encoded bytes."""

    image: torch.Tensor
    digest: str


class ImageResource(ImageSource):
    """An image a parameter names: exactly one of ``url`` (http/https) or ``base64``, as the job's
    own ``image`` (the same model)."""

    _loaded: Optional[LoadedImage] = PrivateAttr(default=None)

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> Any:
        # In a plan's key a loaded image is its content's digest (short, and the same for equal
        # images from any URL); before loading it is what the job gave.
        return {"sha256": self._loaded.digest} if self._loaded is not None else handler(self)

    def loaded(self, image: LoadedImage) -> "ImageResource":
        """A copy of this resource holding its decoded ``image``."""
        copy = self.model_copy()
        copy._loaded = image
        return copy

    @property
    def image(self) -> torch.Tensor:
        """The decoded image, uint8 ``(C, H, W)``; InvalidInput when it has not been loaded."""
        if self._loaded is None:
            raise InvalidInput("the image has not been fetched: a job's intake loads it before decoding, "
                               "a Pipeline when it is made (gpu_worker.resources.load_resources)")
        return self._loaded.image

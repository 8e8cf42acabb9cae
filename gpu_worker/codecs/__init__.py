"""Image codecs: header probe, decode to device tensors, encode batches.

Flow: ``probe(data)`` (header only) -> ``check_pixels(info, limit)`` -> ``decode(data, device,
info)`` or ``decode_batch(...)`` -> kernels -> ``encode(batch, format, quality)``.
Tensors are uint8 ``(C, H, W)`` per image and ``(B, C, H, W)`` per batch; C is 1 (L), 2 (LA),
3 (RGB) or 4 (RGBA), alpha last when C is even.
"""

from gpu_worker.codecs.decode import apply_orientation, decode, decode_batch
from gpu_worker.codecs.encode import FORMATS, encode, flatten_alpha
from gpu_worker.codecs.probe import ACCEPTED_FORMATS, SourceInfo, check_pixels, probe

__all__ = [
    "ACCEPTED_FORMATS",
    "FORMATS",
    "SourceInfo",
    "apply_orientation",
    "check_pixels",
    "decode",
    "decode_batch",
    "encode",
    "flatten_alpha",
    "probe",
]

"""Pillow-exact image kernels on ``(B, C, H, W)`` uint8 tensors.

Conventions shared by every kernel in this package:

* Input and output are ``torch.uint8`` tensors of shape ``(B, C, H, W)`` on one device (CPU or
  CUDA, the same code). C is 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA); alpha is the last channel when C
  is even. B may be 0.
* The input is never modified; the result is a new tensor on the input's device.
* Each kernel gives Pillow's meaning of the operation (within 1 level per pixel); where Kornia's
  meaning differs, the kernel's comment says so.
* No JSON, base64, URLs or runpod here: torch only.
"""

from kernels.blur import box_blur, gaussian_blur, unsharp_mask
from kernels.color import adjust, grayscale
from kernels.crop import crop
from kernels.filters import FILTERS, apply_filter, convolve
from kernels.flip import FLIP_DIRECTIONS, flip
from kernels.lut import Lut3D, lut3d
from kernels.pad import pad, place
from kernels.rank import RANK_KINDS, RANK_SIZES, mode_filter, rank_filter
from kernels.overlay import overlay
from kernels.resize import RESAMPLING_FILTERS, resize
from kernels.smartcrop import SMART_CHOOSERS, crop_windows, smart_crop, smart_offsets
from kernels.rotate import ROTATE_FILTERS, mode_color, rotate, rotated_size
from kernels.stats import histograms, mean_luma
from kernels.trim import trim, trim_boxes
from kernels.tone import autocontrast, colorize, equalize, gamma, invert, pixelate, posterize, solarize

__all__ = [
    "FILTERS",
    "FLIP_DIRECTIONS",
    "Lut3D",
    "RANK_KINDS",
    "RANK_SIZES",
    "RESAMPLING_FILTERS",
    "SMART_CHOOSERS",
    "crop_windows",
    "smart_crop",
    "smart_offsets",
    "ROTATE_FILTERS",
    "adjust",
    "apply_filter",
    "flip",
    "autocontrast",
    "box_blur",
    "colorize",
    "convolve",
    "crop",
    "equalize",
    "gamma",
    "gaussian_blur",
    "grayscale",
    "histograms",
    "invert",
    "lut3d",
    "mean_luma",
    "mode_filter",
    "overlay",
    "pad",
    "place",
    "pixelate",
    "posterize",
    "rank_filter",
    "mode_color",
    "resize",
    "rotate",
    "rotated_size",
    "solarize",
    "trim",
    "trim_boxes",
    "unsharp_mask",
]

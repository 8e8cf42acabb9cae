"""Smart crop: per image, the window of a given size that libvips' ``smartcrop`` would keep.

Two choosers, after libvips' ``libvips/conversion/smartcrop.c`` (written here in torch, batched:
each image of a stack gets its own window; the window's size is the same for all):

* ``entropy``: the window shrinks from the image's size to the target in steps of at most an
  eighth of the larger excess; each step drops the slice (left or right, then top or bottom) whose
  histogram entropy is lower. The entropy of a slice is libvips' ``hist_entropy`` of its
  ``hist_find``: ``-sum p log2 p`` over the 256 bins of every channel, ``p`` the bin's count over
  all channels' counts.
* ``attention``: on the image shrunk to 32x32, a score per pixel: edges (5 x |Laplacian| of CIE Y,
  Y in 0..100), skin (``100 - 100 * distance`` of the colour's unit XYZ vector from smartcrop.js's
  skin direction (0.78, 0.57, 0.44)) and saturation (CIE Lab a*), the last two only where Y > 5;
  the sum is blurred with a Gaussian of sigma ``max(hypot(w * 32 / W, h * 32 / H) / 10, 1)``
  (pixels of the 32x32 map) and the window is centred on its maximum, clipped to the image.

Images with alpha are premultiplied first (as libvips does); L is taken as grey RGB for attention.
Offsets stay on the device: no host sync. Where the arithmetic differs from libvips' (its shrink
is its own Lanczos, its blur mask is integer), the chosen offsets can differ by a few pixels;
the README's "Smart crop" table measures how close they are.
"""

from __future__ import annotations

import math

import torch

from kernels._checks import check_images, has_alpha

#: The choosers :func:`smart_offsets` knows, by libvips' ``interesting`` names.
SMART_CHOOSERS = ("entropy", "attention")

#: smart crop.js' skin colour direction in unit XYZ (libvips' ``skin_vector``, negated).
_SKIN = (0.78, 0.57, 0.44)
#: sRGB (D65) -> XYZ, Y of white 100, as libvips' scRGB -> XYZ.
_RGB_TO_XYZ = ((41.24, 35.76, 18.05), (21.26, 71.52, 7.22), (1.93, 11.92, 95.05))
_WHITE = (95.047, 100.0, 108.883)


def _premultiplied(images: torch.Tensor) -> torch.Tensor:
    """Colour channels times alpha / 255 (rounded), alpha kept; unchanged without alpha."""
    if not has_alpha(images):
        return images
    alpha = images[:, -1:].to(torch.int32)
    colour = (images[:, :-1].to(torch.int32) * alpha + 127) // 255
    return torch.cat([colour.to(torch.uint8), images[:, -1:]], dim=1)


def _windows(images: torch.Tensor, left: torch.Tensor, top: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Per image ``b`` its ``height x width`` window at ``(left[b], top[b])``: ``(B, C, h, w)``."""
    batch = images.shape[0]
    rows = (top.view(-1, 1) + torch.arange(height, device=images.device)).view(batch, 1, height, 1)
    cols = (left.view(-1, 1) + torch.arange(width, device=images.device)).view(batch, 1, 1, width)
    b = torch.arange(batch, device=images.device).view(batch, 1, 1, 1)
    c = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return images[b, c, rows, cols]


def crop_windows(images: torch.Tensor, offsets: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per image its own ``size = (height, width)`` window at ``offsets[b] = (left, top)``
    (int64 ``(B, 2)`` on the images' device; each window inside its image). A new uint8
    ``(B, C, height, width)`` tensor."""
    check_images(images)
    height, width = size
    return _windows(images, offsets[:, 0], offsets[:, 1], width, height).contiguous()


def _entropy(windows: torch.Tensor) -> torch.Tensor:
    """libvips' ``hist_entropy(hist_find(window))`` per image of uint8 ``(B, C, h, w)``: float64 ``(B,)``."""
    batch, channels = windows.shape[:2]
    bins = (windows.reshape(batch, channels, -1).to(torch.int64)
            + torch.arange(batch * channels, device=windows.device).view(batch, channels, 1) * 256)
    counts = torch.zeros(batch * channels * 256, dtype=torch.float64, device=windows.device)
    counts.scatter_add_(0, bins.flatten(), torch.ones(bins.numel(), dtype=torch.float64, device=windows.device))
    p = counts.view(batch, -1) / float(windows[0].numel())
    return -(p * torch.log2(torch.where(p > 0, p, 1.0))).sum(1)


def _entropy_offsets(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    batch, _, in_h, in_w = images.shape
    left = torch.zeros(batch, dtype=torch.int64, device=images.device)
    top = torch.zeros_like(left)
    w, h = in_w, in_h
    max_slice = max(math.ceil((in_w - width) / 8.0), math.ceil((in_h - height) / 8.0))
    while w > width or h > height:
        slice_w = min(w - width, max_slice)
        slice_h = min(h - height, max_slice)
        if slice_w > 0:
            first = _entropy(_windows(images, left, top, slice_w, h))
            last = _entropy(_windows(images, left + w - slice_w, top, slice_w, h))
            w -= slice_w
            left = left + (first < last) * slice_w  # drop the slice with less detail
        if slice_h > 0:
            first = _entropy(_windows(images, left, top, w, slice_h))
            last = _entropy(_windows(images, left, top + h - slice_h, w, slice_h))
            h -= slice_h
            top = top + (first < last) * slice_h
    return torch.stack([left, top], dim=1)


def _srgb_to_linear(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > (6 / 29) ** 3, t.clamp(min=1e-12) ** (1 / 3), t / (3 * (6 / 29) ** 2) + 4 / 29)


def _gaussian_blur(score: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian of ``(B, 1, H, W)`` float64, libvips' mask reach (amplitude 0.2), edges repeated."""
    radius = max(1, int(sigma * math.sqrt(2 * math.log(5))))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=score.device)
    kernel = torch.exp(-x * x / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    padded = torch.nn.functional.pad(score, (radius, radius, radius, radius), mode="replicate")
    out = torch.nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1))


def _attention_offsets(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    from kernels.resize import resize  # the package's own Pillow-exact resize

    batch, channels, in_h, in_w = images.shape
    hscale, vscale = 32.0 / in_w, 32.0 / in_h
    sigma = max(math.sqrt((width * hscale) ** 2 + (height * vscale) ** 2) / 10, 1.0)
    small = resize(images, (32, 32), "lanczos").to(torch.float64) / 255.0
    rgb = small[:, :3] if channels >= 3 else small[:, :1].expand(-1, 3, -1, -1)
    linear = _srgb_to_linear(rgb)
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=torch.float64, device=images.device)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear)  # (B, 3, 32, 32), Y of white 100
    y = xyz[:, 1:2]
    laplacian = torch.tensor([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=torch.float64, device=images.device)
    edges = (torch.nn.functional.conv2d(torch.nn.functional.pad(y, (1, 1, 1, 1), mode="replicate"),
                                        laplacian.view(1, 1, 3, 3)) * 5.0).abs()
    magnitude = xyz.norm(dim=1, keepdim=True)
    unit = torch.where(magnitude > 0, xyz / magnitude.clamp(min=1e-12), 0.0)
    skin_dir = torch.tensor(_SKIN, dtype=torch.float64, device=images.device).view(1, 3, 1, 1)
    skin = 100.0 - 100.0 * (unit - skin_dir).norm(dim=1, keepdim=True)
    white = torch.tensor(_WHITE, dtype=torch.float64, device=images.device).view(1, 3, 1, 1)
    f = _lab_f(xyz / white)
    lab_a = 500.0 * (f[:, 0:1] - f[:, 1:2])
    bright = y > 5.0
    score = edges + torch.where(bright, skin, 0.0) + torch.where(bright, lab_a, 0.0)
    blurred = _gaussian_blur(score, sigma).flatten(1)
    peak = blurred.argmax(dim=1)  # the first maximum in row-major order
    x_pos, y_pos = peak % 32, peak // 32
    # libvips: attention = (int)(pos / scale); the window centred on it, clipped to the image.
    attention_x = torch.floor(x_pos.to(torch.float64) / hscale).to(torch.int64)
    attention_y = torch.floor(y_pos.to(torch.float64) / vscale).to(torch.int64)
    left = (attention_x - width // 2).clamp(0, in_w - width)
    top = (attention_y - height // 2).clamp(0, in_h - height)
    return torch.stack([left, top], dim=1)


def smart_offsets(images: torch.Tensor, size: tuple[int, int], interesting: str) -> torch.Tensor:
    """Per image the ``(left, top)`` of the ``size = (height, width)`` window libvips'
    ``smartcrop(width, height, interesting=...)`` keeps.

    Args:
        images: uint8 ``(B, C, H, W)``; ``size`` at most ``(H, W)``.
        size: ``(height, width)`` of the window, each >= 1.
        interesting: ``"entropy"`` or ``"attention"`` (see the module doc).

    Returns:
        int64 ``(B, 2)`` on the images' device: ``left`` in ``0..W - width``, ``top`` in
        ``0..H - height``.
    """
    check_images(images)
    height, width = size
    in_h, in_w = images.shape[2:]
    if interesting not in SMART_CHOOSERS:
        raise ValueError(f"interesting must be one of {', '.join(SMART_CHOOSERS)}, got {interesting!r}")
    if not (1 <= height <= in_h and 1 <= width <= in_w):
        raise ValueError(f"a {width}x{height} window does not fit a {in_w}x{in_h} image")
    if images.shape[0] == 0:
        return torch.zeros((0, 2), dtype=torch.int64, device=images.device)
    source = _premultiplied(images)
    if interesting == "entropy":
        return _entropy_offsets(source, width, height)
    return _attention_offsets(source[:, : 3 if source.shape[1] >= 3 else 1], width, height)


def smart_crop(images: torch.Tensor, size: tuple[int, int], interesting: str) -> torch.Tensor:
    """Each image's ``size = (height, width)`` window as :func:`smart_offsets` chooses it:
    uint8 ``(B, C, height, width)``."""
    return crop_windows(images, smart_offsets(images, size, interesting), size)

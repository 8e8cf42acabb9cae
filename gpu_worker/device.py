"""Choosing the torch device the worker computes on."""

from __future__ import annotations

import os

import torch

#: Environment variable that overrides the automatic choice: "auto", "cpu", "cuda" or "cuda:N".
DEVICE_ENV = "GPU_WORKER_DEVICE"


def select_device(requested: str | torch.device | None = None) -> torch.device:
    """The device to run on.

    An explicit ``requested`` wins; else ``$GPU_WORKER_DEVICE``; else CUDA when available, else
    CPU ("auto"). Asking for CUDA where there is none is an error, not a silent CPU fallback.

    >>> select_device("cpu")
    device(type='cpu')
    """
    choice = requested if requested is not None else os.environ.get(DEVICE_ENV, "auto")
    if isinstance(choice, str):
        choice = choice.strip().lower() or "auto"
        if choice == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {choice!r} is not a torch device; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {choice!r} was asked for, but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {choice!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise ValueError(f"device {choice!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device

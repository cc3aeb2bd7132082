"""Where models run: the device, inputs as tensors on it, and a model moved there (channels-last for images)."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_input(X, device, dtype=torch.float32) -> torch.Tensor:
    """Inputs as a tensor on ``device``; images go channels-last, which runs convolutions
    several times faster on CPUs (oneDNN) and as fast on GPUs."""
    if isinstance(X, np.ndarray) and not X.flags.writeable:  # a memory-mapped file, shared read-only: never written
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.as_tensor(X, dtype=dtype, device=device)
    else:
        t = torch.as_tensor(X, dtype=dtype, device=device)
    return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t


def prepare(model: nn.Module, device, image_input: bool) -> nn.Module:
    """Move a model to ``device`` (channels-last for image inputs) in eval mode."""
    model = model.to(device)
    if image_input:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()

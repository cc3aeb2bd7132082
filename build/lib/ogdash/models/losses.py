"""Loss conventions shared by training, gradients and baselines.

Every ogdash classifier returns logits. A model with one output unit is a binary
classifier trained with sigmoid binary cross-entropy (labels 0/1); a model with
C >= 2 outputs is trained with softmax cross-entropy (labels 0..C-1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss of each sample, shape (n,), for logits (n, C) or (n, 1) and integer labels (n,)."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits[..., 0], y.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, y.long(), reduction="none")


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (n, C) for either head; a one-unit head gives [1-p, p]."""
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits[..., 0])
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(logits, dim=-1)

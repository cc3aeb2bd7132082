"""A small model zoo. Every model is ``head(body(x))`` with ``head`` an ``nn.Linear``.

Keeping the last linear layer as a named attribute is what lets the gradient
engine use the closed form from one forward pass (see ``ogdash.engine.gradients``).
Binary problems use one output unit with a sigmoid (logistic regression, the
paper's toy MLP); others use softmax over C units.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ogdash.core.errors import OgdashError

MODEL_KINDS = ("logreg", "mlp", "cnn", "paper_mlp")


@dataclass(frozen=True)
class ModelSpec:
    """What to build and how to train it; two equal specs give the same model for a seed.

    epochs/lr/batch_size None mean the kind's default (see ``resolved``).
    batch_size 0 means full batch. ``steps``, when set, is the number of optimiser steps to
    train for, whatever the size of the data (epochs are then as many as those steps take):
    a trimmed set trains as long as the full one, so a retrain measures the data, not a
    shorter run.
    """

    kind: str = "mlp"
    hidden: tuple[int, ...] = (16, 16)
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float = 1e-4
    bias: bool = True
    steps: int | None = None

    def resolved(self, n_train: int) -> "ModelSpec":
        """This spec with every unset field filled by the kind's defaults for ``n_train`` samples."""
        d = DEFAULTS[self.kind]
        small = self.kind != "cnn" and n_train <= 1024  # tiny tabular sets train full-batch
        bs = self.batch_size if self.batch_size is not None else (0 if small else d["batch_size"])
        return ModelSpec(self.kind, tuple(self.hidden), self.epochs or d["epochs"], self.lr or d["lr"], bs,
                         self.weight_decay, self.bias if self.kind != "paper_mlp" else False, self.steps)

    def total_steps(self, n_train: int) -> int:
        """Optimiser steps this spec takes on ``n_train`` samples."""
        r = self.resolved(n_train)
        return r.steps or r.epochs * (math.ceil(n_train / r.batch_size) if r.batch_size else 1)

    def key(self) -> str:
        """A stable string of the spec's fields, for cache keys."""
        fields = {k: v for k, v in asdict(self).items() if not (k == "steps" and v is None)}  # keys before steps
        return hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()[:16]


DEFAULTS = {
    "logreg": dict(epochs=300, lr=0.05, batch_size=128),
    "mlp": dict(epochs=500, lr=0.01, batch_size=128),
    "paper_mlp": dict(epochs=5000, lr=1e-3, batch_size=128),
    "cnn": dict(epochs=12, lr=2e-3, batch_size=64),
}


class Classifier(nn.Module):
    """``body`` maps inputs to penultimate features h; ``head`` maps h to logits."""

    def __init__(self, body: nn.Module, head: nn.Linear):
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x):
        return self.head(self.body(x))


def _mlp_body(d_in: int, hidden) -> tuple[nn.Module, int]:
    layers, d = [nn.Flatten()], d_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    return nn.Sequential(*layers), d


def _cnn_body(channels: int, side: int) -> tuple[nn.Module, int]:
    # two conv blocks; small inputs (8x8 digits) pool once, larger ones twice.
    # Pooling before ReLU gives the same result (both are monotone) on 4x fewer values.
    second_pool = [nn.MaxPool2d(2)] if side >= 16 else []
    body = nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, padding=1), *second_pool, nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(3), nn.Flatten(),
        nn.Linear(32 * 9, 64), nn.ReLU(inplace=True),
    )
    return body, 64


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int, seed: int = 0) -> Classifier:
    """A freshly initialised model; the same (spec, shape, classes, seed) gives the same weights."""
    if spec.kind not in MODEL_KINDS:
        raise OgdashError(f"unknown model {spec.kind!r}; choose one of {', '.join(MODEL_KINDS)}.")
    torch.manual_seed(seed)
    d_in = int(np.prod(input_shape))
    out = 1 if n_classes == 2 else n_classes
    if spec.kind == "logreg":
        body, d = nn.Flatten(), d_in
    elif spec.kind == "mlp":
        body, d = _mlp_body(d_in, spec.hidden)
    elif spec.kind == "paper_mlp":
        if n_classes != 2:
            raise OgdashError("the paper's 2-2-2-1 MLP is for binary problems; use 'mlp' for more classes.")
        body, d = _mlp_body(d_in, (2, 2))
    else:
        if len(input_shape) != 3:
            raise OgdashError(f"the CNN needs images (C, H, W); these samples have shape {tuple(input_shape)}. Use 'mlp'.")
        body, d = _cnn_body(input_shape[0], input_shape[-1])
    return Classifier(body, nn.Linear(d, out, bias=spec.bias and spec.kind != "paper_mlp"))


def weights_key(model: nn.Module) -> str:
    """Content hash of a model's weights: changes whenever any parameter or buffer does."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def torchvision_model(arch: str, n_classes: int) -> nn.Module:
    """A torchvision architecture by name, randomly initialised, with ``n_classes`` outputs.

    Load your own trained weights into it with ``load_weights``; nothing is downloaded.
    Its last ``nn.Linear`` is the layer the closed-form gradient engine uses.
    """
    import torchvision

    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise OgdashError(f"unknown torchvision architecture {arch!r}; e.g. resnet18, resnet34, mobilenet_v3_small.")
    return torchvision.models.get_model(arch, num_classes=n_classes)

"""Networks the user brings: a torchvision architecture or their own ``nn.Module``, with their weights.

A network is named by ``arch``: a torchvision architecture (``resnet18``) built with
``num_classes``, or ``package.module:factory`` for your own code, where ``factory()`` takes no
arguments and returns the ``nn.Module`` (the current folder is importable, as with uvicorn).
Weights load with safetensors or ``torch.load(weights_only=True)`` (``ogdash.models.train``).

Its **last nn.Linear** is the layer the gradient engine reads and the layer a
last-layer fine-tune trains; everything before it is the backbone, whose outputs
(the last layer's inputs) :func:`backbone_features` computes. ``new_head`` builds the
common practical set-up, a frozen pretrained backbone with a linear head trained here:
the last linear layer is replaced by a fresh, seeded one for this data's classes (a
backbone without any nn.Linear gets one appended), and the file's weights for the old
head are not used.
"""
from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import torch
from torch import nn

from ogdash.core.errors import OgdashError

FACTORY_HINT = "give package.module:factory, where factory() returns your nn.Module"


def is_factory(arch: str) -> bool:
    """Whether ``arch`` names your own code (``package.module:factory``) rather than a torchvision architecture."""
    return ":" in str(arch)


def load_factory(path: str):
    """The callable ``package.module:factory`` names; the current folder is importable (as with uvicorn)."""
    module_name, _, attr = str(path).partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".") + attr.split(".")):
        raise OgdashError(f"{path!r} is not a model factory; {FACTORY_HINT}.")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise OgdashError(f"cannot import {module_name!r} ({e}); {FACTORY_HINT}, importable from "
                          "the current folder or installed.") from e
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise OgdashError(f"{module_name} has no callable {attr!r}; {FACTORY_HINT}.")
    return obj


def build_network(arch: str, n_classes: int) -> nn.Module:
    """The network ``arch`` names, freshly built (no weights loaded)."""
    if is_factory(arch):
        model = load_factory(arch)()
        if not isinstance(model, nn.Module):
            raise OgdashError(f"{arch}() returned a {type(model).__name__}, not an nn.Module; {FACTORY_HINT}.")
        return model
    from ogdash.models.zoo import torchvision_model

    return torchvision_model(arch, n_classes)


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's last linear layer: ``model.head`` if it has one, else the last nn.Linear."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return "head", head
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise OgdashError("the model has no nn.Linear layer; choose parameters for the generic gradient path.")
    return linears[-1]


class WithHead(nn.Module):
    """A backbone without a linear layer, with a linear head on its (flattened) outputs."""

    def __init__(self, body: nn.Module, head: nn.Linear):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x):
        return self.head(torch.flatten(self.body(x), 1))


def new_head(model: nn.Module, input_shape, n_classes: int, seed: int) -> nn.Module:
    """``model`` with its last linear layer replaced by a fresh one for ``n_classes`` (seeded), or, when it has
    none, with one appended on its flattened outputs."""
    out = 1 if n_classes == 2 else n_classes
    torch.manual_seed(seed)
    try:
        name, old = last_linear(model)
    except OgdashError:
        with torch.no_grad():
            width = torch.flatten(model.eval()(torch.zeros((1, *input_shape))), 1).shape[1]
        return WithHead(model, nn.Linear(width, out))
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, nn.Linear(old.in_features, out))
    return model


def head_keys(model: nn.Module) -> set[str]:
    """The state_dict keys of the model's last linear layer."""
    name, layer = last_linear(model)
    return {f"{name}.{k}" for k in layer.state_dict()}


@torch.no_grad()
def backbone_features(model: nn.Module, X: np.ndarray, batch_size: int = 256, progress=None) -> np.ndarray:
    """The inputs of the model's last linear layer for every row of ``X`` (n, H), float32, in eval mode."""
    from ogdash.models.train import prepare, to_input

    device = next(model.parameters()).device
    model = prepare(model, device, X.ndim == 4)
    _, head = last_linear(model)
    out = []
    hook = head.register_forward_pre_hook(lambda m, args: out.append(args[0].detach().float().cpu()))
    try:
        for start in range(0, len(X), batch_size):
            model(to_input(X[start:start + batch_size], device))
            if progress is not None:
                progress(min(1.0, (start + batch_size) / len(X)), f"backbone features {min(start + batch_size, len(X))}"
                         f"/{len(X)}")
    finally:
        hook.remove()
    return torch.cat(out).reshape(len(X), -1).numpy()

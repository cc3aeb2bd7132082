"""Networks the user brings: a torchvision architecture or their own ``nn.Module``, with their weights.

A network is named by ``arch``: a torchvision architecture (``resnet18``) built with
``num_classes``, or ``package.module:factory`` for your own code, where ``factory()`` takes no
arguments and returns the ``nn.Module``. The factory is one plain name (no dots, nothing private
after the colon). The library imports from ``sys.path`` as it is (the CLI puts the current folder
on it; the dashboard does not) and, given the packages a caller allows, checks before importing
that the module's real file lies inside an allowed regular package's real folder.
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
import importlib.util
import os

import numpy as np
import torch
from torch import nn

from ogdash.core.errors import OgdashError

FACTORY_HINT = "give package.module:factory, where factory() returns your nn.Module"


def is_factory(arch: str) -> bool:
    """Whether ``arch`` names your own code (``package.module:factory``) rather than a torchvision architecture."""
    return ":" in str(arch)


def parse_factory(path: str) -> tuple[str, str]:
    """(module, factory) of ``package.module:factory``: plain names only. An attribute chain after the colon
    (``mod:torch.os.abort``) reaches any function the module imported, so it is refused, as are private and
    dunder names (``mod:__builtins__``, ``pkg.__main__``)."""
    module_name, sep, attr = str(path).partition(":")
    parts = module_name.split(".")
    if (not sep or not attr.isidentifier() or attr.startswith("_")
            or not all(p.isidentifier() and not p.startswith("__") for p in parts)):
        raise OgdashError(f"{_short(path)} is not a model factory; {FACTORY_HINT} (one plain name after the "
                          "colon, not a dotted or private one).")
    return module_name, attr


def _short(value) -> str:
    text = repr(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _real(path) -> str:
    return os.path.realpath(path)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _spec(name: str):
    try:
        return importlib.util.find_spec(name)  # imports the parents only, never ``name`` itself
    except (ImportError, ValueError, AttributeError) as e:
        raise OgdashError(f"cannot find {name!r} ({type(e).__name__}); {FACTORY_HINT}, installed where the "
                          "dashboard runs.") from None


def package_home(package: str) -> str:
    """The real folder of an allowed regular package (or the real file of an allowed single module).

    A namespace package (a folder without ``__init__.py``) is refused: any folder on ``sys.path`` with
    that name adds to it, so its code could come from anywhere (the current folder, the data root)."""
    spec = _spec(package)
    if spec is None:
        raise OgdashError(f"the allowed package {package!r} is not installed where the dashboard runs; install "
                          "it (pip install) or put it on PYTHONPATH.")
    if spec.submodule_search_locations is not None:
        if not spec.origin or not spec.has_location or os.path.basename(spec.origin) != "__init__.py":
            raise OgdashError(f"the allowed package {package!r} is a namespace package (no __init__.py), which any "
                              "folder on the path can extend; give it an __init__.py and install it.")
        return _real(os.path.dirname(spec.origin))
    if not spec.origin or not spec.has_location:
        raise OgdashError(f"the allowed module {package!r} has no file (a built-in module); allow your own package.")
    return _real(spec.origin)


def check_location(module_name: str, allowed) -> None:
    """Refuse ``module_name`` unless it lies in an allowed package and every module from that package down to it
    is a file inside the package's real folder (symlinks resolved), checked before any of them is imported."""
    package = next((p for p in allowed if module_name == p or module_name.startswith(p + ".")), None)
    if package is None:
        raise OgdashError(f"{module_name} is not an allowed package (the person running the dashboard allows them "
                          "with OGDASH_MODEL_MODULES)")
    home = package_home(package)
    parts = module_name.split(".")
    for depth in range(len(package.split(".")) + 1, len(parts) + 1):
        name = ".".join(parts[:depth])
        spec = _spec(name)  # imports the level above, checked on the previous turn
        if spec is None:
            raise OgdashError(f"cannot import {module_name!r} (no module {name!r}); {FACTORY_HINT}.")
        if not spec.origin or not spec.has_location or not _inside(_real(spec.origin), home):
            raise OgdashError(f"{name} does not lie inside the allowed package {package}'s folder; only code "
                              "installed in that package is run.")


def load_factory(path: str, allowed=None):
    """The callable ``package.module:factory`` names, imported from ``sys.path`` as it is.

    ``allowed`` (packages, e.g. the dashboard's ``OGDASH_MODEL_MODULES``): the module must lie inside one of
    them (``check_location``, before it is imported) and the factory must be defined in that package, not
    imported into it from elsewhere."""
    module_name, attr = parse_factory(path)
    if allowed is not None:
        check_location(module_name, tuple(allowed))
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:  # ImportError, or the module's own code failing: one line either way
        raise OgdashError(f"cannot import {module_name!r} ({type(e).__name__}: {str(e)[:80]}); {FACTORY_HINT}, "
                          "installed or importable from the current folder (CLI).") from e
    obj = getattr(module, attr, None)
    if not callable(obj):
        raise OgdashError(f"{module_name} has no callable {attr!r}; {FACTORY_HINT}.")
    if allowed is not None:
        owner = getattr(obj, "__module__", None) or ""
        if not any(owner == p or owner.startswith(p + ".") for p in allowed):
            raise OgdashError(f"{module_name}:{attr} is defined outside the allowed packages (in {_short(owner)}); "
                              "name a factory written in your package.")
    return obj


def build_network(arch: str, n_classes: int) -> nn.Module:
    """The network ``arch`` names, freshly built (no weights loaded)."""
    if is_factory(arch):
        model = load_factory(arch)()
        if not isinstance(model, nn.Module):
            raise OgdashError(f"{arch}() returned a {type(model).__name__}, not an nn.Module; {FACTORY_HINT}.")
        return model
    from ogdash.models.weights import torchvision_model

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
    return {f"{name}.{k}" if name else k for k in layer.state_dict()}  # a network that is one nn.Linear: no prefix


@torch.no_grad()
def backbone_features(model: nn.Module, X: np.ndarray, batch_size: int = 256, progress=None) -> np.ndarray:
    """The inputs of the model's last linear layer for every row of ``X`` (n, H), float32, in eval mode."""
    from ogdash.models.devices import prepare, to_input

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

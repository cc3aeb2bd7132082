"""Weights in and out, safely: safetensors or tensors-only torch checkpoints (``weights_only=True``), never a pickle
that carries code; torchvision architectures built by name, with their weights checked before the model is built."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from ogdash.core.errors import OgdashError, first_line


def save_weights(model: nn.Module, path) -> None:
    """Save weights as safetensors (no code, no pickle)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))


def read_weights(path) -> dict:
    """The tensors of a ``.safetensors`` file or a tensors-only torch checkpoint (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise OgdashError(f"weights file not found: {path}; check the path "
                          "(relative paths start at the data root).")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler met something else than tensors
        raise OgdashError(f"{path.name}: cannot be loaded as weights: it holds objects other than tensors (it may "
                          "carry code), which ogdash never unpickles; give a .safetensors file or a tensors-only "
                          "state_dict.") from e
    except Exception as e:
        raise OgdashError(f"{path.name}: cannot be loaded as weights ({type(e).__name__}: {first_line(e)}); "
                          "give a complete .safetensors file or a tensors-only state_dict.") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise OgdashError(f"{path.name}: holds a {type(state).__name__}, not a state_dict of tensors; "
                          "save model.state_dict() instead.")
    return state


def load_weights(model: nn.Module, path, state: dict | None = None) -> nn.Module:
    """Load weights from ``.safetensors`` or a tensors-only torch checkpoint into ``model``.

    Torch checkpoints load with ``weights_only=True``: a pickle that carries code is
    refused, never executed. Missing or mismatched keys raise OgdashError. ``state``: the
    file's tensors when already read (``read_weights``).
    """
    path = Path(path)
    state = read_weights(path) if state is None else state
    mismatch = _state_mismatch(model.state_dict(), state)
    if mismatch:
        raise OgdashError(f"{path.name}: does not fit this architecture ({mismatch}); "
                          "load weights saved from the same architecture and number of classes.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # e.g. a value that is not a tensor; torch's first line is only a heading
        detail = str(e).strip().splitlines()[1:2] or [str(e)]
        raise OgdashError(f"{path.name}: does not fit this architecture ({first_line(detail[0].strip())}); "
                          "load weights saved from the same architecture and number of classes.") from e
    if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
        raise OgdashError(f"{path.name}: holds NaN or infinite weights (a diverged run?); load a checkpoint from "
                          "before training diverged.")
    return model.eval()


def _state_mismatch(expected: dict, given: dict) -> str:
    """What keeps ``given`` from loading into a model whose state_dict is ``expected`` ('' if nothing)."""
    def some(keys):
        keys = sorted(map(str, keys))
        return ", ".join(repr(k) for k in keys[:2]) + (f" and {len(keys) - 2} more" if len(keys) > 2 else "")

    missing, unexpected = set(expected) - set(given), set(given) - set(expected)
    parts = []
    if missing:
        parts.append(f"missing {some(missing)}")
    if unexpected:
        parts.append(f"unexpected {some(unexpected)}")
    if not parts:
        for k, t in expected.items():
            shape = tuple(getattr(given[k], "shape", ()))
            if isinstance(given[k], torch.Tensor) and shape != tuple(t.shape):
                return f"{k!r} has shape {shape} in the file but {tuple(t.shape)} here"
    return ", ".join(parts)


def torchvision_model(arch: str, n_classes: int) -> nn.Module:
    """A torchvision architecture by name, randomly initialised, with ``n_classes`` outputs.

    Load your own trained weights into it with ``load_weights``; nothing is downloaded.
    Its last ``nn.Linear`` is the layer the closed-form gradient engine uses.
    """
    import torchvision

    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise OgdashError(f"unknown torchvision architecture {arch!r}; e.g. resnet18, resnet34, mobilenet_v3_small.")
    return torchvision.models.get_model(arch, num_classes=n_classes)


def load_torchvision(arch: str, n_classes: int, path) -> nn.Module:
    """A torchvision architecture with the weights in ``path``.

    The file is read and its tensors' names and shapes are checked against the architecture
    built on the meta device (no memory) before the real model is built: a missing or
    mismatched file costs nothing, however large the architecture (vit_h_14: 2.5 GB).
    """
    state = read_weights(path)
    with torch.device("meta"):
        skeleton = torchvision_model(arch, n_classes)
    mismatch = _state_mismatch(skeleton.state_dict(), state)
    if mismatch:
        raise OgdashError(f"{Path(path).name}: does not fit this architecture ({mismatch}); load weights saved "
                          f"from {arch} with {n_classes} classes.")
    return load_weights(torchvision_model(arch, n_classes), path, state)

"""Seeded training, evaluation, and safe save/load of weights."""
from __future__ import annotations

import math
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.models.losses import per_sample_loss, probabilities
from ogdash.models.zoo import ModelSpec, build_model, fit_scaling


def _first_line(e: Exception, limit: int = 100) -> str:
    """The first sentence of an exception's message, short enough for a one-line error."""
    lines = str(e).strip().splitlines()
    text = lines[0].split(". ")[0].rstrip(".") if lines else "no details"
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


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
    t = torch.as_tensor(X, dtype=dtype, device=device)
    return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t


def prepare(model: nn.Module, device, image_input: bool) -> nn.Module:
    """Move a model to ``device`` (channels-last for image inputs) in eval mode."""
    model = model.to(device)
    if image_input:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def fit(spec: ModelSpec, X: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0,
        progress: Progress = None, device=None, val: tuple | None = None, features: tuple | None = None) -> nn.Module:
    """Build a model from ``spec`` with initialisation seed ``seed`` and train it.

    The same seed gives the same initial weights and the same batch order, so a
    retrain on a trimmed set differs from the original only by the data. Your network
    (``spec.user``) starts from your weights; with ``tune="last"`` only its last linear
    layer trains, on the frozen backbone's features computed once (``features``: those of X
    and of val's X when already computed, e.g. from the disk cache). ``val``: (X, y) whose
    accuracy the progress reports; it never changes the training.
    """
    spec = spec.resolved(len(y))
    device = torch.device(device) if device else default_device()
    model = prepare(fit_scaling(build_model(spec, X.shape[1:], n_classes, seed), X), device, X.ndim == 4)
    if spec.user and spec.tune == "last":
        from ogdash.models.user import backbone_features, last_linear

        H, Hv = features or (backbone_features(model, X), None if val is None else backbone_features(model, val[0]))
        train_steps(last_linear(model)[1], H, y, spec, seed, progress, device, None if val is None else (Hv, val[1]))
    else:
        train_steps(model, X, y, spec, seed, progress, device, val)
    return model.eval()


def train_steps(model: nn.Module, X: np.ndarray, y: np.ndarray, spec: ModelSpec, seed: int, progress: Progress = None,
                device=None, val: tuple | None = None, on_step=None) -> None:
    """Train ``model`` in place for ``spec.total_steps`` Adam steps on (X, y), batches drawn with ``seed``.

    The progress says the epoch, the loss, the validation accuracy (when ``val`` is given)
    and the time left, about twice a second. ``on_step(step)``, when given, is called after
    every step (it may look at the model; training goes on in train mode).
    """
    Xt = to_input(X, device)
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = len(yt)
    bs = spec.batch_size or n
    total = spec.total_steps(n)  # a step budget (spec.steps) or the epochs' steps
    per_epoch = math.ceil(n / bs)
    epochs = math.ceil(total / per_epoch)
    with _threads_for(params, X, device):
        step, val_acc, t0, last, last_val = 0, None, time.perf_counter(), 0.0, 0.0
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen).to(device) if bs < n else None
            for start in range(0, n, bs):
                if step == total:
                    break
                idx = order[start:start + bs] if order is not None else slice(None)
                loss = per_sample_loss(model(Xt[idx]), yt[idx]).mean()
                if not torch.isfinite(loss):
                    raise OgdashError(f"training diverged at epoch {epoch + 1} (loss is {loss.item()}); "
                                      "lower the learning rate or check the inputs.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if on_step is not None:
                    on_step(step)
                    model.train()
                if progress is None:
                    continue
                now = time.perf_counter()
                if val is not None and (start + bs >= n or step == total) and (now - last_val > 1 or step == total):
                    val_acc, last_val = accuracy(model, *val), now  # at an epoch's end, at most once a second
                    model.train()
                if now - last > 0.5 or step == total:
                    last = now
                    left = (now - t0) / step * (total - step)
                    progress(step / total, f"epoch {epoch + 1}/{epochs}, loss {loss.item():.4f}"
                             + ("" if val_acc is None else f", validation accuracy {val_acc:.1%}")
                             + ("" if step == total else f", about {_duration(left)} left"))
    # the last step can still blow the weights up after a finite loss; never hand on a NaN model
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise OgdashError("training diverged in the last epoch (weights became NaN or infinite); "
                          "lower the learning rate or check the inputs.")
    model.eval()


def _threads_for(params, X: np.ndarray, device):
    """One CPU thread for small models (under a million trained parameters: heads, MLPs, the zoo's CNN): their steps
    are too small to split, and on a busy 2-core machine spinning OpenMP threads made them up to 30x slower
    (``ogdash.core.threads``; 100 steps of the digits CNN: 18 s on two threads, 0.8 s on one, at load 5)."""
    import contextlib

    from ogdash.core.threads import one_thread

    small = sum(p.numel() for p in params) < 1_000_000 and torch.device(device).type == "cpu"
    return one_thread() if small else contextlib.nullcontext()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def check_fits(model: nn.Module, X: np.ndarray, n_classes: int, name: str = "the model") -> None:
    """Run one sample through ``model`` and check it gives one output per class (or one for binary).

    A model loaded from someone's checkpoint may expect other inputs (3 channels, another
    size); this turns that into one clear OgdashError instead of a failure pages later.
    """
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            out = prepare(model, device, X.ndim == 4)(to_input(X[:1], device))
    except Exception as e:  # shape and dtype mismatches surface as RuntimeError or ValueError
        raise OgdashError(f"{name} does not accept inputs of shape {tuple(X.shape[1:])} "
                          f"({type(e).__name__}: {_first_line(e)}); "
                          "choose an architecture made for this data.") from e
    width = 1 if n_classes == 2 else n_classes
    if out.ndim != 2 or out.shape[1] not in (width, n_classes):
        raise OgdashError(f"{name} gives {tuple(out.shape[1:])} outputs per sample but the data has {n_classes} "
                          "classes; load weights trained for these classes.")


@torch.no_grad()
def predict_proba(model: nn.Module, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (n, C) as float64."""
    device = next(model.parameters()).device
    model = prepare(model, device, X.ndim == 4)
    out = []
    for start in range(0, len(X), batch_size):
        xb = to_input(X[start:start + batch_size], device)
        out.append(probabilities(model(xb)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2))


def accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    """Share of samples whose predicted class equals ``y``."""
    return float(np.mean(predict_proba(model, X).argmax(1) == y))


def per_class_accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Accuracy within each class of ``y`` (n_classes,); NaN for a class with no samples."""
    pred = predict_proba(model, X).argmax(1)
    return np.array([np.mean(pred[y == c] == c) if np.any(y == c) else math.nan for c in range(n_classes)])


def confusion(model: nn.Module, X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix, rows = given label, columns = predicted."""
    pred = predict_proba(model, X).argmax(1)
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def save_weights(model: nn.Module, path) -> None:
    """Save weights as safetensors (no code, no pickle)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))


def load_torchvision(arch: str, n_classes: int, path) -> nn.Module:
    """A torchvision architecture with the weights in ``path``.

    The file is read and its tensors' names and shapes are checked against the architecture
    built on the meta device (no memory) before the real model is built: a missing or
    mismatched file costs nothing, however large the architecture (vit_h_14: 2.5 GB).
    """
    from ogdash.models.zoo import torchvision_model

    state = read_weights(path)
    with torch.device("meta"):
        skeleton = torchvision_model(arch, n_classes)
    mismatch = _state_mismatch(skeleton.state_dict(), state)
    if mismatch:
        raise OgdashError(f"{Path(path).name}: does not fit this architecture ({mismatch}); load weights saved "
                          f"from {arch} with {n_classes} classes.")
    return load_weights(torchvision_model(arch, n_classes), path, state)


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
        raise OgdashError(f"{path.name}: does not fit this architecture ({_first_line(detail[0].strip())}); "
                          "load weights saved from the same architecture and number of classes.") from e
    if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
        raise OgdashError(f"{path.name}: holds NaN or infinite weights (a diverged run?); load a checkpoint from "
                          "before training diverged.")
    return model.eval()


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
        raise OgdashError(f"{path.name}: cannot be loaded as weights ({type(e).__name__}: {_first_line(e)}); "
                          "give a complete .safetensors file or a tensors-only state_dict.") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise OgdashError(f"{path.name}: holds a {type(state).__name__}, not a state_dict of tensors; "
                          "save model.state_dict() instead.")
    return state


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

"""Seeded training and evaluation (weights in and out: ``ogdash.models.weights``)."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from ogdash.core.errors import OgdashError, first_line
from ogdash.core.progress import Progress
from ogdash.models.devices import default_device, prepare, to_input
from ogdash.models.losses import per_sample_loss, probabilities
from ogdash.models.zoo import ModelSpec, build_model, fit_scaling


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
                          f"({type(e).__name__}: {first_line(e)}); "
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


@torch.no_grad()
def predict_labels(model: nn.Module, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The predicted class (n,) of each input, batch by batch: no (n, C) array is kept (a million samples with a
    thousand classes would make 8 GB of probabilities), and a memory-mapped X gives its pages back as it goes."""
    from ogdash.core import chunks

    device = next(model.parameters()).device
    model = prepare(model, device, X.ndim == 4)
    out = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), batch_size):
        xb = np.array(X[start:start + batch_size])
        chunks.release(X, start, start + len(xb))
        z = model(to_input(xb, device))
        out[start:start + len(xb)] = (z[:, 0] > 0).long().cpu().numpy() if z.shape[1] == 1 else \
            z.argmax(1).cpu().numpy()
    return out


def accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    """Share of samples whose predicted class equals ``y``."""
    return float(np.mean(predict_labels(model, X) == y))


def per_class_accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Accuracy within each class of ``y`` (n_classes,); NaN for a class with no samples."""
    pred = predict_labels(model, X)
    return np.array([np.mean(pred[y == c] == c) if np.any(y == c) else math.nan for c in range(n_classes)])


def confusion(model: nn.Module, X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix, rows = given label, columns = predicted."""
    pred = predict_labels(model, X)
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y, pred), 1)
    return m



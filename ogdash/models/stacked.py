"""Train many models of one architecture at once: the arms of a retrain, the folds of a cross-fit.

Each ``Arm`` is one model that ``fit(spec, X[rows], labels, n_classes, seed)`` would train:
the seed's initial weights, the seed's batch order over the arm's own rows, the same
number of Adam steps. :func:`fit_arms` trains them **stacked** where that pays: the arms'
weights are stacked along a new first axis (``torch.func.stack_module_state``) and one
step of all arms is one batched forward and backward (``functional_call`` under
``vmap``); each arm's loss is the mean over its own batch (shorter batches padded with
zero weight), so the sum's gradient is each arm's own gradient, and Adam, which works
element by element, updates each arm exactly as its own optimiser would. The result
equals training the arms one by one up to floating-point rounding
(``tests/test_stacked.py``).

Stacking pays when one model's step is small, so that the fixed cost of a step dominates:
logistic regressions, MLPs and linear heads on feature rows (24 digits MLPs: 0.2 ms per
model-step stacked against 1.0 ms alone), convolutional networks on small images (24 digits
CNNs on 8x8 images, 60 steps: 7.8-10.1 s stacked against 8.5-12.0 s one by one, load 9.5), and
convolutional networks on a GPU. On a CPU a convolutional network on larger images is
compute-bound and ``vmap`` turns its convolutions into grouped ones, which oneDNN runs slower
than one model at a time (MNIST-5k CNN, 24 arms: 49-50 ms per model-step stacked against
11-25 ms alone), so there the arms train one by one.
A network with layers outside ``STACKABLE`` (BatchNorm's running statistics, dropout,
your own architectures) always trains one by one. Either way, on a CPU the arms train on
one thread: each step is too small to split, and on a shared 2-core machine two spinning
OpenMP threads made a digits CNN's step 4-30 times slower (``ogdash.core.threads``).
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.models.losses import per_sample_loss
from ogdash.models.zoo import Classifier, ModelSpec, Standardize, build_model, fit_scaling

# layers whose forward is a pure function of the input and the weights: safe to stack under vmap
STACKABLE = (Classifier, nn.Sequential, nn.Linear, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
             nn.Flatten, nn.Identity, Standardize)


@dataclass(frozen=True)
class Arm:
    """One model to train: ``name`` in the user's words (progress says it), the initialisation and batch-order
    ``seed``, the ``rows`` of X it trains on and their ``labels``."""

    name: str
    seed: int
    rows: np.ndarray
    labels: np.ndarray


def can_stack(model: nn.Module) -> bool:
    """Whether every layer of ``model`` is one whose copies can be stacked (see ``STACKABLE``)."""
    return all(type(m) in STACKABLE for m in model.modules())


SMALL_IMAGE = 16 * 16  # on a CPU, convolutional networks stack on images up to this many pixels


def pays_to_stack(model: nn.Module, device: torch.device, input_shape=()) -> bool:
    """Stacking pays on a GPU, and on a CPU for networks without convolutions or on small images (see the module
    docstring); ``input_shape``: one sample's shape."""
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    small = len(input_shape) >= 2 and int(np.prod(input_shape[-2:])) <= SMALL_IMAGE
    return device.type != "cpu" or not convolutional or small


def fit_arms(spec: ModelSpec, X: np.ndarray, arms: list[Arm], n_classes: int, progress: Progress = None,
             device=None, stack: bool | None = None, stats: dict | None = None, at_steps=(),
             checkpoint=None) -> list[nn.Module]:
    """The model of each arm, as ``fit`` trains it, in ``arms`` order (on ``device``, in eval mode).

    spec: what to train; arms whose resolved specs agree (the same batch size, learning
    rate and step budget: give ``spec.steps`` for arms of different sizes) train together.
    stack: True or False forces stacking or one by one; None (default) stacks where it
    pays (``can_stack`` and ``pays_to_stack``). progress hears ``(fraction, words)``, e.g.
    "run 7 of 15 (relabel, seed 2) — about 40 s left". stats, when given, receives
    ``stacked``: how many arms trained together. checkpoint(step, i, model), when given, is
    called for each arm ``i`` after each step in ``at_steps``, with its model as it is then
    (in eval mode; training goes on afterwards).
    """
    from ogdash.core.threads import one_thread
    from ogdash.models.devices import default_device

    if not arms:
        return []
    device = torch.device(device) if device else default_device()
    groups: dict[tuple, list[int]] = {}  # (resolved spec, steps) -> arms
    for i, arm in enumerate(arms):
        if len(arm.rows) != len(arm.labels) or len(arm.rows) == 0:
            raise OgdashError(f"{arm.name}: needs as many labels as rows, and at least one row.")
        r = spec.resolved(len(arm.rows))
        groups.setdefault((r, r.total_steps(len(arm.rows))), []).append(i)
    clock = _Clock(progress, sum(steps * len(ids) for (_, steps), ids in groups.items()))
    out: list[nn.Module | None] = [None] * len(arms)
    with one_thread() if device.type == "cpu" else contextlib.nullcontext():
        for (r, _), ids in groups.items():
            models = [_built(r, X, arms[i], n_classes, device) for i in ids]
            together = stack if stack is not None else (len(ids) > 1 and pays_to_stack(models[0], device, X.shape[1:]))
            if together and can_stack(models[0]):
                if stats is not None:
                    stats["stacked"] = stats.get("stacked", 0) + len(ids)
                seen = None if checkpoint is None else (lambda step, a, m: checkpoint(step, ids[a], m))
                _train_stacked(r, X, [arms[i] for i in ids], models, device, clock, (ids[0], ids[-1], len(arms)),
                               set(at_steps), seen)
            else:
                for i, model in zip(ids, models):
                    seen = None if checkpoint is None else (lambda step, i=i, m=model: checkpoint(step, i, m.eval()))
                    _train_one(r, X, arms[i], model, device, clock, (i, len(arms)), set(at_steps), seen)
            for i, model in zip(ids, models):
                out[i] = model.eval()
    return out


def _built(r: ModelSpec, X: np.ndarray, arm: Arm, n_classes: int, device) -> nn.Module:
    """The arm's freshly initialised model (its inputs' scaling from its own rows), as ``fit`` builds it."""
    from ogdash.models.devices import prepare

    model = fit_scaling(build_model(r, X.shape[1:], n_classes, arm.seed), X[arm.rows])
    return prepare(model, device, X.ndim == 4)


def _train_one(r: ModelSpec, X, arm: Arm, model: nn.Module, device, clock: "_Clock", where, at_steps=frozenset(),
               seen=None) -> None:
    from ogdash.models.train import train_steps

    words = f"run {where[0] + 1} of {where[1]} ({arm.name})"
    base = clock.done
    total = r.total_steps(len(arm.rows))
    on_step = None if seen is None else (lambda step: seen(step) if step in at_steps else None)
    train_steps(model, X[arm.rows], arm.labels, r, arm.seed, lambda f, _: clock.tick(base + f * total, words), device,
                on_step=on_step)
    clock.done = base + total
    clock.tick(clock.done, words)


class _Batches:
    """One arm's batches in the order ``train_steps`` draws them: a seeded permutation of its rows per epoch
    (none when one batch holds them all), cut into ``batch_size`` pieces, the last one shorter."""

    def __init__(self, arm: Arm, batch_size: int, device):
        self.rows = torch.as_tensor(arm.rows, dtype=torch.long, device=device)
        self.labels = torch.as_tensor(arm.labels, dtype=torch.long, device=device)
        self.n = len(arm.rows)
        self.bs = batch_size or self.n
        self.gen = torch.Generator().manual_seed(arm.seed)
        self.start, self.order = self.n, None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.start >= self.n:  # a new epoch
            self.start = 0
            if self.bs < self.n:
                self.order = torch.randperm(self.n, generator=self.gen).to(self.rows.device)
        part = slice(self.start, self.start + self.bs)
        self.start += self.bs
        pick = self.order[part] if self.order is not None else part
        return self.rows[pick], self.labels[pick]


def _train_stacked(r: ModelSpec, X: np.ndarray, arms: list[Arm], models: list[nn.Module], device, clock: "_Clock",
                   where, at_steps=frozenset(), seen=None) -> None:
    """Train ``models`` (one per arm) in place, all at once (see the module docstring)."""
    from torch.func import functional_call, stack_module_state, vmap

    from ogdash.models.devices import to_input

    A, total = len(arms), r.total_steps(len(arms[0].rows))
    params, buffers = stack_module_state(models)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    skeleton = copy.deepcopy(models[0]).to("meta")
    forward = vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)))
    opt = torch.optim.Adam(list(params.values()), lr=r.lr, weight_decay=r.weight_decay)
    Xt = to_input(X, device).contiguous()
    batches = [_Batches(arm, r.batch_size, device) for arm in arms]
    width = max(b.bs if b.bs < b.n else b.n for b in batches)
    full = all(b.bs >= b.n for b in batches)  # full batch: every step sees the same rows
    fixed = _padded([b.next() for b in batches], width, device) if full else None
    words = f"runs {where[0] + 1}–{where[1] + 1} of {where[2]} at once" if A < where[2] else \
        f"all {A} runs at once"
    base = clock.done
    for m in models:
        m.train()
    for step in range(total):
        rows, y, w = fixed if full else _padded([b.next() for b in batches], width, device)
        out = forward(params, buffers, Xt[rows])  # (A, width, outputs)
        loss = per_sample_loss(out.reshape(A * width, -1), y.reshape(-1)).reshape(A, width)
        per_arm = (loss * w).sum(1) / w.sum(1)
        bad = ~torch.isfinite(per_arm)
        if bad.any():
            name = arms[int(bad.nonzero()[0])].name
            raise OgdashError(f"training diverged at step {step + 1} ({name}: the loss is not finite); "
                              "lower the learning rate or check the inputs.")
        opt.zero_grad(set_to_none=True)
        per_arm.sum().backward()
        opt.step()
        clock.tick(base + (step + 1) * A, words)
        if seen is not None and step + 1 in at_steps:
            _unstack(params, models)
            for a, model in enumerate(models):
                seen(step + 1, a, model.eval())
    clock.done = base + total * A
    _unstack(params, models)
    if not all(torch.isfinite(p).all() for m in models for p in m.parameters()):
        raise OgdashError("training diverged in the last epoch (weights became NaN or infinite); "
                          "lower the learning rate or check the inputs.")


@torch.no_grad()
def _unstack(params: dict, models: list[nn.Module]) -> None:
    """Copy each arm's slice of the stacked weights into its own model."""
    for a, model in enumerate(models):
        for name, p in model.named_parameters():
            p.copy_(params[name][a])


def _padded(parts, width: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each arm's batch (rows, labels) padded to ``width`` with row 0 at weight 0: (A, width) rows, labels and
    weights."""
    A = len(parts)
    if all(len(r) == width for r, _ in parts):  # most steps: every arm has a full batch
        return (torch.stack([r for r, _ in parts]), torch.stack([lab for _, lab in parts]),
                torch.ones(A, width, device=device))
    rows = torch.zeros(A, width, dtype=torch.long, device=device)
    y = torch.zeros(A, width, dtype=torch.long, device=device)
    w = torch.zeros(A, width, device=device)
    for a, (r, lab) in enumerate(parts):
        rows[a, :len(r)], y[a, :len(r)], w[a, :len(r)] = r, lab, 1.0
    return rows, y, w


class _Clock:
    """Overall progress over every arm's steps, in words, with the time left, about twice a second."""

    def __init__(self, progress: Progress, total: int):
        self.progress, self.total, self.done = progress, max(1, total), 0
        self.t0, self.last = time.perf_counter(), 0.0

    def tick(self, done: float, words: str) -> None:
        """Say ``words`` and the time left at ``done`` steps of all arms (``self.done``: steps of finished groups)."""
        if self.progress is None:
            return
        now, f = time.perf_counter(), min(1.0, done / self.total)
        if now - self.last < 0.5 and f < 1.0:
            return
        self.last = now
        left = (now - self.t0) / f * (1 - f) if f > 0.02 and now - self.t0 > 1 else math.nan
        self.progress(f, words + ("" if math.isnan(left) or f >= 1 else f" — about {_duration(left)} left"))


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds)):.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"

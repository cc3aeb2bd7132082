"""A small model zoo. Every model is ``head(body(x))`` with ``head`` an ``nn.Linear``.

Keeping the last linear layer as a named attribute is what lets the gradient
engine use the closed form from one forward pass (see ``ogdash.engine.gradients``).
Your own networks (a torchvision architecture or ``package.module:factory``, with your
weights) are built from ``ogdash.models.user``. Binary problems use one output unit with a sigmoid (logistic regression, the
paper's toy MLP); others use softmax over C units.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from ogdash.core.errors import OgdashError

MODEL_KINDS = ("logreg", "mlp", "cnn", "paper_mlp")  # built here from a seed
USER_KINDS = ("torchvision", "custom")  # networks you bring, with your weights (``ogdash.models.user``)
HEAD = "head"  # a linear layer on backbone features: how a last-layer fine-tune trains (``ModelSpec.head_spec``)
TUNES = ("last", "all")
DEFAULTS_VERSION = 2  # bumped when what the defaults train changes, so cached default models retrain once


@dataclass(frozen=True)
class ModelSpec:
    """What to build and how to train it; two equal specs give the same model for a seed.

    epochs/lr/batch_size None mean the kind's default (see ``resolved``). batch_size 0 means
    full batch. ``steps``, when set, is the number of optimiser steps to train for, whatever
    the size of the data (epochs are then as many as those steps take): a trimmed set trains
    as long as the full one, so a retrain measures the data, not a shorter run.

    Without epochs or steps a model trains for a **budget in samples seen** (``DEFAULTS``):
    the kind's epochs on small sets, at least ``min_epochs`` passes and ``min_steps`` steps,
    and no more than ``seen`` samples, so a 50,000-sample set trains a few passes, not
    hundreds.

    Your own network (kind ``torchvision`` or ``custom``): ``arch`` names it (a torchvision
    architecture or ``package.module:factory``), ``weights`` is the file training starts
    from, ``tune`` trains the ``last`` linear layer on the frozen backbone's features or
    ``all`` layers, and ``new_head`` replaces the last layer by a fresh one trained here.

    ``scale`` (default on): a logistic regression or MLP on feature rows first standardises
    each column with the training set's mean and standard deviation (a ``Standardize``
    layer, so the statistics are stored with the weights and in the cache key), so raw and
    z-scored copies of a table train the same model. Images, the paper's 2-2-2-1 MLP and
    your own networks are never scaled.
    """

    kind: str = "mlp"
    hidden: tuple[int, ...] = (16, 16)
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float = 1e-4
    bias: bool = True
    steps: int | None = None
    arch: str | None = None
    weights: str | None = None
    tune: str = "last"
    new_head: bool = False
    scale: bool = True

    def __post_init__(self):
        if self.kind not in MODEL_KINDS + USER_KINDS + (HEAD,):
            raise OgdashError(f"unknown model {self.kind!r}; choose one of {', '.join(MODEL_KINDS + USER_KINDS)}.")
        if self.kind in USER_KINDS and not self.arch:
            raise OgdashError(f"a {self.kind} model needs its architecture (arch).")
        if self.tune not in TUNES:
            raise OgdashError(f"tune must be one of {', '.join(TUNES)}; got {self.tune!r}.")

    @property
    def user(self) -> bool:
        """Whether this is a network you brought (trained from your weights, not from a seed)."""
        return self.kind in USER_KINDS

    def defaults(self) -> dict:
        return DEFAULTS[f"{self.kind}:{self.tune}" if self.user else self.kind]

    def resolved(self, n_train: int) -> "ModelSpec":
        """This spec with every unset field filled by the kind's defaults for ``n_train`` samples."""
        d = self.defaults()
        small = self.kind in ("logreg", "mlp", "paper_mlp", HEAD) and n_train <= 1024  # tiny tables: full batch
        bs = self.batch_size if self.batch_size is not None else (0 if small else d["batch_size"])
        lr = self.lr or (d["lr"] * 10 if self.new_head else d["lr"])  # a fresh head learns faster than a tuned one
        steps = self.steps
        if steps is None and self.epochs is None:
            steps = default_steps(n_train, bs, d)
        return replace(self, hidden=tuple(self.hidden), epochs=self.epochs or d["epochs"], lr=lr, batch_size=bs, steps=steps,
                       bias=self.bias and self.kind != "paper_mlp")

    def total_steps(self, n_train: int) -> int:
        """Optimiser steps this spec takes on ``n_train`` samples."""
        r = self.resolved(n_train)
        return r.steps or r.epochs * (math.ceil(n_train / r.batch_size) if r.batch_size else 1)

    def head_spec(self) -> "ModelSpec":
        """How a last-layer fine-tune of this network trains: a linear layer on its backbone's features,
        starting from this network's last layer (or a fresh one with ``new_head``)."""
        return replace(self, kind=HEAD, tune="last")

    def key(self) -> str:
        """A stable string of the spec's fields, for cache keys (your weights by their content)."""
        fields = {k: v for k, v in asdict(self).items()
                  if v is not None and not (k in ("tune", "new_head") and not self.user and self.kind != HEAD)
                  and not (k == "scale" and self.kind not in SCALED_KINDS)}
        if self.weights:
            from ogdash.core.cache import file_digest

            fields["weights"] = file_digest(self.weights)
        if self.epochs is None and self.steps is None:
            fields["defaults"] = DEFAULTS_VERSION
        return hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()[:16]


# epochs: passes on small sets; seen: most samples seen (passes x size) by default; min_epochs, min_steps: at least
# that much training, however large (or small) the set. The seen budgets keep every benchmarked default unchanged
# (digits, MNIST-5k, 4,000 texts) and train 50,000 samples for 40 (MLP) or 3 (CNN) passes.
DEFAULTS = {
    "logreg": dict(epochs=300, lr=0.05, batch_size=128, seen=1_200_000, min_epochs=3, min_steps=300),
    "mlp": dict(epochs=500, lr=0.01, batch_size=128, seen=2_000_000, min_epochs=3, min_steps=500),
    "paper_mlp": dict(epochs=5000, lr=1e-3, batch_size=128, seen=None, min_epochs=3, min_steps=500),
    "cnn": dict(epochs=12, lr=2e-3, batch_size=64, seen=60_000, min_epochs=3, min_steps=300),
    # your network: fine-tune from your weights, a few passes; a last-layer fine-tune trains on cached features
    "torchvision:all": dict(epochs=5, lr=1e-4, batch_size=64, seen=100_000, min_epochs=1, min_steps=100),
    "torchvision:last": dict(epochs=100, lr=1e-3, batch_size=128, seen=1_000_000, min_epochs=3, min_steps=300),
    HEAD: dict(epochs=100, lr=1e-3, batch_size=128, seen=1_000_000, min_epochs=3, min_steps=300),
}
DEFAULTS["custom:all"], DEFAULTS["custom:last"] = DEFAULTS["torchvision:all"], DEFAULTS["torchvision:last"]


def default_steps(n_train: int, batch_size: int, d: dict) -> int:
    """The default step budget (see ``ModelSpec``): the kind's epochs, capped at ``seen`` samples but at least
    ``min_epochs`` passes, and at least ``min_steps`` steps."""
    per_epoch = math.ceil(n_train / batch_size) if batch_size else 1
    epochs = d["epochs"] if d["seen"] is None else min(d["epochs"], max(d["min_epochs"], d["seen"] / n_train))
    return max(d["min_steps"], math.ceil(epochs * per_epoch))


SCALED_KINDS = ("logreg", "mlp")  # the kinds that standardise feature rows when ``ModelSpec.scale``


def scales(spec: ModelSpec, input_shape) -> bool:
    """Whether ``spec`` standardises its inputs: feature rows (one dimension) into a logistic regression or MLP."""
    return spec.scale and spec.kind in SCALED_KINDS and len(tuple(input_shape)) == 1


class Standardize(nn.Module):
    """``(x - mean) / scale`` per column, with the training set's statistics kept as buffers (saved with the
    weights). Built as the identity; ``fit`` sets the statistics. A constant column keeps scale 1."""

    def __init__(self, d: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))

    @torch.no_grad()
    def fit(self, X) -> "Standardize":
        from ogdash.core.chunks import moments  # in chunks: a memory-mapped million rows is never copied whole

        mean, std = (torch.from_numpy(m) for m in moments(np.asarray(X).reshape(len(X), -1)))
        self.mean.copy_(mean)
        self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        return self

    def forward(self, x):
        return (x - self.mean) / self.scale


def fit_scaling(model: nn.Module, X) -> nn.Module:
    """Set ``model``'s ``Standardize`` layer (if it has one) to the statistics of the training inputs ``X``."""
    for m in model.modules():
        if isinstance(m, Standardize):
            m.fit(X)
    return model


def scaling_of(model: nn.Module) -> Standardize | None:
    """The model's ``Standardize`` layer, or None when it does not scale its inputs."""
    return next((m for m in model.modules() if isinstance(m, Standardize)), None)


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
    """A freshly initialised model; the same (spec, shape, classes, seed) gives the same weights.

    Your network (``spec.user``) starts from your weights instead, with a fresh seeded last
    layer when ``spec.new_head``; a ``head`` spec is that network's last layer alone.
    """
    if spec.user or spec.kind == HEAD:
        return _from_your_network(spec, input_shape, n_classes, seed)
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
    if scales(spec, input_shape):  # a layer without randomness: the seed's weights stay as they were
        body = nn.Sequential(Standardize(d_in), *(body if isinstance(body, nn.Sequential) else [body]))
    return Classifier(body, nn.Linear(d, out, bias=spec.bias and spec.kind != "paper_mlp"))


def _from_your_network(spec: ModelSpec, input_shape, n_classes: int, seed: int) -> nn.Module:
    from ogdash.models.user import last_linear, new_head

    if spec.kind != HEAD:
        model = your_network(spec, n_classes)
        return (new_head(model, input_shape, n_classes, seed) if spec.new_head else model).eval()
    # the last layer alone, on backbone features (input_shape = (H,)): fresh and seeded, or yours as trained
    torch.manual_seed(seed)
    head = nn.Linear(int(np.prod(input_shape)), 1 if n_classes == 2 else n_classes)
    if not spec.new_head:
        yours = last_linear(your_network(spec, n_classes))[1]
        head = nn.Linear(yours.in_features, yours.out_features, bias=yours.bias is not None)
        head.load_state_dict(yours.state_dict())
    return head.eval()


def your_network(spec: ModelSpec, n_classes: int) -> nn.Module:
    """``spec.arch`` with the weights in ``spec.weights``; with ``new_head``, all but its last layer's."""
    from ogdash.models.user import build_network, head_keys
    from ogdash.models.weights import load_weights, read_weights

    model = build_network(spec.arch, n_classes)
    if not spec.weights:
        return model
    state = read_weights(spec.weights)
    if spec.new_head:  # the old head may be for other classes: keep the fresh one built here
        try:
            skip = head_keys(model)
        except OgdashError:  # a backbone without a linear layer: the whole file is backbone
            skip = set()
        own = model.state_dict()
        state = {**{k: own[k] for k in skip}, **{k: v for k, v in state.items() if k not in skip}}
    return load_weights(model, spec.weights, state)


def weights_key(model: nn.Module) -> str:
    """Content hash of a model's weights: changes whenever any parameter or buffer does."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]



"""The per-sample gradient engine.

Two paths give the gradient of each training sample's own loss (not the mean):

- **last layer, closed form** (default). For a last linear layer ``z = W h + b``
  the per-sample gradient is ``dL/dW = e hᵀ`` and ``dL/db = e`` with
  ``e = dL/dz`` = ``softmax(z) - onehot(y)`` (or ``sigmoid(z) - y`` for a
  one-unit head). One batched forward pass gives ``e`` and ``h``; the
  ``GradientSet`` keeps these factors rather than the n x (C·H) product.
- **generic**: ``torch.func.vmap(grad(...))`` over any named parameters.

Both run in chunks on the best device. Dense matrices use torch's parameter
order (each parameter flattened row-major, parameters in ``named_parameters``
order), so they equal a per-sample autograd loop. With ``projection_dim`` each
chunk is projected as soon as it is made, so at most one chunk of full
gradients is ever held in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ogdash.core import chunks
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.data.dataset import Dataset
from ogdash.engine.projection import SparseProjector
from ogdash.models.losses import per_sample_loss, probabilities
from ogdash.models.devices import default_device, prepare, to_input
from ogdash.models.user import last_linear


@dataclass(eq=False)
class GradientSet:
    """Per-sample loss gradients of one dataset under one model.

    ids:      (n,) sample ids, in the dataset's order.
    probs:    (n, C) predicted class probabilities (float32); ``predicted`` is their argmax.
    loss:     (n,) per-sample loss.
    errors:   (n, K) dL/dlogits, and ``acts`` (n, H) the last layer's inputs, when the
              gradient is the closed-form last-layer one (``bias`` says whether the
              head has a bias); else None.
    dense:    (n, p) explicit gradients (generic path) or their projection; else None.
    """

    ids: np.ndarray
    probs: np.ndarray
    loss: np.ndarray
    layer: str
    errors: np.ndarray | None = None
    acts: np.ndarray | None = None
    bias: bool = False
    dense: np.ndarray | None = None
    projected: bool = False
    _predicted: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.ids)

    @property
    def predicted(self) -> np.ndarray:
        """The model's predicted class of each sample (n,), computed once, chunk by chunk (``probs`` may be a
        memory-mapped n x C file)."""
        if self._predicted is None:
            self._predicted = chunks.argmax_rows(self.probs)
        return self._predicted

    @property
    def factored(self) -> bool:
        """True when the gradients are kept as last-layer factors (errors ⊗ activations), not rows."""
        return self.dense is None

    @property
    def dim(self) -> int:
        """Number of gradient coordinates (after projection, if any)."""
        if self.dense is not None:
            return self.dense.shape[1]
        return self.errors.shape[1] * (self.acts.shape[1] + self.bias)

    def matrix(self, rows=None) -> np.ndarray:
        """The gradients as a dense (n, dim) float32 matrix (materialised from factors if needed)."""
        rows = slice(None) if rows is None else rows
        if self.dense is not None:
            return self.dense[rows]
        return outer_flat(self.errors[rows], self.acts[rows], self.bias)

    def norms(self, ord: int = 2) -> np.ndarray:
        """Exact L1 or L2 norm of every gradient; from the factors when there are any.

        ``‖e ⊗ h‖ = ‖e‖·‖h‖`` for both norms, and the bias part ``e`` adds ``‖e‖``
        (as an extra activation equal to 1).
        """
        if ord not in (1, 2):
            raise OgdashError(f"norm order must be 1 or 2; got {ord}.")
        if self.dense is not None:
            return _row_norms(self.dense, ord)
        if ord == 1:
            return _row_norms(self.errors, 1) * (_row_norms(self.acts, 1) + self.bias)
        return _row_norms(self.errors, 2) * np.sqrt(_row_norms(self.acts, 2) ** 2 + self.bias)

    def augmented_acts(self) -> np.ndarray:
        """Activations with a trailing column of ones when the head has a bias: g = e ⊗ [h, 1] up to order."""
        if not self.bias:
            return self.acts
        return np.concatenate([self.acts, np.ones((self.n, 1), dtype=self.acts.dtype)], axis=1)

    def gram(self, other: "GradientSet | None" = None, chunk_size: int = 4096) -> np.ndarray:
        """Inner products ⟨g_i, g'_j⟩, shape (n, m), float64.

        From factors ``⟨e_i ⊗ a_i, e'_j ⊗ a'_j⟩ = ⟨e_i, e'_j⟩·⟨a_i, a'_j⟩`` (a = h with the
        bias's constant 1), so the gradients are never materialised.
        """
        other = self if other is None else other
        if self.factored and other.factored:
            e1, a1 = self.errors.astype(np.float64), self.augmented_acts().astype(np.float64)
            e2, a2 = other.errors.astype(np.float64), other.augmented_acts().astype(np.float64)
            blocks = [(e1[s:s + chunk_size] @ e2.T) * (a1[s:s + chunk_size] @ a2.T) for s in range(0, self.n, chunk_size)]
            return np.concatenate(blocks) if blocks else np.zeros((0, other.n))
        return self.matrix().astype(np.float64) @ other.matrix().astype(np.float64).T

    def sketch(self, dim: int, seed: int = 0) -> np.ndarray:
        """A ``dim``-coordinate TensorSketch of factored gradients (see ``ogdash.engine.projection``)."""
        from ogdash.engine.projection import TensorSketch

        a = self.augmented_acts()
        return TensorSketch(self.errors.shape[1], a.shape[1], dim, seed).transform_factors(self.errors, a)

    def subset(self, positions) -> "GradientSet":
        """The gradients of the samples at ``positions`` (dataset order), factors kept factored."""
        p = np.asarray(positions)
        pick = lambda a: None if a is None else a[p]  # noqa: E731
        return GradientSet(self.ids[p], self.probs[p], self.loss[p], self.layer, pick(self.errors),
                           pick(self.acts), self.bias, pick(self.dense), self.projected)


def _row_norms(a, ord: int) -> np.ndarray:
    """L1 or L2 norm (float64) of every row of ``a``, chunk by chunk (``a`` may be a memory-mapped file)."""
    out = np.empty(len(a))
    for start, stop, block in chunks.blocks(a, np.float64):
        out[start:stop] = np.abs(block).sum(1) if ord == 1 else np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def outer_flat(e: np.ndarray, h: np.ndarray, bias: bool) -> np.ndarray:
    """Rows ``[vec(e hᵀ), e]`` in torch's (weight, bias) order, shape (n, K·H [+K])."""
    w = (e[:, :, None] * h[:, None, :]).reshape(len(e), -1)
    return np.concatenate([w, e], axis=1) if bias else w


def _chunks(n, chunk_size):
    return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def _tensors(ds: Dataset, s, e, device):
    x = np.array(ds.X[s:e])  # a copy: a memory-mapped features file gives its pages back at once
    chunks.release(ds.X, s, e)
    return to_input(x, device), torch.as_tensor(ds.y[s:e], dtype=torch.long, device=device)


def _in_memory(name: str, shape, dtype=np.float32) -> np.ndarray:
    """Where rows go when nobody gives an ``allocate``: memory."""
    return np.empty(shape, dtype=dtype)


def last_layer_gradients(model: nn.Module, ds: Dataset, chunk_size: int = 512,
                         progress: Progress = None, device=None, allocate: Callable | None = None) -> GradientSet:
    """Closed-form last-layer gradients from one batched forward pass (kept as factors).

    ``errors`` (n, K), ``acts`` (n, H) and ``probs`` (n, C), float32, are written chunk by chunk into the arrays
    ``allocate(name, shape, dtype)`` gives (memory-mapped cache files, say; default memory), so a million
    samples with a thousand classes never hold a 4 GB array in memory.
    """
    device = torch.device(device) if device else default_device()
    model = prepare(model, device, ds.X.ndim == 4)
    name, head = last_linear(model)
    allocate = allocate or _in_memory
    captured, out = {}, {}
    losses = np.empty(ds.n)
    hook = head.register_forward_hook(lambda m, inp, out: captured.update(h=inp[0], z=out))
    try:
        with torch.no_grad():
            for i, (s, e) in enumerate(spans := _chunks(ds.n, chunk_size)):
                xb, yb = _tensors(ds, s, e, device)
                model(xb)
                h, z = captured["h"].flatten(1), captured["z"]
                if z.shape[1] == 1:
                    err = torch.sigmoid(z) - yb[:, None].to(z.dtype)
                else:
                    err = torch.softmax(z, 1)
                    err[torch.arange(len(yb), device=device), yb] -= 1
                rows = {"errors": err, "acts": h, "probs": probabilities(z)}
                if not out:
                    out = {k: allocate(k, (ds.n, v.shape[1]), np.float32) for k, v in rows.items()}
                for k, v in rows.items():
                    chunks.write(out[k], s, v.float().cpu().numpy())
                losses[s:e] = per_sample_loss(z, yb).double().cpu().numpy()
                if progress:
                    progress((i + 1) / len(spans), f"gradients {e}/{ds.n}")
    finally:
        hook.remove()
    return GradientSet(ds.ids.copy(), out["probs"], losses, name, errors=out["errors"], acts=out["acts"],
                       bias=head.bias is not None)


def parameter_names(model: nn.Module, layer: str) -> list[str]:
    """Names of the trainable parameters a layer choice covers ('all', a module name, or a parameter name)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if layer == "all":
        return names
    chosen = [n for n in names if n == layer or n.startswith(layer + ".")]
    if not chosen:
        raise OgdashError(f"no parameters under {layer!r}; choose one of {selectable_layers(model)}.")
    return chosen


def selectable_layers(model: nn.Module) -> list[str]:
    """Module names that own parameters directly, last first (what the layer picker offers)."""
    mods = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    return mods[::-1] + ["all"]


def generic_gradients(model: nn.Module, ds: Dataset, layer: str = "all", chunk_size: int = 256,
                      projector: SparseProjector | None = None, progress: Progress = None,
                      device=None, allocate: Callable | None = None) -> GradientSet:
    """Per-sample gradients of any parameters with ``torch.func.vmap(grad(...))``.

    Each chunk is projected (if asked) and written into one output array as soon as
    it is made: ``allocate(name, shape, dtype)`` gives that array (a memory-mapped cache file, say),
    so memory holds one chunk of full gradients at a time.
    """
    from torch.func import functional_call, grad, vmap

    device = torch.device(device) if device else default_device()
    model = model.to(device).eval()
    names = parameter_names(model, layer)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss_of(chosen, x, t):
        out = functional_call(model, ({**params, **chosen}, buffers), (x[None],))
        return per_sample_loss(out, t[None])[0]

    per_sample = vmap(grad(loss_of), in_dims=(None, 0, 0))
    chosen = {n: params[n] for n in names}
    width = projector.d_out if projector else sum(params[n].numel() for n in names)
    out = (allocate or _in_memory)("dense", (ds.n, width), np.float32)
    probs, losses = [], []
    spans = _chunks(ds.n, chunk_size)
    for i, (s, e) in enumerate(spans):
        xb, yb = _tensors(ds, s, e, device)
        g = per_sample(chosen, xb, yb)
        flat = torch.cat([g[n].reshape(len(xb), -1) for n in names], 1).float().cpu().numpy()
        chunks.write(out, s, projector.transform(flat) if projector else flat)
        with torch.no_grad():
            z = model(xb)
            probs.append(probabilities(z).float().cpu().numpy())
            losses.append(per_sample_loss(z, yb).double().cpu().numpy())
        if progress:
            progress((i + 1) / len(spans), f"gradients {e}/{ds.n}")
    return GradientSet(ds.ids.copy(), np.concatenate(probs), np.concatenate(losses), layer,
                       dense=out, projected=projector is not None)


def linear_gradients(modules: list[nn.Linear], losses: Callable[[np.ndarray], torch.Tensor], batches,
                     projector=None, progress: Progress = None, label: str = "Gradients") -> np.ndarray:
    """Per-sample gradients of linear layers, for models a ``vmap`` cannot batch (transformers, LoRA).

    ``losses(positions)`` runs the model on those samples and returns their own losses
    (b,). Forward hooks keep each module's input x and output gradient g, so one
    backward per batch gives every sample's ``dL/dW = sum_t g_t x_tᵀ`` (t: tokens; inputs
    without a token axis have one) and ``dL/db = sum_t g_t``; samples must not interact
    (no batch norm). Rows follow ``batches`` (arrays of positions into the output), columns
    the modules in order, each weight row-major then its bias (when it trains). With a
    ``projector`` each batch is projected as soon as it is made.
    """
    store: list[dict] = [{} for _ in modules]

    def hook(slot):
        def forward(module, inputs, output):
            slot["x"] = inputs[0].detach()
            output.register_hook(lambda g: slot.__setitem__("g", g.detach()))
        return forward

    params = [p for m in modules for p in ([m.weight] + ([m.bias] if m.bias is not None and m.bias.requires_grad else []))]
    width = sum(p.numel() for p in params)
    n = sum(len(b) for b in batches)
    out = np.empty((n, width if projector is None else projector.d_out), dtype=np.float32)
    handles = [m.register_forward_hook(hook(slot)) for m, slot in zip(modules, store)]
    try:
        for k, pos in enumerate(batches):
            for slot in store:
                slot.clear()
            loss = losses(pos)
            torch.autograd.grad(loss.sum(), params)
            rows = []
            for m, slot in zip(modules, store):
                x, g = slot["x"].float(), slot["g"].float()
                if x.dim() == 2:
                    x, g = x[:, None], g[:, None]
                rows.append(torch.einsum("bto,bti->boi", g, x).reshape(len(pos), -1))
                if m.bias is not None and m.bias.requires_grad:
                    rows.append(g.sum(1))
            G = torch.cat(rows, dim=1).cpu().numpy()
            out[pos] = G if projector is None else projector.transform(G)
            if progress:
                progress((k + 1) / len(batches), f"{label}: batch {k + 1}/{len(batches)}")
    finally:
        for h in handles:
            h.remove()
    return out


def extract_gradients(model: nn.Module, ds: Dataset, layer: str = "last", projection_dim: int | None = None,
                      seed: int = 0, chunk_size: int | None = None, progress: Progress = None,
                      device=None, allocate: Callable | None = None) -> GradientSet:
    """Per-sample gradients of every sample in ``ds``.

    layer: 'last' (closed form on the last linear layer, the default), a module or
    parameter name, or 'all'. projection_dim: project to that many dimensions
    (None keeps full gradients): a TensorSketch of the last layer's factors, or a
    seeded sparse random projection of each chunk on the generic path.
    allocate(name, shape, dtype): where rows are written (the factors, or the generic path's rows; default memory).
    """
    if layer == "last":
        gs = last_layer_gradients(model, ds, chunk_size or 512, progress, device, None if projection_dim else allocate)
        if projection_dim:
            gs = project(gs, projection_dim, seed)
        return gs
    projector = None
    if projection_dim:
        p = sum(dict(model.named_parameters())[n].numel() for n in parameter_names(model, layer))
        projector = SparseProjector(p, projection_dim, seed)
    return generic_gradients(model, ds, layer, chunk_size or 256, projector, progress, device, allocate)


def project(gs: GradientSet, dim: int, seed: int = 0, chunk_size: int = 4096) -> GradientSet:
    """Project a GradientSet to ``dim`` coordinates.

    Factored gradients are sketched from their factors (TensorSketch, never
    forming e ⊗ h); dense ones go through a seeded sparse random projection one
    chunk at a time.
    """
    if gs.projected:
        raise OgdashError("these gradients are already projected.")
    if gs.factored:
        out = gs.sketch(dim, seed)
    else:
        projector = SparseProjector(gs.dim, dim, seed)
        out = np.concatenate([projector.transform(gs.matrix(slice(s, e))) for s, e in _chunks(gs.n, chunk_size)])
    return GradientSet(gs.ids, gs.probs, gs.loss, gs.layer, dense=out, projected=True)


def to_arrays(gs: GradientSet) -> dict:
    """A GradientSet as plain arrays and scalars (for the disk cache)."""
    out = {"ids": gs.ids, "probs": gs.probs, "loss": gs.loss, "layer": gs.layer, "bias": gs.bias,
           "projected": gs.projected}
    for name in ("errors", "acts", "dense"):
        if getattr(gs, name) is not None:
            out[name] = getattr(gs, name)
    return out


def from_arrays(a: dict) -> GradientSet:
    """A GradientSet from the arrays ``to_arrays`` stored (a cache entry)."""
    return GradientSet(a["ids"], a["probs"], a["loss"], a["layer"], a.get("errors"), a.get("acts"),
                       bool(a["bias"]), a.get("dense"), bool(a["projected"]))

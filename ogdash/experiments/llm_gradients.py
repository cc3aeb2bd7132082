"""Per-prompt LoRA gradients of a fine-tuned language model, from a batched backward pass.

Per-sample gradients of each prompt's loss (all its tokens by default, as DataInf's
code, or its completion only; ``ogdash.models.llm.LOSS_ON``) with respect to the LoRA
parameters. A LoRA layer is two linear maps, ``A`` then ``B``; for a linear map
``y_t = W x_t`` applied at every token t, one sample's gradient is
``sum_t (dL/dy_t) x_t^T``. Hooks keep each LoRA linear's input ``x`` and output
gradient, and one einsum per batch gives every sample's gradient, because the batch
loss is the *sum* of per-sample losses, so each sample's output gradients are its own.
For ``B`` that is ``sum_t delta_t (A x_t)^T``; for ``A`` it is ``sum_t (B^T delta_t) x_t^T``
(``delta`` already carrying the LoRA scale). ``layers="last"`` takes the last decoder
layer's LoRA parameters only (the paper's choice for outlier gradients), ``"all"``
every LoRA layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.engine.gradients import linear_gradients
from ogdash.engine.projection import SparseProjector
from ogdash.models import llm
from ogdash.models.prompt_lm import PromptLM

LAYERS = {"last": "last decoder layer's LoRA (the paper's)", "all": "every LoRA layer"}


@dataclass(eq=False)
class LoraGradients:
    """Per-sample LoRA gradients (float32) of a set of prompts.

    matrix:  (n, p) rows in the order of the indices asked for.
    loss:    (n,) each prompt's loss.
    blocks:  (name, start, stop) column ranges, one per LoRA parameter tensor, in model
             order (each tensor flattened row-major); a single ("projection", 0, d) block
             when projected.
    """

    matrix: np.ndarray
    loss: np.ndarray
    blocks: list[tuple[str, int, int]]
    projected: bool = False

    @property
    def dim(self) -> int:
        """Number of gradient coordinates p."""
        return self.matrix.shape[1]


def chosen_parameters(peft_model, layers: str) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of the LoRA parameters whose gradients ``layers`` ('last' or 'all') asks for."""
    if layers not in LAYERS:
        raise OgdashError(f"Unknown layer choice {layers!r}; choose one of {', '.join(LAYERS)}.")
    return llm.in_layers(llm.lora_parameters(peft_model), layers)


def lora_gradients(runner: PromptLM, indices: Sequence[int], layers: str = "last", batch_size: int = 16,
                   projector: SparseProjector | None = None, progress: Progress = None) -> LoraGradients:
    """Per-sample gradients of each prompt's loss w.r.t. the chosen LoRA parameters.

    Batched: one forward and one backward per batch of ``batch_size`` prompts (sorted by
    length, so little padding). With ``projector``, each batch is projected as soon as it
    is made, so the full gradients of only one batch are ever held.
    """
    model = runner.model
    chosen = chosen_parameters(model, layers)
    chosen_ids = {id(p) for _, p in chosen}
    all_lora = llm.lora_parameters(model)
    saved_flags = [p.requires_grad for _, p in all_lora]
    for _, p in all_lora:  # backward then stops below the lowest chosen layer
        p.requires_grad_(id(p) in chosen_ids)
    modules = [model.get_submodule(n[: -len(".weight")]) for n, _ in chosen]
    blocks, start = [], 0
    for n, p in chosen:
        blocks.append((n, start, start + p.numel()))
        start += p.numel()
    p_total = start
    indices = np.asarray(indices, dtype=np.int64)
    d_out = projector.d_out if projector is not None and projector.d_out < p_total else p_total
    losses = np.empty(len(indices), dtype=np.float64)
    order = np.argsort(runner.lengths[indices], kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def batch_losses(pos):
        loss = runner.losses(indices[pos])
        losses[pos] = loss.detach().cpu().numpy()
        return loss

    was_training = model.training
    model.eval()
    try:
        out = linear_gradients(modules, batch_losses, batches, projector if d_out < p_total else None, progress,
                               f"Gradients ({'last layer' if layers == 'last' else 'all LoRA layers'})")
    finally:
        for (_, p), flag in zip(all_lora, saved_flags):
            p.requires_grad_(flag)
        model.train(was_training)
    if d_out < p_total:
        blocks = [("projection", 0, d_out)]
    return LoraGradients(matrix=out, loss=losses, blocks=blocks, projected=d_out < p_total)


def lora_gradients_loop(runner: PromptLM, indices: Sequence[int], layers: str = "last", fast: bool = False
                        ) -> np.ndarray:
    """Reference: the same gradients from one autograd call per prompt (slow; for tests).

    ``fast=False`` runs the model's own full forward pass, without the cached frozen
    layers or the completion-only output layer, so it checks those shortcuts too.
    """
    chosen = [p for _, p in chosen_parameters(runner.model, layers)]
    rows = []
    for i in indices:
        grads = torch.autograd.grad(runner.losses([int(i)], fast=fast).sum(), chosen)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).float().cpu().numpy())
    return np.stack(rows)



def gradient_width(runner: PromptLM, layers: str, proj_dim: int | None) -> tuple[int, int]:
    """(p, d): the number of chosen LoRA coordinates and the stored width (``proj_dim`` when smaller)."""
    p = sum(q.numel() for _, q in chosen_parameters(runner.model, layers))
    return p, (min(p, proj_dim) if proj_dim else p)


def store_lora_gradients(runner: PromptLM, indices: Sequence[int], writer, name: str, layers: str = "last",
                         proj_dim: int | None = 8192, seed: int = 0, batch_size: int = 16, chunk: int = 512,
                         progress: Progress = None) -> tuple[np.ndarray, list]:
    """Per-sample LoRA gradients written into a cache entry as they are made, never all in memory.

    ``writer`` (``DiskCache.writer``) receives ``{name}_unit``, (n, d) float16 rows of unit norm, memory-mapped,
    and ``{name}_norm``, (n,) float32 (see ``ogdash.influence.streaming.RowStore``); d is ``proj_dim`` (a seeded
    sparse random projection) when the gradients are wider. Samples run ``chunk`` at a time in order of length.
    Returns (each sample's loss (n,), the column blocks).
    """
    indices = np.asarray(indices, dtype=np.int64)
    p, d = gradient_width(runner, layers, proj_dim)
    projector = SparseProjector(p, d, seed) if d < p else None
    unit = writer.array(f"{name}_unit", (len(indices), d), np.float16)
    norm = np.empty(len(indices), dtype=np.float32)
    loss = np.empty(len(indices))
    order = np.argsort(runner.lengths[indices], kind="stable")
    blocks: list = []
    for k, start in enumerate(range(0, len(order), chunk)):
        pos = order[start:start + chunk]

        def report(f, msg, k=k, size=len(pos)):
            if progress:
                progress(min(1.0, (start + f * size) / len(order)), msg.split(":")[0] + f": {start + int(f * size)}"
                         f"/{len(order)} prompts")

        g = lora_gradients(runner, indices[pos], layers, batch_size, projector, report)
        r = np.linalg.norm(g.matrix, axis=1)
        unit[pos] = (g.matrix / np.where(r > 0, r, 1.0)[:, None]).astype(np.float16)
        norm[pos], loss[pos], blocks = r, g.loss, g.blocks
    writer.put(f"{name}_norm", norm)
    return loss, [list(b) for b in blocks]

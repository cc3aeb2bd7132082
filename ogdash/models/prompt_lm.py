"""Fine-tuning a causal language model on prompts: encoding, the forward pass with cached lower layers,
per-prompt losses, LoRA fine-tuning, the adapter cache and generation.

The loss of a prompt is the mean next-token cross-entropy over its loss tokens: by
default every token of prompt + completion, as DataInf's code (and so the paper's
Table 3) does, or only the completion (the model's answer); the output layer runs on
those positions only. With LoRA only in the top layers (``LoraSettings``), the frozen
layers below run once per prompt and their output is cached (:class:`PromptLM`).
"""
from __future__ import annotations

import copy
import inspect
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress

from ogdash.models.llm import (LOSS_ON, FinetuneSettings, LoraSettings, _decoder, _decoder_layers,
                               lora_layer_index, lora_parameters)

# --------------------------------------------------------------------------- encoding

KEEP_PROMPT = 8  # tokens of prompt a cut completion leaves room for (truncate=True)


@dataclass(frozen=True, eq=False)
class Encoded:
    """Token ids of prompt + completion (+ EOS) for each sample.

    ``n_prompt[i]``: how many of sample i's ids are the prompt. ``loss_start[i]``: the
    loss covers ids[loss_start:] (predicted from the position before each).
    ``truncated[i]``: sample i was longer than ``max_length`` and was cut (empty when
    nothing was cut).
    """

    ids: tuple[torch.Tensor, ...]
    n_prompt: tuple[int, ...]
    loss_start: tuple[int, ...]
    truncated: tuple[bool, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_truncated(self) -> int:
        return sum(self.truncated)


def encode(tokenizer, prompts: Sequence[str], completions: Sequence[str], max_length: int = 128,
           loss_on: str = "all", truncate: bool = False) -> Encoded:
    """Tokenize prompt and completion apart (so generation sees the same prompt ids), append EOS,
    and cut from the left when longer than ``max_length`` (the completion is kept).

    ``loss_on``: "all" (every token after the first, as a causal LM's own loss) or
    "completion" (the completion tokens and EOS only). A completion that does not fit is
    refused, or with ``truncate`` cut from the right to leave ``KEEP_PROMPT`` prompt tokens
    (its EOS kept); ``Encoded.truncated`` says which samples were cut.
    """
    if loss_on not in LOSS_ON:
        raise OgdashError(f"loss_on must be one of {', '.join(LOSS_ON)}; got {loss_on!r}.")
    if len(prompts) != len(completions):
        raise OgdashError(f"{len(prompts)} prompts but {len(completions)} completions; give one completion each.")
    p_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"] if len(prompts) else []
    c_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"] if len(prompts) else []
    ids, n_prompt, cut = [], [], []
    room = max(1, max_length - KEEP_PROMPT)
    for p, c in zip(p_ids, c_ids):
        long = len(p) + len(c) + 1 > max_length
        c = list(c) + [tokenizer.eos_token_id]
        if len(c) >= max_length:
            if not truncate:
                raise OgdashError(f"A completion is {len(c)} tokens long, more than max_length={max_length}; "
                                  "raise max_length.")
            c = c[:room - 1] + [tokenizer.eos_token_id]
        p = list(p)[-(max_length - len(c)):]
        ids.append(torch.tensor(p + c, dtype=torch.long))
        n_prompt.append(len(p))
        cut.append(long)
    start = n_prompt if loss_on == "completion" else [1] * len(ids)
    return Encoded(tuple(ids), tuple(n_prompt), tuple(start), tuple(cut))


def opening_groups(encoded: Encoded, tokens: int = 4, min_size: int = 8) -> np.ndarray:
    """Group ids (n,) of samples that open with the same first ``tokens`` token ids (a shared system prompt or
    task preamble); openings shared by fewer than ``min_size`` samples go to one group. ``PromptLM`` runs a
    group's shared opening once."""
    keys = [tuple(x[:tokens].tolist()) for x in encoded.ids]
    counts: dict[tuple, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    ids: dict[tuple, int] = {}
    out = np.zeros(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        if counts[k] >= min_size:
            out[i] = ids.setdefault(k, len(ids) + 1)
    return out


def _length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar lengths (less padding). With ``rng``: shuffled, sorted within
    windows of 8 batches, batch order shuffled; without: sorted by length."""
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    window = 8 * batch_size
    batches = []
    for start in range(0, n, window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# --------------------------------------------------------------------------- the forward pass


@contextmanager
def _only_layers(decoder: nn.Module, start: int):
    """Run the decoder's forward over layers[start:] only (fed with inputs_embeds)."""
    full = decoder.layers
    decoder.layers = nn.ModuleList(list(full)[start:])
    try:
        yield
    finally:
        decoder.layers = full


class _Stop(Exception):
    pass


class PromptLM:
    """Per-sample losses of a (LoRA-wrapped) causal LM over encoded prompts.

    The decoder layers below the lowest LoRA layer are frozen, so their output depends
    on the prompt only: it is computed once per sample (``compute_prefix``) and reused by
    every later pass, which then runs only the top layers. ``groups`` (e.g. class labels)
    names samples likely to open with the same tokens; a shared opening runs once per
    group. The output layer runs on the loss positions only. These shortcuts are
    checked once against the model's own forward on two samples; if they disagree (an
    architecture that, e.g., rescales its inputs inside forward) the plain full forward
    is used instead.
    """

    def __init__(self, peft_model, tokenizer, encoded: Encoded, device=None, groups=None):
        self.model = peft_model
        self.tokenizer = tokenizer
        self.encoded = encoded
        self.device = torch.device(device) if device is not None else next(peft_model.parameters()).device
        self.decoder = _decoder(peft_model)
        layers = _decoder_layers(peft_model)
        lora_layers = [lora_layer_index(n) for n, _ in lora_parameters(peft_model)]
        if not lora_layers:
            raise OgdashError("The model carries no LoRA adapter; wrap it with add_lora first.")
        self.start = min(lora_layers)
        self.n_layers = len(layers)
        self.lengths = np.array([len(x) for x in encoded.ids])
        self.groups = np.zeros(len(encoded), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        if self.groups.shape != (len(encoded),):
            raise OgdashError(f"groups must hold one entry per sample ({len(encoded)}); got shape {self.groups.shape}.")
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_arg = next((a for a in ("cache", "past_key_values") if a in params), None)
        self._prefix: list[torch.Tensor | None] = [None] * len(encoded)
        self.prefix_seconds = 0.0
        base = peft_model.get_base_model()
        self.head = base.get_output_embeddings()
        self.fast = self.head is not None  # compute_prefix reads it during the check
        self.fast = self.fast and self._check_fast()

    def reencode(self, encoded: Encoded, groups=None) -> None:
        """Run on other samples with the same model (a typed query): keeps the checked forward path."""
        self.encoded = encoded
        self.lengths = np.array([len(x) for x in encoded.ids])
        self.groups = np.zeros(len(encoded), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        self._prefix = [None] * len(encoded)

    # -- batches

    def _pad_ids(self, idx, skip: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and attention mask of samples ``idx``, without their first ``skip`` tokens."""
        T = int(self.lengths[idx].max()) - skip
        ids = torch.full((len(idx), T), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for r, i in enumerate(idx):
            x = self.encoded.ids[i][skip:]
            ids[r, :len(x)] = x
            mask[r, :len(x)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _targets(self, idx):
        """Flat (row, position, target id, sample slot) of every loss token in a batch."""
        rows, pos, tgt, slot = [], [], [], []
        for r, i in enumerate(idx):
            x, p = self.encoded.ids[i], self.encoded.loss_start[i]
            n = len(x) - p
            rows += [r] * n
            pos += list(range(p - 1, len(x) - 1))  # the logit at t predicts token t + 1
            tgt.append(x[p:])
            slot += [r] * n
        dev = self.device
        return (torch.tensor(rows, device=dev), torch.tensor(pos, device=dev), torch.cat(tgt).to(dev),
                torch.tensor(slot, device=dev))

    # -- the frozen prefix

    def _frozen(self, ids, mask, cache=None) -> torch.Tensor:
        """Input of layer ``start`` (B, T, H): the frozen layers only, aborted there."""
        captured = {}

        def grab(module, args, kwargs):
            captured["h"] = args[0] if args else kwargs["hidden_states"]
            raise _Stop

        handle = _decoder_layers(self.model)[self.start].register_forward_pre_hook(grab, with_kwargs=True)
        kwargs = {"use_cache": cache is not None}
        if cache is not None:
            kwargs[self._cache_arg] = cache
        try:
            self.decoder(input_ids=ids, attention_mask=mask, **kwargs)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured["h"]

    def _shared_prefix(self, members: np.ndarray) -> int:
        """Length of the token prefix that all these samples share (each keeps >= 1 own token)."""
        seqs = [self.encoded.ids[i] for i in members]
        n = min(len(x) for x in seqs) - 1
        first = seqs[0][:n]
        for x in seqs[1:]:
            diff = (x[:n] != first).nonzero()
            if len(diff):
                n = int(diff[0])
                first = first[:n]
        return max(n, 0)

    def compute_prefix(self, indices=None, batch_size: int = 32, progress: Progress = None) -> float:
        """Run the frozen layers once for these samples (default all); returns the seconds spent.

        Samples of one group (``groups``, e.g. the class) often open with the same tokens;
        with causal attention those positions' states are the same in every such sample,
        so the shared opening runs once per group and the rest reads its keys and values
        from a cache.
        """
        if not self.fast or self.start == 0:
            return 0.0
        todo = np.array([i for i in (range(len(self.encoded)) if indices is None else indices)
                         if self._prefix[i] is None], dtype=np.int64)
        if len(todo) == 0:
            return 0.0
        t0 = time.perf_counter()
        plan = []  # (shared length, batch of sample indices)
        for g in np.unique(self.groups[todo]):
            members = todo[self.groups[todo] == g]
            shared = self._shared_prefix(members) if len(members) > 1 and self._cache_arg else 0
            shared = shared if shared >= 4 else 0
            order = members[np.argsort(self.lengths[members], kind="stable")]
            plan += [(shared, order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
        done_shared: dict[tuple, tuple] = {}
        with torch.no_grad():
            for b, (shared, idx) in enumerate(plan):
                if shared == 0:
                    ids, mask = self._pad_ids(idx)
                    h = self._frozen(ids, mask)
                    rows = [h[r, :self.lengths[i]] for r, i in enumerate(idx)]
                else:
                    key = tuple(self.encoded.ids[idx[0]][:shared].tolist())
                    if key not in done_shared:
                        from transformers import DynamicCache

                        cache = DynamicCache(config=self.decoder.config)
                        head_ids = torch.tensor([key], device=self.device)
                        h_shared = self._frozen(head_ids, torch.ones_like(head_ids), cache)
                        done_shared[key] = (h_shared[0], cache)
                    h_shared, cache = done_shared[key]
                    ids, mask = self._pad_ids(idx, skip=shared)
                    batch_cache = copy.deepcopy(cache)
                    batch_cache.batch_repeat_interleave(len(idx))
                    full_mask = torch.cat([mask.new_ones((len(idx), shared)), mask], dim=1)
                    h = self._frozen(ids, full_mask, batch_cache)
                    rows = [torch.cat([h_shared, h[r, :self.lengths[i] - shared]]) for r, i in enumerate(idx)]
                for i, row in zip(idx, rows):
                    self._prefix[i] = row.detach().clone()
                if progress:
                    progress((b + 1) / len(plan), f"Frozen layers 1-{self.start}: batch {b + 1}/{len(plan)}")
        dt = time.perf_counter() - t0
        self.prefix_seconds += dt
        return dt

    # -- losses

    def _hidden(self, idx, ids, mask) -> torch.Tensor:
        """Last hidden states (B, T, H) after the final norm."""
        if self.start == 0:
            return self.decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        self.compute_prefix(idx)
        T = ids.shape[1]
        first = self._prefix[idx[0]]
        h = first.new_zeros((len(idx), T, first.shape[-1]))
        for r, i in enumerate(idx):
            h[r, :self.lengths[i]] = self._prefix[i]
        with _only_layers(self.decoder, self.start):
            return self.decoder(inputs_embeds=h, attention_mask=mask, use_cache=False).last_hidden_state

    def losses(self, idx, fast: bool | None = None) -> torch.Tensor:
        """Mean cross-entropy over each sample's loss tokens, for samples ``idx`` (B,), with autograd."""
        idx = np.asarray(idx, dtype=np.int64)
        ids, mask = self._pad_ids(idx)
        rows, pos, tgt, slot = self._targets(idx)
        if self.fast if fast is None else fast:
            hidden = self._hidden(idx, ids, mask)
            logits = self.head(hidden[rows, pos])
        else:
            logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[rows, pos]
        tok = nn.functional.cross_entropy(logits.float(), tgt, reduction="none")
        total = torch.zeros(len(idx), device=tok.device).index_add(0, slot, tok)
        count = torch.zeros(len(idx), device=tok.device).index_add(0, slot, torch.ones_like(tok))
        return total / count

    def _check_fast(self) -> bool:
        if self.head is None:
            return False
        first = int(np.argmin(self.lengths))  # two short samples of one group: exercises the shared opening
        mates = np.flatnonzero(self.groups == self.groups[first])
        idx = mates[np.argsort(self.lengths[mates], kind="stable")][:2]
        try:
            with torch.no_grad():
                a = self.losses(idx, fast=True)
                b = self.losses(idx, fast=False)
        except Exception as e:  # an architecture whose forward the shortcut cannot reproduce
            warnings.warn(f"ogdash: falling back to the full forward pass ({e}).")
            ok = False
        else:
            ok = bool(torch.allclose(a, b, rtol=1e-3, atol=1e-4))
            if not ok:
                warnings.warn("ogdash: the cached-prefix forward disagrees with the model's own; using the full pass.")
        self._prefix = [None] * len(self.encoded)
        self.prefix_seconds = 0.0
        return ok


# --------------------------------------------------------------------------- fine-tuning


def finetune(runner: PromptLM, train_idx, settings: FinetuneSettings = FinetuneSettings(),
             progress: Progress = None, steps: int | None = None) -> dict:
    """Fine-tune the adapter of ``runner.model`` in place on samples ``train_idx``.

    ``steps``: train for exactly this many optimiser steps (passes over ``train_idx``
    repeat as needed; the last may stop part-way), so that runs on subsets of a set can
    take the whole set's step budget. Default: ``settings.epochs`` passes.
    Returns ``{"epoch_loss": [...], "seconds": s, "steps": k}``, the mean training loss per pass.
    """
    model = runner.model
    params = [p for _, p in lora_parameters(model)]
    for p in params:
        p.requires_grad_(True)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    t0 = time.perf_counter()
    epoch_loss: list[float] = []
    steps_per_epoch = math.ceil(len(train_idx) / settings.batch_size)
    total = settings.epochs * steps_per_epoch if steps is None else int(steps)
    if total <= 0 or len(train_idx) == 0:
        return {"epoch_loss": epoch_loss, "seconds": 0.0, "steps": 0}
    epochs = math.ceil(total / steps_per_epoch)
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    rng = np.random.default_rng(settings.seed)
    step = 0
    torch.manual_seed(settings.seed)  # LoRA dropout masks
    model.train()
    try:
        for epoch in range(epochs):
            running, seen = 0.0, 0
            for pos in _length_batches(runner.lengths[train_idx], settings.batch_size, rng):
                if step == total:
                    break
                loss = runner.losses(train_idx[pos]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running += loss.item() * len(pos)
                seen += len(pos)
                step += 1
                if progress:
                    progress(step / total, f"Fine-tuning: epoch {epoch + 1}/{epochs}, step {step}/{total}, "
                                           f"loss {running / seen:.3f}")
            epoch_loss.append(running / seen)
    finally:
        model.eval()
        opt.zero_grad(set_to_none=True)
    return {"epoch_loss": epoch_loss, "seconds": time.perf_counter() - t0, "steps": step}


def reset_adapter(peft_model, seed: int) -> None:
    """Give every LoRA layer fresh initial weights from ``seed`` (peft's own initialisation: A random, B zero),
    so that runs compared with each other start from the same adapter."""
    from peft.tuners.lora import LoraLayer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in peft_model.modules():
            if isinstance(module, LoraLayer):
                for name in module.lora_A:
                    module.reset_lora_parameters(name, True)


def eval_losses(runner: PromptLM, idx, batch_size: int = 16) -> np.ndarray:
    """Each sample's mean loss over its loss tokens, without gradients (eval mode), in the order of ``idx``."""
    idx = np.asarray(idx, dtype=np.int64)
    out = np.empty(len(idx))
    was = runner.model.training
    runner.model.eval()
    try:
        with torch.no_grad():
            for pos in _length_batches(runner.lengths[idx], batch_size, None):
                out[pos] = runner.losses(idx[pos]).float().cpu().numpy()
    finally:
        runner.model.train(was)
    return out


def adapter_key(model_key_: str, train_fingerprint: str, lora: LoraSettings, settings: FinetuneSettings) -> str:
    """The cache key of a LoRA adapter: base model, training prompts and settings."""
    return cache_key("llm-adapter-v1", model_key_, train_fingerprint, asdict(lora), asdict(settings))


def save_adapter(cache: DiskCache, key: str, peft_model, info: dict) -> None:
    """Store the LoRA weights and the fine-tuning record under ``key``."""
    named = lora_parameters(peft_model)
    arrays = {f"p{i:04d}": p.detach().float().cpu().numpy() for i, (_, p) in enumerate(named)}
    arrays["names"] = [n for n, _ in named]
    arrays["info"] = info
    cache.save("llm_adapter", key, arrays)


def load_adapter(cache: DiskCache, key: str, peft_model) -> dict | None:
    """Copy cached LoRA weights into ``peft_model``; returns the fine-tuning info, or None on a miss."""
    hit = cache.load("llm_adapter", key, mmap=False)
    if hit is None:
        return None
    named = lora_parameters(peft_model)
    if hit.get("names") != [n for n, _ in named]:
        return None
    with torch.no_grad():
        for i, (_, p) in enumerate(named):
            p.copy_(torch.from_numpy(np.asarray(hit[f"p{i:04d}"])).to(p.device, p.dtype))
    return hit.get("info", {})


# --------------------------------------------------------------------------- generation


def complete_many(peft_model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 48, batch_size: int = 16,
                  stop_at_newline: bool = True, progress: Progress = None) -> list[str]:
    """Greedy completions of many prompts, in left-padded batches (one generate call per batch)."""
    device = next(peft_model.parameters()).device
    order = np.argsort([len(p) for p in prompts], kind="stable")
    out: list[str] = [""] * len(prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for b, start in enumerate(range(0, len(order), batch_size)):
            idx = order[start:start + batch_size]
            enc = tokenizer([prompts[i] for i in idx], add_special_tokens=True, padding=True, return_tensors="pt")
            with torch.no_grad():
                gen = peft_model.generate(input_ids=enc["input_ids"].to(device),
                                          attention_mask=enc["attention_mask"].to(device),
                                          max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            width = enc["input_ids"].shape[1]
            for r, i in enumerate(idx):
                text = tokenizer.decode(gen[r, width:], skip_special_tokens=True)
                out[i] = text.split("\n")[0] if stop_at_newline else text
            if progress:
                progress(min(1.0, (start + len(idx)) / len(prompts)), f"Generating: batch {b + 1}")
    finally:
        tokenizer.padding_side = side
    return out


def complete(peft_model, tokenizer, prompt: str, max_new_tokens: int = 48) -> str:
    """The model's greedy completion of one prompt (stops at end-of-sequence or a newline)."""
    ids = tokenizer(prompt, add_special_tokens=True, return_tensors="pt")["input_ids"]
    ids = ids.to(next(peft_model.parameters()).device)
    with torch.no_grad():
        out = peft_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                  do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return text.split("\n")[0]

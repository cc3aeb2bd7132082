"""Typed queries: the training examples that most influence one prompt you type (and the completion you saw, or
the model's own), by each method, against the stored gradients of an ``llm_files`` run."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.core.threads import one_thread
from ogdash.data.prompt_files import chat_turns, render_chat
from ogdash.engine.projection import SparseProjector
from ogdash.experiments.llm_files import (DEFAULT_METHODS, FileRun, Grouping, _scratch_cache, encode_data,
                                          influence_rows, load_model, og_forests, top_table)
from ogdash.experiments.llm_gradients import gradient_width, lora_gradients
from ogdash.models import prompt_lm
from ogdash.models.prompt_lm import PromptLM


@dataclass(eq=False)
class QueryResult:
    """One typed query: the prompt, the completion scored (given, or the model's own), its loss, and per method
    the ranked table of training examples."""

    prompt: str
    completion: str
    generated: bool
    loss: float
    tables: dict
    seconds: float
    stages: dict


MEMORY_BYTES = 512 * 2**20  # training gradients up to this size (float32) stay in memory for queries


class QueryEngine:
    """A loaded model with the run's adapter, answering typed prompts against the stored training gradients.

    The adapter comes from the cache (fine-tuned by :func:`extract`) or the adapter folder; the model is loaded
    once, so a query costs one forward and backward pass of the prompt (plus greedy generation when no
    completion is given) and one pass over the stored gradients per method.
    """

    def __init__(self, run: FileRun, cache: DiskCache | None = None, device=None, progress: Progress = None,
                 groups: Grouping | None = None):
        self.run = run
        s = run.settings
        store = cache or _scratch_cache()
        loaded = load_model(s, device, store, progress)
        if loaded.fine_tuned_here:
            info = prompt_lm.load_adapter(store, run.adapter_key, loaded.model)
            if info is None:  # no cache, or it was cleared: fine-tune again (as extract did)
                enc, _ = encode_data(loaded.lm.tokenizer, run.train, s, "training")
                runner = PromptLM(loaded.model, loaded.lm.tokenizer, enc, loaded.lm.device)
                info = prompt_lm.finetune(runner, np.arange(run.train.n), s.finetune, progress)
                prompt_lm.save_adapter(store, run.adapter_key, loaded.model, info)
        self.loaded = loaded
        self.tokenizer = loaded.lm.tokenizer
        probe = prompt_lm.encode(self.tokenizer, ["a", "b"], [" c", " d"], s.finetune.max_length,
                                 s.finetune.loss_on)
        self.runner = PromptLM(loaded.model, self.tokenizer, probe, loaded.lm.device)
        p, d = gradient_width(self.runner, s.layers, s.proj_dim)
        if d != run.grad_dim:
            raise OgdashError(f"the model gives {d} gradient coordinates but the stored gradients have "
                              f"{run.grad_dim}; extract again.")
        self.projector = SparseProjector(p, d, s.seed) if d < p else None
        self.one_line = not any("\n" in c for c in run.train.completions)
        # what every later query reads, made once here: the rows in memory when they fit, DataInf's per-example
        # norms, Outlier Gradient's forests
        run.G.keep_in_memory(MEMORY_BYTES)
        influence_rows(run, "datainf", np.zeros((1, run.grad_dim), dtype=np.float32))
        if groups is not None:
            og_forests(run, groups)

    def render(self, prompt: str) -> str:
        """A typed prompt as the model reads it (the chat template for chat data)."""
        return render_chat(self.tokenizer, chat_turns(prompt)) if self.run.train.kind == "chat" else prompt

    def gradient(self, prompt: str, completion: str) -> tuple[np.ndarray, float]:
        """The stored-width gradient (d,) of one prompt + completion, and its loss."""
        s = self.run.settings
        enc = prompt_lm.encode(self.tokenizer, [self.render(prompt)], [completion], s.finetune.max_length,
                               s.finetune.loss_on, truncate=True)
        self.runner.reencode(enc)
        g = lora_gradients(self.runner, [0], s.layers, 1, self.projector)
        return g.matrix[0], float(g.loss[0])

    def complete(self, prompt: str, max_new_tokens: int = 64) -> str:
        """The model's greedy completion of a typed prompt."""
        return prompt_lm.complete_many(self.loaded.model, self.tokenizer, [self.render(prompt)], max_new_tokens,
                                       stop_at_newline=self.one_line)[0]

    def query(self, prompt: str, completion: str | None = None, methods=DEFAULT_METHODS, k: int = 10,
              groups: Grouping | None = None) -> QueryResult:
        """The k most influential training examples for a typed prompt, by each method.

        Without ``completion`` the model's own greedy completion is scored (what it says now).
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise OgdashError("type a prompt first.")
        # one prompt's matrices are small: a second thread only spins (8x slower on this busy 2-core machine)
        with one_thread():
            return self._query(prompt, completion, methods, k, groups)

    def _query(self, prompt, completion, methods, k, groups) -> QueryResult:
        t0 = time.perf_counter()
        stages = {}
        generated = completion is None or not completion.strip()
        if generated:
            completion = self.complete(prompt)
            stages["generate"] = time.perf_counter() - t0
            if not completion.strip():
                raise OgdashError("the model's completion of this prompt is empty; type the completion you saw.")
        t = time.perf_counter()
        g, loss = self.gradient(prompt, completion)
        stages["gradient"] = time.perf_counter() - t
        tables = {}
        for m in methods:
            t = time.perf_counter()
            row = influence_rows(self.run, m, g[None], groups if m == "oga" else None)[0]
            tables[m] = top_table(self.run, m, row, k, groups)
            stages[m] = time.perf_counter() - t
        return QueryResult(prompt, completion, generated, loss, tables, time.perf_counter() - t0, stages)

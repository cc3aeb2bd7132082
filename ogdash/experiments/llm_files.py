"""Your own fine-tuning files on your own language model: gradients once, then influence, detrimental examples
and typed queries from them (issue #29).

:func:`extract` reads nothing but what it needs: the training (and optional test) examples
(``ogdash.data.prompt_files``), the model (``smollm2``, ``tiny`` or a local folder) with either an existing LoRA
adapter used as it is or a LoRA adapter fine-tuned here (cached), and every example's LoRA gradient, projected to
a fixed seeded width (8,192 by default) and stored in the disk cache as float16 unit rows plus norms
(``ogdash.influence.streaming.RowStore``), read memory-mapped. A second run on the same files, model and settings
loads the gradients and needs no model at all.

From the stored gradients:

- **detrimental scores** of every training example (:func:`detrimental`, higher = more detrimental): how far its
  gradient points away from the rest of its group (the default), the gradient's L2 norm or an IsolationForest
  (the paper's plain outlier gradients), or the LESS-style baseline (least similar to the test gradients);
- **influence** of every training example on every test prompt (:func:`influence`, higher = more influential):
  Outlier Gradient (one IsolationForest per group, the paper's Section 7), Gradient Tracing, DataInf, and the
  LESS-style cosine baseline;

Why the default score is the direction within a group, not the norm: on the five-task benchmark
(``benchmarks/llm_files.py``, SmolLM2, README) a wrong completion of a task the fine-tune has not mastered can
have a *lower* loss, and so a smaller gradient, than the right one (reversing a sentence is harder than adding
"ly" to each word), but its gradient points elsewhere than its task's. The Outlier Gradient forests, likewise,
read gradient directions reduced to ``OG_DIMS`` principal components: a forest's single-coordinate splits in
8,192 raw coordinates mostly see noise (the registry projects before its IsolationForest for the same reason).
- **groups** for the heatmap (:func:`grouping`): a column of the file, or k-means clusters of the gradients.

Typed prompts go through ``ogdash.experiments.llm_query.QueryEngine``, which keeps the model loaded.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, Timer
from ogdash.data.prompt_files import PromptData, load_prompt_file
from ogdash.detect.flags import flag
from ogdash.experiments.llm_gradients import LAYERS, store_lora_gradients
from ogdash.influence.streaming import RowStore, cosine_rows, datainf_rows, datainf_stats, tracin_rows
from ogdash.models import llm, prompt_lm
from ogdash.models.llm import FinetuneSettings, LoraSettings
from ogdash.models.prompt_lm import PromptLM

METHODS = {
    "oga": "Outlier Gradient",
    "tracin": "Gradient Tracing",
    "datainf": "DataInf",
    "less": "LESS-style cosine",
}
METHOD_HELP = {
    "oga": "one IsolationForest per group of training examples (on the gradients' directions); a test prompt's "
          "influence from a group is that forest's normality score of its gradient (within a group: the most "
          "typical examples first)",
    "tracin": "inner product of the test and training gradients (TracIn at the last checkpoint)",
    "datainf": "DataInf's closed-form inverse-curvature inner product",
    "less": "cosine of the projected test and training gradients, as LESS ranks data (without its Adam "
            "preconditioning or several checkpoints): the peer baseline",
}
DEFAULT_METHODS = ("oga", "tracin", "datainf")
DETECTORS = {
    "align": "misalignment with the mean gradient direction of the example's group (leave-one-out; a robust "
             "z-score within the group)",
    "l2": "L2 norm of the example's LoRA gradient (the paper's outlier gradient norm)",
    "iforest": "IsolationForest on the gradients (the paper's main detector)",
    "less": "LESS-style baseline: least similar (cosine) to any test prompt's gradient; needs a test file",
}
DETECTOR_NAMES = {"align": "misalignment within its group", "l2": "gradient L2 norm", "iforest": "IsolationForest",
                  "less": "LESS-style cosine"}  # short names, for a review's "flagged by ..."
DEFAULT_DETECTOR = "align"
OG_DIMS = 16  # principal components of the gradient directions the Outlier Gradient forests read
PROJ_DIM = 8192
FIT_ROWS = 2048  # rows an IsolationForest (which draws 256 per tree) is fitted on
CLUSTER_FIT_ROWS = 20_000


@dataclass(frozen=True)
class FileSettings:
    """How the model and the gradients are made.

    model: "smollm2", "tiny" or a model folder. adapter: a LoRA adapter folder used as it is (no fine-tuning);
    None fine-tunes a fresh LoRA adapter (``lora``, ``finetune``) on the training file. layers: the LoRA layers
    whose gradients are taken ("last" or "all"). proj_dim: the stored width (None: unprojected). The loss covers
    the completion only by default (what a fine-tune teaches).
    """

    model: str = llm.SMOLLM2
    adapter: str | None = None
    layers: str = "last"
    proj_dim: int | None = PROJ_DIM
    seed: int = 0
    lora: LoraSettings = LoraSettings()
    finetune: FinetuneSettings = FinetuneSettings(loss_on="completion")

    def __post_init__(self):
        if self.layers not in LAYERS:
            raise OgdashError(f"Unknown layer choice {self.layers!r}; choose one of {', '.join(LAYERS)}.")
        if self.proj_dim is not None and self.proj_dim < 1:
            raise OgdashError(f"proj_dim must be a positive width or None; got {self.proj_dim}.")


# --------------------------------------------------------------------------- the run


@dataclass(eq=False)
class FileRun:
    """Stored gradients of a training (and test) file, and what was learned making them.

    G / G_test: RowStores (memory-mapped from the cache). loss / loss_test: each example's loss under the
    fine-tuned model. notes: sentences for people (texts cut at the token cap, turns ignored). seconds /
    cpu_seconds per stage; cached: which stages came from the cache.
    """

    train: PromptData
    test: PromptData | None
    settings: FileSettings
    model_key: str
    adapter_key: str
    grads_key: str
    G: RowStore
    G_test: RowStore | None
    loss: np.ndarray
    loss_test: np.ndarray | None
    blocks: list
    grad_dim: int
    full_dim: int
    finetune_info: dict
    notes: list[str]
    seconds: dict[str, float]
    cpu_seconds: dict[str, float]
    cached: dict[str, bool]
    memo: dict = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        """JSON-ready sizes, settings, timings and notes."""
        s = self.settings
        return {"n_train": self.train.n, "n_test": self.test.n if self.test else 0, "model": s.model,
                "adapter": s.adapter, "format": self.train.format, "kind": self.train.kind, "layers": s.layers,
                "grad_dim": self.grad_dim, "lora_coordinates": self.full_dim,
                "projected": self.grad_dim < self.full_dim,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "cached": self.cached,
                "finetune_epoch_loss": self.finetune_info.get("epoch_loss"), "notes": self.notes,
                "lora": asdict(s.lora) if s.adapter is None else None, "finetune": asdict(s.finetune)}



_TEMP: list[Path] = []


def _scratch_cache() -> DiskCache:
    """Without a disk cache the gradients still go to disk (they are memory-mapped): a folder removed at exit."""
    if not _TEMP:
        _TEMP.append(Path(tempfile.mkdtemp(prefix="ogdash-llm-")))
        atexit.register(shutil.rmtree, str(_TEMP[0]), True)
    return DiskCache(_TEMP[0])


def _as_data(x) -> PromptData:
    return x if isinstance(x, PromptData) else load_prompt_file(x)


def adapter_key(settings: FileSettings, mkey: str, train: PromptData) -> str:
    """The adapter's cache key: an existing folder's content, or (model, training file, LoRA and fine-tuning)."""
    if settings.adapter is not None:
        return cache_key("llm-adapter-folder", mkey, llm.adapter_folder_key(settings.adapter))
    return prompt_lm.adapter_key(mkey, train.fingerprint(), settings.lora, settings.finetune)


@dataclass(eq=False)
class Loaded:
    """A model with its adapter in place, and the tokenizer (for fine-tuning, gradients and queries)."""

    lm: llm.LanguageModel
    model: object
    fine_tuned_here: bool


def load_model(settings: FileSettings, device=None, cache: DiskCache | None = None, progress: Progress = None
               ) -> Loaded:
    """The base model with the adapter: the given folder's, or a fresh seeded LoRA adapter (not yet trained)."""
    lm = llm.load_language_model(settings.model, device, cache.root if cache else None, progress)
    if settings.adapter is not None:
        return Loaded(lm, llm.load_adapter_folder(lm, settings.adapter), False)
    return Loaded(lm, llm.add_lora(lm, settings.lora, settings.seed), True)


def encode_data(tokenizer, data: PromptData, settings: FileSettings, what: str):
    """Token ids of a file's examples as the model reads them, and a note when some were cut at the token cap."""
    prompts, completions = data.render(tokenizer)
    enc = prompt_lm.encode(tokenizer, prompts, completions, settings.finetune.max_length, settings.finetune.loss_on,
                           truncate=True)
    note = ""
    if enc.n_truncated:
        first = data.sources[enc.truncated.index(True)]
        note = (f"{enc.n_truncated} {what} example(s) are longer than {settings.finetune.max_length} tokens and were "
                f"cut (first: {first}): the prompt from the left, then the completion from the right; raise the "
                "token cap (--max-length) to keep them whole.")
    return enc, note


def _concat(a, b):
    return prompt_lm.Encoded(a.ids + b.ids, a.n_prompt + b.n_prompt, a.loss_start + b.loss_start,
                             a.truncated + b.truncated)


def extract(train, test=None, settings: FileSettings = FileSettings(), cache: DiskCache | None = None, device=None,
            batch_size: int = 16, progress: Progress = None) -> FileRun:
    """Read the files, fine-tune (or load the adapter) and store every example's LoRA gradient (see the module).

    ``train`` / ``test``: paths or PromptData. Every stage is cached under a key of its inputs: the adapter under
    (model, training file, settings), the gradients under (adapter, both files, layers, width, seed, token cap).
    """
    clock, cached = Timer(), {}
    with clock("read"):
        train = _as_data(train)
        test = None if test is None else _as_data(test)
    if test is not None and test.kind != train.kind:
        raise OgdashError(f"the training file holds {train.kind} records but the test file {test.kind} records; "
                          "give both in one shape.")
    store = cache or _scratch_cache()
    mkey = llm.model_key(settings.model, device)
    akey = adapter_key(settings, mkey, train)
    gkey = cache_key("llm-file-grads-v1", akey, train.fingerprint(), test.fingerprint() if test else None,
                     settings.layers, settings.proj_dim, settings.seed, settings.finetune.max_length,
                     settings.finetune.loss_on)
    with clock("gradients"):
        hit = store.load("llm_file_grads", gkey)
    cached["gradients"] = hit is not None
    info: dict = {}
    if hit is None:
        with clock("load_model"):
            loaded = load_model(settings, device, store, progress)
            tok = loaded.lm.tokenizer
            enc, note = encode_data(tok, train, settings, "training")
            notes = [note] if note else []
            if test is not None:
                enc_test, note = encode_data(tok, test, settings, "test")
                notes += [note] if note else []
                enc = _concat(enc, enc_test)
            runner = PromptLM(loaded.model, tok, enc, loaded.lm.device, prompt_lm.opening_groups(enc))
        with clock("frozen_prefix"):
            runner.compute_prefix(progress=progress)
        if loaded.fine_tuned_here:
            info = prompt_lm.load_adapter(store, akey, loaded.model)
            cached["finetune"] = info is not None
            if info is None:
                with clock("finetune"):
                    info = prompt_lm.finetune(runner, np.arange(train.n), settings.finetune, progress)
                prompt_lm.save_adapter(store, akey, loaded.model, info)
        with clock("gradients"), store.writer("llm_file_grads", gkey) as w:
            loss, blocks = store_lora_gradients(runner, np.arange(train.n), w, "train", settings.layers,
                                                settings.proj_dim, settings.seed, batch_size, progress=progress)
            w.put("loss_train", loss.astype(np.float32))
            if test is not None:
                loss_t, _ = store_lora_gradients(runner, train.n + np.arange(test.n), w, "test", settings.layers,
                                                 settings.proj_dim, settings.seed, batch_size, progress=progress)
                w.put("loss_test", loss_t.astype(np.float32))
            full = sum(p.numel() for _, p in llm.in_layers(llm.lora_parameters(loaded.model), settings.layers))
            for k, v in (("blocks", blocks), ("notes", notes), ("full_dim", int(full)), ("finetune", info or {})):
                w.put(k, v)
        hit = store.load("llm_file_grads", gkey)
        if hit is None:
            raise OgdashError(f"the gradients written to {store.root} could not be read back; check the disk.")
    G = RowStore(hit["train_unit"], np.asarray(hit["train_norm"]))
    G_test = RowStore(hit["test_unit"], np.asarray(hit["test_norm"])) if test is not None else None
    return FileRun(train=train, test=test, settings=settings, model_key=mkey, adapter_key=akey, grads_key=gkey, G=G,
                   G_test=G_test, loss=np.asarray(hit["loss_train"]),
                   loss_test=np.asarray(hit["loss_test"]) if test is not None else None, blocks=hit["blocks"],
                   grad_dim=G.shape[1], full_dim=int(hit["full_dim"]), finetune_info=hit.get("finetune") or {},
                   notes=list(train.notes) + ([f"test file: {n}" for n in test.notes] if test else []) + hit["notes"],
                   seconds=clock.seconds, cpu_seconds=clock.cpu, cached=cached)


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True, eq=False)
class Grouping:
    """Training examples in groups: ``labels`` (n,) into ``names``; ``test_labels`` (m,) where the test file has
    the same column (or the test gradients' nearest cluster), else None. ``source`` says where they came from."""

    labels: np.ndarray
    names: tuple[str, ...]
    source: str
    test_labels: np.ndarray | None = None

    @property
    def n_groups(self) -> int:
        return len(self.names)


def default_clusters(n: int) -> int:
    """k for k-means when the file has no grouping column: about one group per 50 examples, 2 to 10."""
    return int(np.clip(n // 50, 2, 10))


def grouping(run: FileRun, column: str | None = None, k: int | None = None) -> Grouping:
    """Groups from a column of the training file (the test file's same column places test prompts), or, with
    ``column`` None, k-means clusters of the training gradients' directions (seeded)."""
    memo = ("grouping", column, k)
    if memo in run.memo:
        return run.memo[memo]
    if column is not None:
        values = run.train.column(column)
        names = tuple(sorted(set(values)))
        index = {v: i for i, v in enumerate(names)}
        test_labels = None
        if run.test is not None and column in run.test.columns.columns:
            tv = run.test.column(column)
            test_labels = np.array([index.get(v, -1) for v in tv], dtype=np.int64)
        out = Grouping(np.array([index[v] for v in values], dtype=np.int64), names, f"column {column!r}", test_labels)
    else:
        out = _clusters(run, k or default_clusters(run.train.n))
    run.memo[memo] = out
    return out


def _clusters(run: FileRun, k: int) -> Grouping:
    from sklearn.cluster import KMeans

    k = int(min(max(k, 2), run.train.n))
    rng = np.random.default_rng(run.settings.seed)
    n = run.train.n
    fit = np.sort(rng.choice(n, min(n, CLUSTER_FIT_ROWS), replace=False))
    km = KMeans(k, n_init=4, random_state=run.settings.seed).fit(run.G.take(fit, unit=True))
    labels = np.concatenate([km.predict(block) for _, block in run.G.chunks(unit=True)])
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")  # cluster 1 = the largest
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    test_labels = None
    if run.G_test is not None:
        test_labels = rank[km.predict(np.concatenate([b for _, b in run.G_test.chunks(unit=True)]))]
    return Grouping(rank[labels], tuple(f"cluster {i + 1}" for i in range(k)),
                    f"{k} k-means clusters of the gradients", test_labels)


# --------------------------------------------------------------------------- detrimental scores


def detrimental(run: FileRun, detector: str = DEFAULT_DETECTOR, groups: Grouping | None = None) -> np.ndarray:
    """Every training example's score (n,), higher = more detrimental (see ``DETECTORS``)."""
    if detector not in DETECTORS:
        raise OgdashError(f"Unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}.")
    memo = ("detrimental", detector, None if groups is None else groups.source)
    if memo in run.memo:
        return run.memo[memo]
    if detector == "l2":
        out = run.G.norm.astype(np.float64)
    elif detector == "align":
        out = _misalignment(run.G, groups or grouping(run))
    elif detector == "iforest":
        forest = _forest(run.G, np.arange(run.train.n), run.settings.seed)
        out = -np.concatenate([forest.score_samples(block) for _, block in run.G.chunks()])
    else:
        if run.G_test is None:
            raise OgdashError("the LESS-style baseline compares with test prompts; give a test file.")
        test = np.concatenate([b for _, b in run.G_test.chunks()])
        out = -cosine_rows(run.G, test).max(axis=0)
    run.memo[memo] = np.asarray(out, dtype=np.float64)
    return run.memo[memo]


def flag_top(scores, budget: float) -> np.ndarray:
    """Flags (n,) of the highest scores under ``budget`` (a count of examples, or a fraction below 1; ties keep
    the earlier example): the one budget rule of ``ogdash.detect.flags``, so pages and the CLI flag alike."""
    return flag(scores, budget)


def _misalignment(store: RowStore, groups: Grouping) -> np.ndarray:
    """Minus the cosine of each unit gradient with the sum of the other unit gradients of its group, as a robust
    z-score within the group (median and MAD), so that groups of different spread rank together."""
    S = np.zeros((groups.n_groups, store.shape[1]))
    for start, block in store.chunks(unit=True):
        lab = groups.labels[start:start + len(block)]
        for g in np.unique(lab):
            S[g] += block[lab == g].sum(axis=0)
    sq = (S ** 2).sum(axis=1)
    raw = np.empty(len(store))
    for start, block in store.chunks(unit=True):
        lab = groups.labels[start:start + len(block)]
        dots = np.einsum("ij,ij->i", block, S[lab])
        uu = np.einsum("ij,ij->i", block, block)
        rest = np.sqrt(np.maximum(sq[lab] - 2 * dots + uu, 1e-12))  # |sum of the others|
        raw[start:start + len(block)] = -(dots - uu) / rest
    out = np.empty_like(raw)
    for g in range(groups.n_groups):
        m = groups.labels == g
        if not m.any():
            continue
        med = np.median(raw[m])
        mad = 1.4826 * np.median(np.abs(raw[m] - med)) or raw[m].std() or 1.0
        out[m] = (raw[m] - med) / mad
    return out


def _forest(store: RowStore, members: np.ndarray, seed: int):
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(members, min(len(members), FIT_ROWS), replace=False))
    return IsolationForest(n_estimators=100, random_state=seed).fit(store.take(pick))


# --------------------------------------------------------------------------- influence


@dataclass(eq=False)
class OGForests:
    """The paper's prompt influence: one IsolationForest per group of training gradients, on the gradients'
    directions reduced to ``OG_DIMS`` principal components (fitted on the training gradients, seeded).

    ``by_group(B)`` (m, C): each forest's normality score of each test gradient (higher = more normal = more
    influential); groups of fewer than 2 examples get no forest and the lowest score. ``within`` (n,): each
    training example's normality in its own group's forest, which orders examples inside a group.
    """

    pca: object
    forests: list
    labels: np.ndarray
    within: np.ndarray

    @classmethod
    def fit(cls, store: RowStore, groups: Grouping, seed: int = 0) -> "OGForests":
        from sklearn.decomposition import PCA
        from sklearn.ensemble import IsolationForest

        rng = np.random.default_rng(seed)
        n, d = store.shape
        sample = np.sort(rng.choice(n, min(n, CLUSTER_FIT_ROWS), replace=False))
        pca = PCA(min(OG_DIMS, d, len(sample)), random_state=seed).fit(store.take(sample, unit=True))
        Z = np.concatenate([pca.transform(block) for _, block in store.chunks(unit=True)])
        forests, within = [], np.full(n, -np.inf)
        for g in range(groups.n_groups):
            members = np.flatnonzero(groups.labels == g)
            forest = IsolationForest(n_estimators=100, random_state=seed).fit(Z[members]) if len(members) >= 2 \
                else None
            forests.append(forest)
            if forest is not None:
                within[members] = forest.score_samples(Z[members])
        return cls(pca, forests, groups.labels, within)

    def by_group(self, B) -> np.ndarray:
        B = np.asarray(B, dtype=np.float64)
        Z = self.pca.transform(B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-30))
        out = np.full((len(B), len(self.forests)), -np.inf)
        for g, forest in enumerate(self.forests):
            if forest is not None:
                out[:, g] = forest.score_samples(Z)
        floor = out[np.isfinite(out)].min() - 1.0 if np.isfinite(out).any() else 0.0
        return np.where(np.isfinite(out), out, floor)

    def matrix(self, B) -> np.ndarray:
        return self.by_group(B)[:, self.labels]


def og_forests(run: FileRun, groups: Grouping) -> OGForests:
    memo = ("oga", groups.source)
    if memo not in run.memo:
        run.memo[memo] = OGForests.fit(run.G, groups, run.settings.seed)
    return run.memo[memo]


def influence_rows(run: FileRun, method: str, B, groups: Grouping | None = None) -> np.ndarray:
    """Influence (m, n) of every training example on the test gradients ``B`` (m, d), higher = more influential."""
    if method not in METHODS:
        raise OgdashError(f"Unknown influence method {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "oga":
        return og_forests(run, groups or grouping(run)).matrix(B)
    if method == "tracin":
        return tracin_rows(run.G, B)
    if method == "less":
        return cosine_rows(run.G, B)
    if "datainf" not in run.memo:
        blocks = None if run.grad_dim < run.full_dim else [tuple(b) for b in run.blocks]
        run.memo["datainf"] = datainf_stats(run.G, blocks)
    return datainf_rows(run.G, B, run.memo["datainf"])


def influence(run: FileRun, method: str, groups: Grouping | None = None) -> np.ndarray:
    """Influence (m, n) of every training example on every prompt of the test file."""
    if run.G_test is None:
        raise OgdashError("influence on a test file needs a test file; give one, or type a prompt.")
    memo = ("influence", method, groups.source if method == "oga" and groups else None)
    if memo not in run.memo:
        run.memo[memo] = influence_rows(run, method, np.concatenate([b for _, b in run.G_test.chunks()]), groups)
    return run.memo[memo]


def ranking(run: FileRun, method: str, row: np.ndarray, groups: Grouping | None = None) -> np.ndarray:
    """Training positions from most to least influential for one influence row; Outlier Gradient's ties (a
    group's examples share its score) are broken by how typical each example is of its group."""
    if method == "oga":
        within = og_forests(run, groups or grouping(run)).within
        return np.lexsort((-within, -row))
    return np.argsort(-row, kind="stable")


def group_view(matrix: np.ndarray, groups: Grouping) -> np.ndarray:
    """Mean influence of each group's training examples on each test prompt (m, C)."""
    M = np.asarray(matrix, dtype=np.float64)
    return np.stack([M[:, groups.labels == g].mean(axis=1) for g in range(groups.n_groups)], axis=1)


def own_group_share(run: FileRun, method: str, groups: Grouping, k: int = 10) -> np.ndarray:
    """For each test prompt with a known group: the share of its top-k training examples from that group."""
    if groups.test_labels is None:
        raise OgdashError(f"the test file has no {groups.source} to compare with.")
    M = influence(run, method, groups)
    out = np.full(len(M), np.nan)
    for t, g in enumerate(groups.test_labels):
        if g >= 0:
            out[t] = np.mean(groups.labels[ranking(run, method, M[t], groups)[:k]] == g)
    return out


def top_table(run: FileRun, method: str, row: np.ndarray, k: int = 10, groups: Grouping | None = None):
    """The k most influential training examples for one influence row: rank, id, source, score, group, texts."""
    import pandas as pd

    top = ranking(run, method, row, groups)[:k]
    d = run.train
    table = pd.DataFrame({"rank": np.arange(1, len(top) + 1), "id": [d.ids[j] for j in top],
                          "source": [d.sources[j] for j in top], "influence": row[top]})
    if groups is not None:
        table["group"] = [groups.names[groups.labels[j]] for j in top]
    table["prompt"] = [d.prompts[j] for j in top]
    table["completion"] = [d.completions[j] for j in top]
    return table


def influence_long(run: FileRun, methods, k: int = 10, groups: Grouping | None = None):
    """``test_id, train_id, method, score, rank`` (rank 1 = most influential), the top k per test prompt and
    method: the CLI's influence.csv."""
    import pandas as pd

    rows = []
    for method in methods:
        M = influence(run, method, groups)
        for t in range(len(M)):
            top = ranking(run, method, M[t], groups)[:k]
            rows += [(run.test.ids[t], run.train.ids[j], method, float(M[t, j]), r + 1) for r, j in enumerate(top)]
    return pd.DataFrame(rows, columns=["test_id", "train_id", "method", "score", "rank"])


def with_settings(settings: FileSettings, **changes) -> FileSettings:
    """A copy of ``settings`` with fine-tuning fields (epochs, lr, max_length, ...) or top fields changed."""
    ft = {k: v for k, v in changes.items() if k in FinetuneSettings.__dataclass_fields__}
    top = {k: v for k, v in changes.items() if k not in ft}
    if ft:
        top["finetune"] = replace(settings.finetune, **ft)
    return replace(settings, **top)

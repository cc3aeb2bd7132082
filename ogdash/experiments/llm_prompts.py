"""Prompt-level influence for fine-tuned language models (the paper's Section 7).

Which fine-tuning prompts most influence an unseen test prompt? Every method here
returns a **test x train matrix, higher = more influential** (row t, column j: how much
training prompt j supports the model's answer to test prompt t).

Gradients: ``ogdash.experiments.llm_gradients`` (per-prompt LoRA gradients, batched).
The methods are entries of the method registry (``ogdash.detect.registry``) that
compute a test x train matrix:

- ``oga``, Outlier Gradient (the paper): one IsolationForest per class, fitted on that
  class's training gradients; a test prompt's influence from every training prompt of
  class c is forest c's normality score of the test gradient (scikit-learn's
  ``score_samples``: higher = more normal = more influential). Constant within a class
  block, so ``by_class`` is the natural view.
- ``tracin``, Gradient Tracing (Pruthi et al.) at the last checkpoint: ``g_test . g_train``.
- ``datainf``, DataInf (Kwon et al.): ``g_test^T (H_l + lam_l I)^{-1} g_train`` summed over
  LoRA parameter blocks l, with DataInf's closed-form inverse (Sherman-Morrison, swapped
  average) and default damping. Sign: positive = training on the prompt lowers the test
  loss (the corrected upstream sign), so higher = more influential here too.

Metrics (Table 3)
-----------------
Per test prompt: the AUC of its influence row against "training prompt is of the test
prompt's class", and recall = the share of its top-k training prompts (k = the class
size, 90) that are of its class; mean and standard deviation over test prompts. (The
paper's text says it ranks by the *absolute* influence; we rank by the signed value,
which is what "higher = more influential" means.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, Timer
from ogdash.data.prompts import TASKS, PromptBenchmark, make_prompts
from ogdash.detect import registry
from ogdash.engine.projection import SparseProjector
from ogdash.experiments.llm_gradients import LAYERS, chosen_parameters, lora_gradients
from ogdash.models import llm, prompt_lm
from ogdash.models.llm import FinetuneSettings, LoraSettings
from ogdash.models.prompt_lm import PromptLM

# the paper's three methods, named as the registry names them
METHODS = {key: registry.method(key).name for key in ("oga", "tracin", "datainf")}

# Table 3 of the paper: (AUC mean, AUC std, recall mean, recall std), Llama-2-13B-chat.
PAPER_TABLE3 = {
    "sentence_transformations": {"tracin": (0.999, 0.001, 0.982, 0.032), "datainf": (1.000, 0.000, 0.996, 0.012),
                                 "oga": (1.000, 0.000, 1.000, 0.000)},
    "math_no_reason": {"tracin": (0.724, 0.192, 0.241, 0.385), "datainf": (0.999, 0.005, 0.993, 0.046),
                       "oga": (1.000, 0.000, 1.000, 0.000)},
    "math_reason": {"tracin": (0.722, 0.192, 0.226, 0.376), "datainf": (0.999, 0.004, 0.990, 0.049),
                    "oga": (1.000, 0.000, 1.000, 0.000)},
}


def class_view(matrix, y_train, n_classes: int | None = None) -> np.ndarray:
    """Mean influence of each class's training prompts on each test prompt, (m, C)."""
    M = np.asarray(matrix, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.int64)
    C = int(y.max()) + 1 if n_classes is None else int(n_classes)
    return np.stack([M[:, y == c].mean(axis=1) for c in range(C)], axis=1)


def class_detection(matrix, y_train, y_test, k: int | None = None) -> dict:
    """Table 3's metrics for one influence matrix (m, n), higher = more influential.

    Returns per-test arrays ``auc`` and ``recall`` and their ``*_mean`` / ``*_std``
    (population std over test prompts). ``k`` None = the size of the test prompt's class
    in the training set (90). Ties keep the earlier training prompt.
    """
    from sklearn.metrics import roc_auc_score

    M = np.asarray(matrix, dtype=np.float64)
    ytr, yte = np.asarray(y_train), np.asarray(y_test)
    if M.shape != (len(yte), len(ytr)):
        raise OgdashError(f"influence matrix must be (test, train) = ({len(yte)}, {len(ytr)}); got {M.shape}.")
    auc, rec = np.empty(len(yte)), np.empty(len(yte))
    for t in range(len(yte)):
        pos = ytr == yte[t]
        if pos.all() or not pos.any():
            raise OgdashError("every test prompt's class needs some, but not all, training prompts.")
        auc[t] = roc_auc_score(pos, M[t])
        kk = int(pos.sum()) if k is None else int(k)
        top = np.argsort(-M[t], kind="stable")[:kk]
        rec[t] = pos[top].mean()
    return {"auc": auc, "recall": rec, "auc_mean": float(auc.mean()), "auc_std": float(auc.std()),
            "recall_mean": float(rec.mean()), "recall_std": float(rec.std())}



def influence_matrix(method_key: str, G_train, G_test, y_train, n_classes: int, blocks=None, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One method's (matrix (m, n), by_class (m, C)), both higher = more influential.

    The matrix comes from the method's registry entry; ``by_class`` is the entry's own
    (the per-class forests' scores for ``oga``) or the mean over each class's columns.
    """
    if method_key not in METHODS:
        raise OgdashError(f"Unknown influence method {method_key!r}; choose from {', '.join(METHODS)}.")
    M, by_class = registry.method(method_key).matrix(G_train, G_test, y_train, n_classes, blocks, seed)
    return M, (class_view(M, y_train, n_classes) if by_class is None else by_class)


# --------------------------------------------------------------------------- the pipeline


@dataclass(eq=False)
class LLMInfluence:
    """Everything the page and the CLI show for one benchmark run.

    matrices / by_class: method -> (m, n) test x train / (m, C) test x class, higher = more
    influential. metrics: method -> ``class_detection`` output. seconds / cpu_seconds:
    wall-clock and process CPU time of each stage run (a cached stage reports the time to
    load it; CPU time shows the work itself when other jobs share the cores). cached:
    which stages came from the disk cache.
    """

    benchmark: PromptBenchmark
    model: str
    model_key: str
    adapter_key: str
    layers: str
    proj_dim: int | None
    grad_dim: int
    matrices: dict[str, np.ndarray]
    by_class: dict[str, np.ndarray]
    metrics: dict[str, dict]
    seconds: dict[str, float]
    cpu_seconds: dict[str, float]
    cached: dict[str, bool]
    finetune: dict
    lora: LoraSettings
    settings: FinetuneSettings
    loss_test: np.ndarray | None = None
    seed: int = 0

    def top_k(self, method: str, test_index: int, k: int = 10) -> np.ndarray:
        """Indices of the k most influential training prompts for one test prompt."""
        return np.argsort(-self.matrices[method][test_index], kind="stable")[:k]

    def summary(self) -> dict:
        """JSON-ready metrics, timings and settings (no matrices)."""
        return {
            "task": self.benchmark.task, "model": self.model, "layers": self.layers, "proj_dim": self.proj_dim,
            "grad_dim": self.grad_dim, "n_train": self.benchmark.train.n, "n_test": self.benchmark.test.n,
            "metrics": {m: {k: v for k, v in d.items() if k.endswith(("_mean", "_std"))} for m, d in self.metrics.items()},
            "paper_llama2_13b": {m: dict(zip(("auc_mean", "auc_std", "recall_mean", "recall_std"), v))
                                 for m, v in PAPER_TABLE3.get(self.benchmark.task, {}).items() if m in self.metrics},
            "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "cached": self.cached,
            "finetune_epoch_loss": self.finetune.get("epoch_loss"), "lora": asdict(self.lora),
            "finetune": asdict(self.settings), "seed": self.seed,
        }



class _Session:
    """Loads the model, the adapter and the frozen-layer cache only when a stage needs them."""

    def __init__(self, bench, spec, lora, settings, cache, device, progress, clock, cached, akey, seed):
        self.bench, self.spec, self.lora, self.settings = bench, spec, lora, settings
        self.cache, self.device, self.progress, self.clock, self.cached = cache, device, progress, clock, cached
        self.akey, self.seed = akey, seed
        self.runner: PromptLM | None = None
        self.info: dict | None = None

    def ready(self) -> PromptLM:
        """The runner over train + test prompts with the fine-tuned adapter in place."""
        if self.runner is not None:
            return self.runner
        b = self.bench
        with self.clock("load_model"):
            lm = llm.load_language_model(self.spec, self.device, self.cache.root if self.cache else None,
                                         self.progress)
            peft_model = llm.add_lora(lm, self.lora, self.seed)
            enc = prompt_lm.encode(lm.tokenizer, b.train.prompts + b.test.prompts, b.train.completions + b.test.completions,
                             self.settings.max_length, self.settings.loss_on)
            groups = np.concatenate([b.train.labels, b.test.labels])
            self.runner = PromptLM(peft_model, lm.tokenizer, enc, lm.device, groups)
            info = prompt_lm.load_adapter(self.cache, self.akey, peft_model) if self.cache else None
        self.cached["finetune"] = info is not None
        with self.clock("frozen_prefix"):
            self.runner.compute_prefix(progress=self.progress)
        if info is None:
            with self.clock("finetune"):
                info = prompt_lm.finetune(self.runner, np.arange(b.train.n), self.settings, self.progress)
            if self.cache:
                prompt_lm.save_adapter(self.cache, self.akey, peft_model, info)
        self.info = info
        return self.runner


def analyze(task: str, model: str = llm.SMOLLM2, methods: Sequence[str] = tuple(METHODS), layers: str = "last",
            proj_dim: int | None = None, per_class: int = 90, test_per_class: int = 10, seed: int = 0,
            lora: LoraSettings = LoraSettings(), settings: FinetuneSettings = FinetuneSettings(),
            cache: DiskCache | None = None, device=None, batch_size: int = 16, progress: Progress = None
            ) -> LLMInfluence:
    """Generate a benchmark, fine-tune LoRA, extract gradients, compute each method's matrix and metrics.

    Every stage is stored in ``cache`` (None = compute everything, store nothing) under a
    key of its inputs: the adapter under (model weights, training prompts, LoRA and
    fine-tuning settings), gradients under (adapter, all prompts, layers, projection,
    seed), each matrix under (gradients, method, seed). The model is loaded only when
    the adapter or the gradients are missing.
    """
    if task not in TASKS:
        raise OgdashError(f"Unknown prompt benchmark {task!r}; choose one of {', '.join(TASKS)}.")
    methods = list(dict.fromkeys(methods))
    if not methods or any(m not in METHODS for m in methods):
        raise OgdashError(f"methods must be a non-empty selection of {', '.join(METHODS)}; got {', '.join(methods)}.")
    if layers not in LAYERS:
        raise OgdashError(f"Unknown layer choice {layers!r}; choose one of {', '.join(LAYERS)}.")
    if proj_dim is not None and proj_dim < 1:
        raise OgdashError(f"proj_dim must be a positive number of dimensions or None; got {proj_dim}.")
    clock, cached = Timer(), {}
    bench = make_prompts(task, per_class, test_per_class, seed)
    mkey = llm.model_key(model, device)
    akey = prompt_lm.adapter_key(mkey, bench.train.fingerprint(), lora, settings)
    gkey = cache_key("llm-grads-v1", akey, bench.fingerprint(), layers, proj_dim, seed)
    session = _Session(bench, model, lora, settings, cache, device, progress, clock, cached, akey, seed)
    y_train, y_test, C = bench.train.labels, bench.test.labels, bench.n_classes
    grads: dict | None = None

    def need_grads() -> dict:
        nonlocal grads
        if grads is not None:
            return grads
        with clock("gradients"):
            grads = cache.load("llm_grads", gkey) if cache else None
        cached["gradients"] = grads is not None
        if grads is None:
            runner = session.ready()
            with clock("gradients"):
                everything = np.arange(bench.train.n + bench.test.n)
                p = sum(q.numel() for _, q in chosen_parameters(runner.model, layers))
                projector = SparseProjector(p, proj_dim, seed) if proj_dim is not None and proj_dim < p else None
                g = lora_gradients(runner, everything, layers, batch_size, projector, progress)
                n = bench.train.n
                grads = {"train": g.matrix[:n], "test": g.matrix[n:], "loss_train": g.loss[:n],
                         "loss_test": g.loss[n:], "blocks": [list(b) for b in g.blocks]}
                if cache:
                    cache.save("llm_grads", gkey, grads)
        return grads

    matrices, by_class, metrics, grad_dim = {}, {}, {}, 0
    for method in methods:
        ikey = cache_key("llm-influence-v1", gkey, method, seed)
        with clock(method):
            hit = cache.load("llm_influence", ikey, mmap=False) if cache else None
        cached[method] = hit is not None
        if hit is None:
            g = need_grads()
            if progress:
                progress(0.0, f"{METHODS[method]}: computing the test x train matrix")
            with clock(method):
                M, V = influence_matrix(method, g["train"], g["test"], y_train, C,
                                        [tuple(b) for b in g["blocks"]], seed)
                hit = {"matrix": M, "by_class": V, "grad_dim": int(np.asarray(g["train"]).shape[1])}
                if cache:
                    cache.save("llm_influence", ikey, hit)
        matrices[method], by_class[method] = np.asarray(hit["matrix"]), np.asarray(hit["by_class"])
        grad_dim = int(hit["grad_dim"])
        metrics[method] = class_detection(matrices[method], y_train, y_test)

    if session.info is None and cache is not None:
        stored = cache.load("llm_adapter", akey)
        session.info = (stored or {}).get("info", {})
        cached.setdefault("finetune", stored is not None)
    loss_test = np.asarray(grads["loss_test"]) if grads is not None else None
    return LLMInfluence(benchmark=bench, model=model, model_key=mkey, adapter_key=akey, layers=layers,
                        proj_dim=proj_dim, grad_dim=grad_dim, matrices=matrices, by_class=by_class, metrics=metrics,
                        seconds=clock.seconds, cpu_seconds=clock.cpu, cached=cached, finetune=session.info or {},
                        lora=lora, settings=settings, loss_test=loss_test, seed=seed)


def finetuned_model(result: LLMInfluence, cache: DiskCache | None = None, device=None):
    """The fine-tuned (base model + LoRA) model of a result and its tokenizer, for generation.

    Reads the adapter from ``cache``; fine-tunes again only when it is missing there.
    """
    lm = llm.load_language_model(result.model, device, cache.root if cache else None)
    peft_model = llm.add_lora(lm, result.lora, result.seed)
    info = prompt_lm.load_adapter(cache, result.adapter_key, peft_model) if cache else None
    if info is None:
        b = result.benchmark
        enc = prompt_lm.encode(lm.tokenizer, b.train.prompts, b.train.completions, result.settings.max_length,
                         result.settings.loss_on)
        runner = PromptLM(peft_model, lm.tokenizer, enc, lm.device, b.train.labels)
        info = prompt_lm.finetune(runner, np.arange(b.train.n), result.settings)
        if cache:
            prompt_lm.save_adapter(cache, result.adapter_key, peft_model, info)
    return peft_model, lm.tokenizer

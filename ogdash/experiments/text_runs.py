"""Training runs of the text-selection experiment, with a test-accuracy curve per epoch.

:class:`HeadRuns` trains a head on frozen sentence embeddings; :class:`LoraRuns` LoRA
fine-tunes the encoder with the head (``ogdash.experiments.text_lora``). Both give the
per-sample gradients the methods score and the curvature LiSSA reads.
"""
from __future__ import annotations

import numpy as np
import torch

from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.data.dataset import Dataset
from ogdash.engine.gradients import GradientSet, extract_gradients
from ogdash.experiments.text_lora import TextLoraSettings, TextLoraTuner
from ogdash.influence.hessian import exact_hessian
from ogdash.models.losses import per_sample_loss
from ogdash.models.zoo import ModelSpec, build_model

HEAD_LR = {"logreg": 1e-2, "mlp": 1e-3}
BATCH_SIZE = 32  # the paper's fine-tuning batch size
WEIGHT_DECAY = 1e-4


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
        """(the head's closed-form last-layer gradients of the training split, no layer blocks)."""
        return extract_gradients(model, self.train, layer="last", device="cpu"), None

    def curvature(self, model, G: np.ndarray) -> dict:
        """LiSSA's curvature: the head's exact Hessian of the training objective."""
        head = [n for n, _ in model.named_parameters() if n.startswith("head.")]
        # training minimises mean loss + wd/2 |θ|²; exact_hessian's summed objective is n times that
        return {"hessian": exact_hessian(model, self.train.X, self.train.y, weight_decay=self.train.n * WEIGHT_DECAY,
                                            param_names=head)}


class LoraRuns:
    """Runs that LoRA fine-tune the encoder together with the head (``ogdash.experiments.text_lora``).

    The texts of the training then the test split are tokenised once; every run starts from
    the pretrained encoder. Gradients cover the head's last layer and the last encoder
    layer's LoRA matrices. LiSSA uses the Gauss-Newton curvature of those gradients (the
    sum of g gᵀ, damped as DataInf does), as LoRA influence code does: an exact Hessian of
    thousands of LoRA weights is out of reach. Self-LiSSA then has a closed form
    (``ogdash.influence.lissa.self_lissa_gauss_newton``), equal to the recursion it replaces.
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
        """(model, test accuracy per epoch) fine-tuned from the pretrained encoder on ``rows`` (a mask; None = all)."""
        pos = np.arange(self.train.n) if rows is None else np.flatnonzero(rows)
        y = (self.train.y if labels is None else np.asarray(labels, np.int64))[pos]
        model = self.tuner.build(self.spec, self.train.n_classes, seed)
        curve = self.tuner.train_curve(model, pos, y, self.test_pos, self.test.y, epochs, seed,
                                       self.lr or HEAD_LR[self.spec.kind], WEIGHT_DECAY, progress)
        return model, curve

    def gradients(self, model) -> tuple[GradientSet, list | None]:
        """(gradients of the head's last layer and the last encoder layer's LoRA, their (start, stop) blocks)."""
        gs, blocks = self.tuner.gradients(model, np.arange(self.train.n), self.train.y, ids=self.train.ids)
        return gs, [(start, stop) for _, start, stop in blocks]

    def curvature(self, model, G: np.ndarray) -> dict:
        """LiSSA's curvature: Gauss-Newton ``GᵀG`` plus a ridge (DataInf's damping and the weight decay, summed)."""
        n, p = G.shape
        lam = 0.1 * float((G * G).sum(1).mean()) / p  # DataInf's damping, per sample
        return {"gauss_newton": n * (lam + WEIGHT_DECAY)}


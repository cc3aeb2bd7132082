"""Your own network, as ogdash takes it: a module with factories that take no arguments.

``ogdash.examples.own_network:backbone`` is a small convolutional feature extractor for 28x28 grey
digits (128 features, no linear layer): with ``--new-head`` ogdash puts a linear head on it for
your classes, trains that head on the frozen backbone's features and scans it.
``ogdash.examples.own_network:classifier`` is the same backbone with a 10-class head: a whole network
ogdash analyses as it is and fine-tunes when you retrain. Any ``nn.Module`` works; ogdash reads
the gradients of its last ``nn.Linear``.
"""
from torch import nn


def backbone() -> nn.Module:
    """28x28 grey images → 128 features."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
    )


def classifier() -> nn.Module:
    """The backbone with a 10-class linear head."""
    return nn.Sequential(backbone(), nn.Linear(128, 10))

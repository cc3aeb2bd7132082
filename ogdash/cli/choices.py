"""The data and the model a command line names, as ``scan`` and ``extract`` both read them."""
from __future__ import annotations

import argparse
import os
import sys

from ogdash.cli.args import fraction, hidden_widths, positive_int
from ogdash.core.errors import OgdashError
from ogdash.data.spec import NOISE_KEYS, DataSpec
from ogdash.models.user import is_factory
from ogdash.models.zoo import MODEL_KINDS, USER_KINDS, ModelSpec


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``--train``, ``--test``, ``--test-share``, ``--size`` and the CIFAR-N options."""
    p.add_argument("--train", required=True,
                   help="training data: a .npz (X, y [, y_true]), .csv (a label column) or .parquet file, a saved "
                        "Hugging Face dataset folder, an image folder (ROOT/<class>/<image>) or a CIFAR-10/100 folder; "
                        "a .csv/.tsv/.parquet/dataset folder with a text column is a table of texts")
    p.add_argument("--test", help="untouched test set of the same kind; without it, --test-share of --train is held "
                                  "out (and not scored)")
    p.add_argument("--test-share", type=fraction, default=0.2, help="share held out as the test set when there is no "
                                                                    "--test (default 0.2)")
    p.add_argument("--size", type=positive_int, default=32, help="an image folder's images are resized to SIZE x SIZE "
                                                                 "(default 32)")
    p.add_argument("--text-column", help="a table of texts: the column holding them (default: text)")
    p.add_argument("--encoder", help="a table of texts: minilm (default, the shipped MiniLM sentence encoder), tfidf "
                                     "(TF-IDF fitted on the training texts; fast), or the path of a local "
                                     "sentence-transformers / Hugging Face model folder (safetensors weights)")
    p.add_argument("--noisy-labels", help="a CIFAR folder: a CIFAR-N label file (.pt or .npz) whose --noise-key labels "
                                          "are the given ones")
    p.add_argument("--noise-key", choices=NOISE_KEYS, help="which CIFAR-N labels (default worse_label)")


def add_model_arguments(p: argparse.ArgumentParser, weights_help: str) -> None:
    """``--model`` and what it takes: ``--hidden``, ``--epochs``, ``--arch``, ``--weights``, ``--new-head``."""
    p.add_argument("--model", required=True, choices=MODEL_KINDS + USER_KINDS,
                   help="a model trained here, or your network (torchvision or custom) with --arch and --weights")
    p.add_argument("--hidden", type=hidden_widths, default=(16, 16), help="MLP widths, e.g. 16,16")
    p.add_argument("--no-scale", dest="scale", action="store_false",
                   help="feed feature columns to a logreg or MLP as they are (default: standardised with the "
                        "training set's mean and standard deviation, stored with the model)")
    p.add_argument("--epochs", type=int, help="training epochs (default: a budget that depends on the model and the "
                                              "data's size)")
    p.add_argument("--arch", help="your network: a torchvision architecture (resnet18) or package.module:factory, "
                                  "where factory() returns your nn.Module; the current folder is importable "
                                  "(put on sys.path for your own code, as uvicorn does)")
    p.add_argument("--weights", help=weights_help)
    p.add_argument("--new-head", action="store_true",
                   help="your network is a frozen backbone: train a new last layer for these classes on its "
                        "features (computed once and cached), then scan that")


def data_spec(args, val=None) -> DataSpec:
    """The DataSpec of the data arguments (``val``: a validation set, where the command takes one)."""
    if not 0 < args.test_share < 1:
        raise OgdashError(f"--test-share must be between 0 and 1; got {args.test_share}.")
    return DataSpec.from_paths(args.train, args.test, val, args.test_share, args.seed, args.size, args.noisy_labels,
                               args.noise_key, args.text_column, args.encoder)


def model_choice(args, tune: str = "last", zoo_weights: bool = False) -> ModelSpec:
    """The model to train, or your network (analysed as it is, or a frozen backbone with a new head).

    zoo_weights: whether ``--weights`` may name a zoo model's checkpoint (``extract``: loaded instead of training).
    """
    if args.epochs is not None and args.epochs < 1:
        raise OgdashError(f"--epochs must be at least 1; got {args.epochs}.")
    if args.model not in USER_KINDS:
        if args.arch or args.new_head or (args.weights and not zoo_weights):
            raise OgdashError(f"--arch, {'' if zoo_weights else '--weights, '}--new-head are for your own network "
                              "(--model torchvision or custom).")
        return ModelSpec(args.model, args.hidden, args.epochs, scale=args.scale)
    if not args.arch or not args.weights:
        raise OgdashError(f"--model {args.model} needs --arch and --weights.")
    if (args.model == "custom") != is_factory(args.arch):
        raise OgdashError("--model custom takes --arch package.module:factory; --model torchvision takes an "
                          "architecture name like resnet18.")
    if args.model == "custom" and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # your own code, from the folder you run in (the dashboard never does this)
    return ModelSpec(args.model, epochs=args.epochs, arch=args.arch, weights=args.weights, tune=tune,
                     new_head=args.new_head)

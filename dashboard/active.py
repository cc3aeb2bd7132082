"""The active data, model, gradients and scores: computed once per process behind the memo, read by every page.

Each is derived from the view (the URL's data, model, layer and detector), so no page
depends on another having been visited; the ogdash disk cache below the memo makes a
restart load rather than recompute.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dashboard.memo import file_keyed
from dashboard.state import VAL_FRACTION, data_config, data_root, disk_cache, memo, model_config, view
from ogdash.core.cache import cache_key
from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Splits

# ---------------------------------------------------------------- data

def _load_splits(cfg: dict) -> Splits:
    """The splits a data choice names. Built-in sets keep the paper's fixed splits (with a clean validation set);
    a user's own files and folders are scored whole: the test set is theirs, or a share they set is held out."""
    from ogdash import data

    src = cfg["source"]
    if src == "builtin":
        name = cfg["name"]
        if name in ("blobs", "moons"):
            return data.BUILTIN[name](seed=cfg.get("seed", 0), flip_mode=cfg.get("flip_mode", "far"))
        return data.BUILTIN[name](seed=cfg.get("seed", 0), noise_rate=cfg.get("noise_rate", 0.0),
                                  noise_kind=cfg.get("noise_kind", "uniform"), val_fraction=VAL_FRACTION)
    if src == "files":
        return data.load_splits(cfg["train"], cfg.get("test"), cfg.get("val"), float(cfg.get("test_share", 0.2)),
                                int(cfg.get("seed", 0)))
    if src == "imagefolder":
        from ogdash.data.folders import load_folder_splits

        return load_folder_splits(cfg["path"], int(cfg.get("size", 32)), cfg.get("test"),
                                  float(cfg.get("test_share", 0.2)), cfg.get("noise_rate", 0.0),
                                  cfg.get("noise_kind", "uniform"), int(cfg.get("seed", 0)), within=data_root())
    if src == "text":  # texts embedded by a sentence encoder (the Text data selection page)
        from ogdash.experiments.textselect import load_text_splits
        from ogdash.pipeline import holdout_validation

        # only "path" may name a file (the URL reader keeps it under the data root); else the built-in data
        splits = load_text_splits(cfg.get("path") or "rotten_tomatoes", cfg.get("noise", 0.2),
                                  cfg.get("seed", 0), cfg.get("n_train"), cfg.get("n_test"),
                                  cfg.get("encoder", "minilm"), disk_cache())[0]
        return holdout_validation(splits, VAL_FRACTION, cfg.get("seed", 0)) if splits.val is None else splits
    if src == "cifar":
        from ogdash.data.folders import load_cifar

        return load_cifar(cfg["path"], cfg.get("noisy_labels"), cfg.get("noise_key"), within=data_root())
    raise OgdashError(f"unknown data source {src!r}.")


def splits_for(cfg: dict) -> Splits:
    return memo(cache_key("splits", file_keyed(cfg)), lambda: _load_splits(cfg))


def active_splits() -> Splits | None:
    """The active data, or None with the reason shown as an error."""
    try:
        return splits_for(data_config())
    except OgdashError as e:
        from dashboard.escape import error

        error(e)
        return None


def describe_data(cfg: dict) -> str:
    if cfg["source"] == "builtin":
        if cfg["name"] in ("blobs", "moons"):
            return f"{cfg['name']} (seed {cfg.get('seed', 0)}, {cfg.get('flip_mode', 'far')} flips)"
        return f"{cfg['name']} (seed {cfg.get('seed', 0)}, {cfg.get('noise_rate', 0):.0%} {cfg.get('noise_kind')} noise)"
    if cfg["source"] == "text":
        name = Path(cfg["path"]).name if cfg.get("path") else "Rotten Tomatoes"
        return f"text: {name} ({cfg.get('noise', 0):.0%} noise, {cfg.get('encoder', 'minilm')} embeddings)"
    return f"{cfg['source']}: {Path(cfg.get('train') or cfg.get('path')).name}"


# ---------------------------------------------------------------- model

def model_kinds(train) -> list[str]:
    """The architectures that can take this data: images → CNN or torchvision, feature rows → logistic
    regression or MLP (and the paper's 2-2-2-1 MLP for binary problems)."""
    if train.kind == "image":
        return ["cnn", "torchvision", "custom"]
    return ["logreg", "mlp"] + (["paper_mlp"] if train.n_classes == 2 else []) + ["custom"]


def default_model(train) -> dict:
    return {"kind": "cnn" if train.kind == "image" else "mlp", "seed": 0}


def model_fits(mcfg: dict, train) -> bool:
    return mcfg.get("kind") in model_kinds(train)


def model_spec(mcfg: dict, tune: str | None = None):
    """The ModelSpec of a model choice; ``tune``: what a retrain of your network trains ('last' or 'all')."""
    from ogdash.models.zoo import USER_KINDS, ModelSpec

    if mcfg["kind"] in USER_KINDS:  # your network, from your weights (a frozen backbone with a new head: new_head)
        return ModelSpec(mcfg["kind"], epochs=mcfg.get("epochs"), arch=mcfg["arch"], weights=mcfg["weights"],
                         tune=tune or "last", new_head=bool(mcfg.get("new_head")))
    return ModelSpec(mcfg["kind"], tuple(mcfg.get("hidden", (16, 16))), mcfg.get("epochs"),
                     scale=bool(mcfg.get("scale", True)))


def active_model_key() -> str:
    """The memo key of the view's model: its data and model settings, with the files' stamps."""
    return cache_key("model", file_keyed(data_config()), file_keyed(model_config()))


def active_model(train_if_missing: bool = False, progress=None):
    """The active model: memoised, else from the disk cache, else trained (only if asked)."""
    from ogdash.pipeline import cached_model, train_model

    key = active_model_key()
    hit = memo(key)
    if hit is not None:
        return hit
    splits, mcfg = splits_for(data_config()), model_config()
    if mcfg["kind"] in ("torchvision", "custom") and not mcfg.get("new_head"):  # your trained network, as it is
        from ogdash.models.train import check_fits, load_torchvision
        from ogdash.models.zoo import build_model

        name = f"{mcfg['arch']} with {Path(mcfg['weights']).name}"
        if mcfg["kind"] == "torchvision":  # the file is checked before the model is built (it can weigh gigabytes)
            model = load_torchvision(mcfg["arch"], splits.train.n_classes, mcfg["weights"])
        else:
            model = build_model(model_spec(mcfg), splits.train.X.shape[1:], splits.train.n_classes)
        check_fits(model, splits.train.X, splits.train.n_classes, name)  # say so here, not pages later
    else:
        spec, seed = model_spec(mcfg), int(mcfg.get("seed", 0))
        model = cached_model(spec, splits.train, seed, disk_cache())
        if model is None:
            if not train_if_missing:
                return None
            t0 = time.perf_counter()
            model = train_model(spec, splits.train, seed, disk_cache(), progress, val=splits.val)
            memo(cache_key("train_seconds", key), lambda: time.perf_counter() - t0)
    return memo(key, lambda: model)


def describe_model(mcfg: dict) -> str:
    if mcfg["kind"] in ("torchvision", "custom"):
        head = ", new head trained here" if mcfg.get("new_head") else ""
        return f"{mcfg['arch']} ({Path(mcfg['weights']).name}{head})"
    hidden = f" {'-'.join(map(str, mcfg.get('hidden', (16, 16))))}" if mcfg["kind"] == "mlp" else ""
    return f"{mcfg['kind']}{hidden} (seed {mcfg.get('seed', 0)})"


def model_summary(model, splits: Splits) -> dict:
    """Train/test accuracy and the test confusion matrix (memoised)."""
    from ogdash.models.train import accuracy, confusion

    def compute():
        return {"train": accuracy(model, splits.train.X, splits.train.y),
                "test": accuracy(model, splits.test.X, splits.test.y),
                "confusion": confusion(model, splits.test.X, splits.test.y, splits.train.n_classes)}
    return memo(cache_key("summary", active_model_key()), compute)


# ---------------------------------------------------------------- gradients and scores

def layer_choice() -> str:
    """The layer the view extracts gradients of."""
    return view()["layer"]


def active_gradients(extract: bool = False, progress=None):
    """(train, validation) GradientSets of the active model and layer, or None if not extracted yet."""
    from ogdash.engine.settings import GradientSettings
    from ogdash.pipeline import cached_gradients, gradients

    key = cache_key("grads", active_model_key(), layer_choice())
    hit = memo(key)
    if hit is not None:
        return hit
    model = active_model()
    if model is None:
        return None
    splits, cache, layer = splits_for(data_config()), disk_cache(), layer_choice()
    train = cached_gradients(model, splits.train, GradientSettings(layer), cache)
    val = cached_gradients(model, splits.val, GradientSettings(layer), cache) if splits.val is not None else None
    if train is None or (splits.val is not None and val is None):
        if not extract:
            return None
        train = gradients(model, splits.train, GradientSettings(layer), cache, progress)
        val = gradients(model, splits.val, GradientSettings(layer), cache) if splits.val is not None else None
    return memo(key, lambda: (train, val))


def active_scores(detector: str | None = None) -> np.ndarray | None:
    """Detector scores of the active gradients (memoised; a budget change never recomputes them).

    OneClassSVM fits on validation gradients as inliers; data without a validation set
    (your own files and folders) has it fit on the training gradients themselves.
    """
    from ogdash.detect import registry
    from ogdash.detect.scoring import score

    detector = detector or view()["detector"]
    pair = active_gradients()
    if pair is None:
        return None
    train, val = pair
    labels = splits_for(data_config()).train.y
    if detector == "heldout_margin" and train.acts is not None:
        from ogdash.detect.heldout import heldout_margin

        # the default detector reads the held-out probabilities the suggested labels come from: one refit, not two
        return memo(cache_key("scores", active_model_key(), layer_choice(), detector),
                    lambda: heldout_margin(active_suggestions(), labels))
    needs_inliers = registry.method(detector).needs_validation  # OneClassSVM: fitted on inliers
    inliers = val if val is not None else (train if needs_inliers else None)
    return memo(cache_key("scores", active_model_key(), layer_choice(), detector),
                lambda: score(train, detector, inliers, seed=0, labels=labels))


def active_suggestions() -> np.ndarray | None:
    """(n, C) probabilities of each training sample's suggested label (``ogdash.detect.heldout.suggestions``), memoised."""
    from ogdash.detect.heldout import suggestions

    pair = active_gradients()
    if pair is None:
        return None
    return memo(cache_key("suggestions", active_model_key(), layer_choice()),
                lambda: suggestions(pair[0], splits_for(data_config()).train.y))


def active_flags():
    """(scores, flags) of the view's detector and budget on the active gradients, or None before extraction.

    Derived wherever they are needed, so no page depends on another having been visited.
    """
    from ogdash.detect.flags import flag

    scores = active_scores()
    return None if scores is None else (scores, flag(scores, view()["budget"]))

"""The active scan: the view's data, model, layer, detector and budget as one ``ogdash.pipeline.Scan``.

Its stages are kept in the process-wide memo (dashboard/state.py), keyed by what each depends
on, so every page and browser tab shares them and no page depends on another having been
visited; the ogdash disk cache below makes a restart load rather than recompute. Pages call the
scan's stages (``splits``, ``model``, ``gradients``, ``scores``, ``flags``, ``probabilities``,
``suggested_budget``, ``layout``) and never the library's stages directly: the CLI and the pages
give the same answer on the same data.
"""
from __future__ import annotations

from pathlib import Path

from dashboard.memo import file_keyed
from dashboard.state import data_spec, disk_cache, model_config, stages, view
from ogdash.core.cache import cache_key
from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Splits
from ogdash.data.spec import DataSpec
from ogdash.models.zoo import USER_KINDS, ModelSpec
from ogdash.pipeline import GradientSettings, Scan, ScanSettings


def data_key(spec: DataSpec) -> str:
    """The data's memo key: its settings and the stamps of the files it reads (a rewritten file is read again)."""
    return cache_key("data", file_keyed(spec.to_dict()))


def model_key(mcfg: dict) -> str:
    """The model's memo key: its settings, with the stamp of your weights file."""
    return cache_key("model", file_keyed(mcfg))


def model_spec(mcfg: dict, tune: str | None = None) -> ModelSpec:
    """The ModelSpec of a model choice; ``tune``: what a retrain of your network trains ('last' or 'all')."""
    if mcfg["kind"] in USER_KINDS:  # your network, from your weights (a frozen backbone with a new head: new_head)
        return ModelSpec(mcfg["kind"], epochs=mcfg.get("epochs"), arch=mcfg["arch"], weights=mcfg["weights"],
                         tune=tune or "last", new_head=bool(mcfg.get("new_head")))
    return ModelSpec(mcfg["kind"], tuple(mcfg.get("hidden", (16, 16))), mcfg.get("epochs"), scale=mcfg.get("scale", True))


def scan_of(spec: DataSpec, mcfg: dict | None = None) -> Scan:
    """The scan of ``spec`` with the model choice ``mcfg`` (default the active one) and the view's settings."""
    mcfg, v = model_config() if mcfg is None else mcfg, view()
    settings = ScanSettings(v["detector"], v["budget"], int(mcfg.get("seed", 0)), GradientSettings(v["layer"]))
    return Scan(spec, model_spec(mcfg), settings, disk_cache(), stages=stages(), data_key=data_key(spec),
                model_key=model_key(mcfg))


def active_scan() -> Scan:
    """The scan of the active data and model, with the view's layer, detector and budget."""
    return scan_of(data_spec())


def loaded(scan: Scan, progress=None) -> Splits | None:
    """The scan's data, or None with the reason shown as an error."""
    try:
        return scan.splits(progress)
    except OgdashError as e:
        from dashboard.escape import error

        error(e)
        return None


# ---------------------------------------------------------------- the model choice

def model_kinds(train) -> list[str]:
    """The architectures that can take this data: images → CNN or torchvision, texts → a logistic regression or
    MLP head on their embeddings, feature rows → logistic regression or MLP (and the paper's 2-2-2-1 MLP for
    binary problems)."""
    if train.kind == "image":
        return ["cnn", "torchvision", "custom"]
    if train.kind == "text":
        return ["logreg", "mlp"]
    return ["logreg", "mlp"] + (["paper_mlp"] if train.n_classes == 2 else []) + ["custom"]


def default_model(train) -> dict:
    # texts: a linear head on the embeddings, whose inputs the refitted last layer sees whole (README, text benchmark)
    return {"kind": {"image": "cnn", "text": "logreg"}.get(train.kind, "mlp"), "seed": 0}


def model_fits(mcfg: dict, train) -> bool:
    return mcfg.get("kind") in model_kinds(train)


def describe_model(mcfg: dict) -> str:
    if mcfg["kind"] in USER_KINDS:
        head = ", new head trained here" if mcfg.get("new_head") else ""
        return f"{mcfg['arch']} ({Path(mcfg['weights']).name}{head})"
    hidden = f" {'-'.join(map(str, mcfg.get('hidden', (16, 16))))}" if mcfg["kind"] == "mlp" else ""
    return f"{mcfg['kind']}{hidden} (seed {mcfg.get('seed', 0)})"

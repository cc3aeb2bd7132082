"""What a link may say: the data and model choices read back from a page's URL, checked whole.

A shared link is input from anyone. Its ``data`` and ``model`` parameters are checked
against the schema below before anything is loaded or built: known sources, datasets,
architectures and encoders only; numbers inside the ranges the pages' own widgets allow
(an image size of 2000 would hold gigabytes); every required key present; every path
under the data root and existing as the file or folder it must be (a weights file is
checked before a model is built). A link that fails gets one line saying why, and the
default is used instead; nothing in it is partly applied.
"""
from __future__ import annotations

import math
from pathlib import Path

from ogdash.core.errors import OgdashError

SEED = (0, 100_000)
SHARE = (0.05, 0.5)
NOISE = (0.0, 0.5)
IMAGE_SIZE = (8, 128)  # the Data page's "Resize to"
HIDDEN = (1, 4096)  # one hidden layer's width
MAX_LAYERS = 8
EPOCHS = (1, 10_000)
TEXT_TRAIN, TEXT_TEST, TEXT_NOISE = (100, 10_000), (50, 2_600), (0.0, 0.45)  # the Text page's inputs
NOISE_KEYS = ("worse_label", "aggre_label", "random_label1", "noisy_label")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(lo: int, hi: int):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{_short(v)} is not a whole number from {lo:,} to {hi:,}")
        return v
    return check


def _float(lo: float, hi: float):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"{_short(v)} is not a number from {lo:g} to {hi:g}")
        return float(v)
    return check


def _one_of(options):
    def check(v):
        if v not in tuple(options):
            raise ValueError(f"{_short(v)} is not one of {', '.join(map(str, options))}")
        return v
    return check


def _optional(check):
    if getattr(check, "is_path", False):
        def optional_path(v, root):
            return None if v is None else check(v, root)
        optional_path.is_path = True
        return optional_path
    return lambda v: None if v is None else check(v)


def _path(kind: str, suffixes: tuple[str, ...] = ()):
    """A path under the data root that exists as a ``kind`` ('file' or 'dir')."""
    def check(v, root):
        from ogdash.data.files import resolve_under

        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{_short(v)} is not a path")
        target = resolve_under(root, v)  # an OgdashError that says "outside the data root"
        if not (target.is_file() if kind == "file" else target.is_dir()):
            raise ValueError(f"{Path(v).name} is not an existing {'file' if kind == 'file' else 'folder'} under "
                             "the data root")
        if suffixes and target.suffix.lower() not in suffixes:
            raise ValueError(f"{target.name} is not a {' or '.join(suffixes)} file")
        return str(target)
    check.is_path = True
    return check


def _hidden(v):
    if not isinstance(v, (list, tuple)) or not 1 <= len(v) <= MAX_LAYERS:
        raise ValueError(f"{_short(v)} is not a list of 1 to {MAX_LAYERS} layer widths")
    return [_int(*HIDDEN)(w) for w in v]


def _builtin_names():
    from ogdash.data import BUILTIN

    return tuple(BUILTIN)


def _flip_modes():
    from ogdash.data import FLIP_MODES

    return FLIP_MODES


def _encoders():
    from ogdash.experiments.textselect import ENCODERS

    return tuple(ENCODERS)


def _text_names():
    from ogdash.experiments.textselect import ROTTEN_TOMATOES

    return (ROTTEN_TOMATOES,)


def _architectures():
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def allowed_modules() -> tuple[str, ...]:
    """The packages whose factories the dashboard may build ($OGDASH_MODEL_MODULES, comma-separated).

    Naming ``package.module:factory`` runs that code, so a link or a page can only name code
    the person running the dashboard allowed; ``examples`` (this repository's example) always is.
    """
    import os

    extra = [m.strip() for m in os.environ.get("OGDASH_MODEL_MODULES", "").split(",") if m.strip()]
    return ("examples", *extra)


def factory(v):
    """``package.module:factory`` inside an allowed package (``allowed_modules``)."""
    from ogdash.models.user import is_factory

    if not isinstance(v, str) or not is_factory(v):
        raise ValueError(f"{_short(v)} is not package.module:factory")
    module = v.partition(":")[0]
    if not any(module == m or module.startswith(m + ".") for m in allowed_modules()):
        raise ValueError(f"{module} is not an allowed package (the person running the dashboard allows them with "
                         "OGDASH_MODEL_MODULES)")
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"{_short(v)} is not true or false")
    return v


# source -> {field: (required, check)}; a check is a function of the value (paths also take the root).
# Lists of choices are looked up when a link is read, so the schema never drifts from the code.
_NOISE_FIELDS = {"noise_rate": (False, _float(*NOISE)), "noise_kind": (False, _one_of(("uniform", "pairs")))}
DATA = {
    "builtin": {"name": (True, lambda v: _one_of(_builtin_names())(v)), "seed": (False, _int(*SEED)),
                "flip_mode": (False, lambda v: _one_of(_flip_modes())(v)), **_NOISE_FIELDS},
    "files": {"train": (True, _path("file", (".npz", ".csv"))), "test": (False, _optional(_path("file", (".npz", ".csv")))),
              "val": (False, _optional(_path("file", (".npz", ".csv")))), "test_share": (False, _float(*SHARE)),
              "seed": (False, _int(*SEED))},
    "imagefolder": {"path": (True, _path("dir")), "size": (False, _int(*IMAGE_SIZE)), "test": (False, _optional(_path("dir"))),
                    "test_share": (False, _float(*SHARE)), "seed": (False, _int(*SEED)), **_NOISE_FIELDS},
    "text": {"name": (False, _optional(lambda v: _one_of(_text_names())(v))),
             "path": (False, _optional(_path("file", (".csv", ".tsv")))), "noise": (False, _float(*TEXT_NOISE)),
             "seed": (False, _int(*SEED)), "n_train": (False, _optional(_int(*TEXT_TRAIN))),
             "n_test": (False, _optional(_int(*TEXT_TEST))), "encoder": (False, lambda v: _one_of(_encoders())(v))},
    "cifar": {"path": (True, _path("dir")), "noisy_labels": (False, _optional(_path("file", (".pt", ".npz")))),
              "noise_key": (False, _optional(_one_of(NOISE_KEYS)))},
}
_MODEL_COMMON = {"seed": (False, _int(*SEED)), "epochs": (False, _optional(_int(*EPOCHS))),
                 "hidden": (False, _hidden), "scale": (False, _bool)}  # the text page gives every head its hidden width
_YOURS = {"weights": (True, _path("file", (".safetensors", ".pt", ".pth", ".bin"))), "new_head": (False, _bool),
          "seed": (False, _int(*SEED)), "epochs": (False, _optional(_int(*EPOCHS)))}
MODEL = {
    "logreg": _MODEL_COMMON,
    "mlp": _MODEL_COMMON,
    "cnn": _MODEL_COMMON,
    "paper_mlp": _MODEL_COMMON,
    "torchvision": {"arch": (True, lambda v: _one_of(_architectures())(v)), **_YOURS},
    "custom": {"arch": (True, factory), **_YOURS},
}


def _checked(cfg, switch: str, schema: dict, root) -> dict:
    if not isinstance(cfg, dict):
        raise ValueError("it is not a set of named settings")
    if switch not in cfg:
        raise ValueError(f"'{switch}' is missing")
    if cfg[switch] not in schema:
        raise ValueError(f"{switch} {_short(cfg[switch])} is not one of {', '.join(schema)}")
    fields = schema[cfg[switch]]
    unknown = sorted(map(str, set(cfg) - set(fields) - {switch}))
    if unknown:
        raise ValueError(f"{_short(unknown[0])} is not a setting of {switch} {cfg[switch]}")
    out = {switch: cfg[switch]}
    for name, (required, check) in fields.items():
        if name not in cfg:
            if required:
                raise ValueError(f"'{name}' is missing")
            continue
        try:
            out[name] = check(cfg[name], root) if getattr(check, "is_path", False) else check(cfg[name])
        except (ValueError, OgdashError) as e:
            raise ValueError(f"{name}: {str(e).rstrip('.')}") from None
    return out


def data_from_link(cfg, root) -> dict:
    """A data choice from a link, checked whole (paths resolved under ``root``); OgdashError says why not."""
    try:
        return _checked(cfg, "source", DATA, root)
    except ValueError as e:
        raise OgdashError(f"The link's data settings were not used ({e}); the default data is shown instead.") from None


def model_from_link(cfg, root) -> dict:
    """A model choice from a link, checked whole; a torchvision model's weights file must exist under ``root``."""
    try:
        return _checked(cfg, "kind", MODEL, root)
    except ValueError as e:
        raise OgdashError(f"The link's model settings were not used ({e}); the default model is used "
                          "instead.") from None

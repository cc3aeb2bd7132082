"""What a link may say about the model: the model choice read back from a page's URL, checked whole.

A shared link is input from anyone. Its ``model`` parameter is checked against the schema
below before anything is built: known architectures only; numbers inside the ranges the
pages' own widgets allow; every required key present; a weights file under the data root
and existing (checked before a model is built); a factory only from an allowed package. A
link that fails gets one line saying why, and the default is used instead; nothing in it is
partly applied. (The ``data`` parameter is checked by ``ogdash.data.DataSpec.from_dict``.)
"""
from __future__ import annotations

import json
from pathlib import Path

from ogdash.core.errors import OgdashError

SEED = (0, 100_000)
HIDDEN = (1, 4096)  # one hidden layer's width
MAX_LAYERS = 8
EPOCHS = (1, 10_000)


MAX_LINK_CHARS = 4_000  # a link's data or model settings: paths and a few numbers, far below this
MAX_LINK_DEPTH = 8  # settings nest two deep (a list of layer widths inside the settings)


def link_json(text: str):
    """A link parameter's JSON, parsed only after its size and nesting are checked: 3,000 nested ``[`` would
    make the parser raise RecursionError on every run of the session. OgdashError says why not, in a few words
    ("they nest 3,000 levels deep, over 8") that a caller puts in its sentence."""
    if len(text) > MAX_LINK_CHARS:
        raise OgdashError(f"they are {len(text):,} characters long, over {MAX_LINK_CHARS:,}")
    depth, deepest, in_string, escaped = 0, 0, False, False
    for ch in text:  # brackets inside strings do not nest
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_LINK_DEPTH:
        raise OgdashError(f"they nest {deepest:,} levels deep, over {MAX_LINK_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise OgdashError("they are not readable") from None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(lo: int, hi: int):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{_short(v)} is not a whole number from {lo:,} to {hi:,}")
        return v
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


def _architectures():
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


EXAMPLES = "ogdash.examples"  # the shipped example networks, a regular package inside the installed ogdash


def allowed_modules() -> tuple[str, ...]:
    """The packages whose factories the dashboard may build: ``ogdash.examples`` and $OGDASH_MODEL_MODULES
    (comma-separated package or module names).

    Naming ``package.module:factory`` runs that code, so a link or a page can only name code the person
    running the dashboard allowed, and only as installed: each allowed name must be a regular package (with
    ``__init__.py``) or a module found on the server's ``sys.path``, which never holds the current folder
    or the data root (``dashboard.nav.keep_cwd_off_path``); the module named must be a file inside that
    package's real folder, and the factory a plain name defined there (``ogdash.models.user.load_factory``).
    """
    import os

    extra = [m.strip() for m in os.environ.get("OGDASH_MODEL_MODULES", "").split(",") if m.strip()]
    return (EXAMPLES, *extra)


def factory(v):
    """``package.module:factory`` inside an allowed package (``allowed_modules``), checked, imported and looked up
    (never called): its syntax first, then where the module's file lies, before any of it is imported."""
    from ogdash.models.user import is_factory, load_factory

    if not isinstance(v, str) or not is_factory(v) or len(v) > 300:
        raise ValueError(f"{_short(v)} is not package.module:factory")
    try:  # importing here puts the checked module in sys.modules: building the model later finds that one
        load_factory(v, allowed=allowed_modules())
    except OgdashError as e:
        raise ValueError(str(e).rstrip(".")) from None
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"{_short(v)} is not true or false")
    return v


# kind -> {field: (required, check)}; a check is a function of the value (paths also take the root).
# Lists of choices are looked up when a link is read, so the schema never drifts from the code.
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


def model_from_link(cfg, root) -> dict:
    """A model choice from a link, checked whole; a torchvision model's weights file must exist under ``root``."""
    try:
        return _checked(cfg, "kind", MODEL, root)
    except ValueError as e:
        raise OgdashError(f"The link's model settings were not used ({e}); the default model is used "
                          "instead.") from None

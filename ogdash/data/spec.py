"""The data choice, typed: one frozen ``DataSpec`` from the CLI's flags or a page's link to the one loader.

A ``DataSpec`` names a source and that source's settings, checks them when it is made,
and loads the splits with :meth:`DataSpec.load`. The CLI builds one from paths
(:meth:`DataSpec.from_paths`, which tells an image folder, a CIFAR folder and a saved
dataset apart), the dashboard from a form or from a shared link (:meth:`DataSpec.from_dict`,
which resolves every path under the data root and refuses what a page's widgets could not
have produced). :meth:`to_dict` is what a page's address holds.

Sources and their settings (``FIELDS``):
- ``builtin``: ``name`` (digits, mnist5k with injected ``noise_rate``/``noise_kind``; moons,
  blobs with a ``flip_mode``) and ``seed``; a clean tenth is the validation set.
- ``files``: ``train`` (``.npz``, ``.csv``, ``.parquet``, a saved Hugging Face dataset
  folder, or a folder of ``X.npy`` and ``y.npy``), optional ``test`` and ``val``; precomputed features
  in an uncompressed ``.npz`` or a ``.npy`` (C-ordered float32) are memory-mapped, not read
  (``ogdash.data.mapped``); without a test file, a seeded ``test_share`` of
  the training file is held out (and not scored). A table with a ``text`` column (or the
  ``text_column`` named; any ``.tsv``) holds labelled texts (``ogdash.data.text_tables``),
  embedded by ``encoder``: ``minilm`` (the default), ``tfidf``, or a local encoder folder.
- ``imagefolder``: ``path`` (``ROOT/<class>/<image>``), images resized to ``size``,
  optional ``test`` folder or ``test_share``, optional demo ``noise_rate``.
- ``cifar``: ``path`` holding CIFAR-10/100 batches, optional CIFAR-N ``noisy_labels`` and ``noise_key``.
- ``text``: the text study's data: Rotten Tomatoes (``name``) or a text CSV (``path``),
  ``noise_rate`` of the training labels flipped, ``n_train``/``n_test``, embedded by ``encoder``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Splits, hold_out_validation
from ogdash.data.synthetic import FLIP_MODES

BUILTIN_NAMES = ("digits", "mnist5k", "moons", "blobs")
NOISE_KINDS = ("uniform", "pairs")
NOISE_KEYS = ("worse_label", "aggre_label", "random_label1", "noisy_label")
VAL_SHARE = 0.1  # built-in sets and the text study keep a clean tenth as validation data (OneClassSVM's inliers)

SEED, SHARE, NOISE, IMAGE_SIZE = (0, 100_000), (0.05, 0.5), (0.0, 0.5), (8, 128)
TEXT_TRAIN, TEXT_TEST, TEXT_NOISE = (100, 10_000), (50, 2_600), (0.0, 0.45)
TABLE_SUFFIXES = (".npz", ".csv", ".tsv", ".parquet")


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
        if v not in options:
            raise ValueError(f"{_short(v)} is not one of {', '.join(map(str, options))}")
        return v
    return check


def _text(v):
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{_short(v)} is not a path")
    return v


def _encoders():
    from ogdash.data.encoders import ENCODERS

    return tuple(ENCODERS)


def _encoder(v):
    return _one_of(_encoders())(v)


def _table_encoder(v):
    """A text table's encoder: a name (``TABLE_ENCODERS``) or the path of a local encoder folder."""
    if not isinstance(v, str) or not v.strip() or len(v) > 1000:
        raise ValueError(f"{_short(v)} is not an encoder name or folder")
    return v


def _column(v):
    if not isinstance(v, str) or not v.strip() or len(v) > 200:
        raise ValueError(f"{_short(v)} is not a column name")
    return v


def is_encoder_name(v) -> bool:
    """Whether a text table's ``encoder`` is a name (else it is a folder's path)."""
    from ogdash.data.encoders import TABLE_ENCODERS

    return v in TABLE_ENCODERS


# What a path field must be: a file with one of these suffixes, a folder, or either.
FILE, DIR, TABLE = "file", "dir", "table"
PATHS = {"train": TABLE, "test": None, "val": TABLE, "path": None, "noisy_labels": FILE}


def _path_kind(source: str, name: str):
    """(kind, suffixes) a path field of ``source`` must have."""
    if name in ("train", "val") or (source == "files" and name == "test"):
        return TABLE, TABLE_SUFFIXES
    if source == "text":
        return FILE, (".csv", ".tsv")
    if name == "noisy_labels":
        return FILE, (".pt", ".npz")
    return DIR, ()  # a folder: an image or CIFAR folder, a text table's encoder


# source -> {field: (required, check)}. Paths are checked by kind (``_path_kind``) and, from a link, under the root.
FIELDS = {
    "builtin": {"name": (True, _one_of(BUILTIN_NAMES)), "seed": (False, _int(*SEED)),
                "noise_rate": (False, _float(*NOISE)), "noise_kind": (False, _one_of(NOISE_KINDS)),
                "flip_mode": (False, _one_of(FLIP_MODES))},
    "files": {"train": (True, _text), "test": (False, _text), "val": (False, _text),
              "test_share": (False, _float(*SHARE)), "seed": (False, _int(*SEED)),
              "text_column": (False, _column), "encoder": (False, _table_encoder)},
    "imagefolder": {"path": (True, _text), "size": (False, _int(*IMAGE_SIZE)), "test": (False, _text),
                    "test_share": (False, _float(*SHARE)), "seed": (False, _int(*SEED)),
                    "noise_rate": (False, _float(*NOISE)), "noise_kind": (False, _one_of(NOISE_KINDS))},
    "cifar": {"path": (True, _text), "noisy_labels": (False, _text), "noise_key": (False, _one_of(NOISE_KEYS))},
    "text": {"name": (False, _one_of(("rotten_tomatoes",))), "path": (False, _text),
             "noise_rate": (False, _float(*TEXT_NOISE)), "seed": (False, _int(*SEED)),
             "n_train": (False, _int(*TEXT_TRAIN)), "n_test": (False, _int(*TEXT_TEST)),
             "encoder": (False, _encoder)},
}
# Defaults a link leaves out, where a source's differ from the fields' own.
SOURCE_DEFAULTS = {"text": {"noise_rate": 0.2}}
# Settings a link leaves out at their default (a numeric table's link names no encoder).
QUIET_DEFAULTS = {"files": {"encoder": "minilm"}}


@dataclass(frozen=True)
class DataSpec:
    """One data choice: a ``source`` and its settings (see the module docstring), checked when made.

    ``within``: a folder every file read must resolve under (the dashboard's data root,
    symlinks followed); None reads paths as given (the CLI, the library).
    """

    source: str
    name: str | None = None
    train: str | None = None
    test: str | None = None
    val: str | None = None
    path: str | None = None
    test_share: float = 0.2
    seed: int = 0
    noise_rate: float = 0.0
    noise_kind: str = "uniform"
    flip_mode: str = "far"
    size: int = 32
    noisy_labels: str | None = None
    noise_key: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    encoder: str = "minilm"
    text_column: str | None = None
    within: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.source not in FIELDS:
            raise OgdashError(f"unknown data source {_short(self.source)}; choose one of {', '.join(FIELDS)}.")
        allowed = FIELDS[self.source]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("source", "within") or value is None or value == f.default:
                continue
            if f.name not in allowed:
                raise OgdashError(f"{f.name} is not a setting of source {self.source}.")
            try:
                allowed[f.name][1](value)
            except ValueError as e:
                raise OgdashError(f"{f.name}: {e}.") from None
        for name, (required, _) in allowed.items():
            if required and getattr(self, name) is None:
                raise OgdashError(f"'{name}' is missing ({self.source} data needs it).")
        if self.source == "cifar" and self.noisy_labels and not self.noise_key:
            object.__setattr__(self, "noise_key", "worse_label")

    # ------------------------------------------------------------------ making one

    @classmethod
    def from_dict(cls, d, root=None) -> "DataSpec":
        """A spec from a link's (or a form's) settings, checked whole; OgdashError says in one line why not.

        With ``root``, every path must lie under it (symlinks included) and exist as the file or
        folder its field names, and the spec reads only under it (``within``).
        """
        try:
            if not isinstance(d, dict):
                raise ValueError("it is not a set of named settings")
            if "source" not in d:
                raise ValueError("'source' is missing")
            source = d["source"]
            if source not in FIELDS:
                raise ValueError(f"source {_short(source)} is not one of {', '.join(FIELDS)}")
            d = dict(d)
            if source == "text" and "noise" in d and "noise_rate" not in d:  # the text page's earlier links
                d["noise_rate"] = d.pop("noise")
            unknown = sorted(map(str, set(d) - set(FIELDS[source]) - {"source"}))
            if unknown:
                raise ValueError(f"{_short(unknown[0])} is not a setting of source {source}")
            out = {**SOURCE_DEFAULTS.get(source, {}), **{k: v for k, v in d.items() if v is not None}}
            for name in PATHS:
                if root is not None and out.get(name) is not None:
                    out[name] = _checked_path(source, name, out[name], root)
            if source == "files" and root is not None and "encoder" in out and not is_encoder_name(out["encoder"]):
                out["encoder"] = _checked_path(source, "encoder", out["encoder"], root)
            return cls(**out, within=None if root is None else str(Path(root).resolve()))
        except (ValueError, TypeError, OgdashError) as e:
            raise OgdashError(f"{str(e).rstrip('.')}.") from None

    @classmethod
    def from_paths(cls, train, test=None, val=None, test_share: float = 0.2, seed: int = 0, size: int = 32,
                   noisy_labels=None, noise_key: str | None = None, text_column: str | None = None,
                   encoder: str | None = None) -> "DataSpec":
        """The spec of ``--train``/``--test``/``--val`` paths, whatever they hold: a file (``.npz``, ``.csv``,
        ``.tsv``, ``.parquet``) or saved dataset folder, an image folder (``ROOT/<class>/<image>``) or a CIFAR
        folder. ``text_column``/``encoder``: a text table's (``--text-column``, ``--encoder``)."""
        train = str(train)
        p = Path(train)
        if (text_column or encoder) and p.is_dir() and not is_dataset_folder(p):
            raise OgdashError(f"{p.name}: --text-column and --encoder are for a table of texts (a .csv, .tsv or "
                              ".parquet file or a dataset folder with a text column), not an image folder.")
        if p.is_dir() and is_cifar_folder(p):
            if test is not None or val is not None:
                raise OgdashError(f"{p.name}: CIFAR brings its own test set; leave out --test and --val.")
            return cls("cifar", path=train, noisy_labels=None if noisy_labels is None else str(noisy_labels),
                       noise_key=noise_key)
        if noisy_labels is not None:
            raise OgdashError("--noisy-labels is for a CIFAR folder; give the folder holding cifar-10-batches-py/.")
        if p.is_dir() and not is_dataset_folder(p) and not is_arrays_folder(p):
            if val is not None:
                raise OgdashError("an image folder takes no --val; OneClassSVM fits on the training gradients.")
            return cls("imagefolder", path=train, size=size, test=None if test is None else str(test),
                       test_share=test_share, seed=seed)
        return cls("files", train=train, test=None if test is None else str(test),
                   val=None if val is None else str(val), test_share=test_share, seed=seed,
                   text_column=text_column, encoder=encoder or "minilm")

    @staticmethod
    def _texts(train, text_column) -> bool:
        from ogdash.data.text_tables import is_text_table

        return is_text_table(train, text_column)

    # ------------------------------------------------------------------ what it is

    def to_dict(self) -> dict:
        """The settings a link holds: this source's fields, unset ones left out."""
        quiet = QUIET_DEFAULTS.get(self.source, {})
        return {"source": self.source, **{k: getattr(self, k) for k in FIELDS[self.source] if getattr(self, k)
                                          is not None and not (k in quiet and quiet[k] == getattr(self, k))}}

    def paths(self) -> list[str]:
        """Every file or folder this spec reads."""
        paths = [getattr(self, k) for k in PATHS if k in FIELDS[self.source] and getattr(self, k)]
        return paths + ([self.encoder] if self.source == "files" and not is_encoder_name(self.encoder) else [])

    @property
    def texts(self) -> bool:
        """Whether this is a table of texts (reads the file's header, schema or features only)."""
        return self.source == "text" or (self.source == "files" and self._texts(self.train, self.text_column))

    @property
    def held_out(self) -> bool:
        """Whether a share of the training data is held out as the test set (no test set was given)."""
        return self.source in ("files", "imagefolder") and not self.test

    def describe(self) -> str:
        """One line naming the data, for a sidebar or a log."""
        if self.source == "builtin":
            if self.name in ("blobs", "moons"):
                return f"{self.name} (seed {self.seed}, {self.flip_mode} flips)"
            return f"{self.name} (seed {self.seed}, {self.noise_rate:.0%} {self.noise_kind} noise)"
        if self.source == "text":
            name = Path(self.path).name if self.path else "Rotten Tomatoes"
            return f"text: {name} ({self.noise_rate:.0%} noise, {self.encoder} embeddings)"
        return f"{self.source}: {Path(self.train or self.path).name}"

    # ------------------------------------------------------------------ loading

    def load(self, cache=None, progress=None) -> Splits:
        """The splits this spec names; OgdashError (one line) when the data cannot be used.

        ``cache`` (a ``DiskCache``) keeps text embeddings; ``progress(fraction, message)`` follows encoding.
        """
        splits = self._load(cache, progress)
        train = splits.train
        if train.n_classes < 2 or len(set(train.y.tolist())) < 2:
            where = Path(self.train or self.path).name if (self.train or self.path) else self.describe()
            raise OgdashError(f"{where}: the training data holds a single class; ogdash needs at least two classes.")
        return splits

    def _load(self, cache, progress) -> Splits:
        from ogdash import data

        within = self.within
        if self.source == "builtin":
            if self.name in ("blobs", "moons"):
                return data.BUILTIN[self.name](seed=self.seed, flip_mode=self.flip_mode)
            return data.BUILTIN[self.name](seed=self.seed, noise_rate=self.noise_rate, noise_kind=self.noise_kind,
                                           val_fraction=VAL_SHARE)
        if self.source == "files":
            if self._texts(self.train, self.text_column):
                from ogdash.data.text_tables import load_text_files

                return load_text_files(self.train, self.test, self.val, self.text_column, self.encoder,
                                       self.test_share, self.seed, within, cache, progress)
            if (self.text_column or self.encoder != "minilm") and Path(self.train).exists():
                raise OgdashError(f"{Path(self.train).name}: has no text column; the text column and the encoder "
                                  "are for a table of texts.")
            return data.load_splits(self.train, self.test, self.val, self.test_share, self.seed)
        if self.source == "imagefolder":
            from ogdash.data.folders import load_folder_splits

            return load_folder_splits(self.path, self.size, self.test, self.test_share, self.noise_rate,
                                      self.noise_kind, self.seed, within=within)
        if self.source == "cifar":
            from ogdash.data.folders import load_cifar

            return load_cifar(self.path, self.noisy_labels, self.noise_key, within=within)
        from ogdash.data.text import ROTTEN_TOMATOES, load_text_splits

        splits = load_text_splits(self.path or ROTTEN_TOMATOES, self.noise_rate, self.seed, self.n_train,
                                  self.n_test, self.encoder, cache, progress)[0]
        return hold_out_validation(splits, VAL_SHARE, self.seed) if splits.val is None else splits


def is_cifar_folder(path: Path) -> bool:
    """Whether ``path`` holds CIFAR-10/100 in torchvision's local format."""
    return any((path / p).exists() for p in ("cifar-10-batches-py", "cifar-100-python", "data_batch_1")) or (
        (path / "train").is_file() and (path / "test").is_file())


def is_arrays_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of ``X.npy`` and ``y.npy`` (precomputed features; ``ogdash.data.files``)."""
    from ogdash.data.files import is_arrays_folder as arrays

    return arrays(path)


def is_dataset_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``datasets``' ``save_to_disk`` (one split or a DatasetDict)."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _checked_path(source: str, name: str, value, root) -> str:
    """A path from a link: under ``root`` (symlinks followed) and existing as what the field names."""
    from ogdash.data.files import resolve_under

    _text(value)
    target = resolve_under(root, value)  # an OgdashError that says "outside the data root"
    kind, suffixes = _path_kind(source, name)
    if kind == TABLE:
        ok = target.is_dir() or (target.is_file() and target.suffix.lower() in suffixes)
    elif kind == FILE:
        ok = target.is_file() and (not suffixes or target.suffix.lower() in suffixes)
    else:
        ok = target.is_dir()
    if not ok:
        what = {TABLE: f"{' or '.join(suffixes)} file or dataset folder", FILE: f"{' or '.join(suffixes)} file",
                DIR: "folder"}[kind]
        raise ValueError(f"{name}: {Path(value).name} is not an existing {what} under the data root")
    return str(target)

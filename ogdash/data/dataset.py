"""The one dataset type every stage of ogdash speaks.

A ``Dataset`` holds inputs, given labels, stable sample ids and, when known, the
true labels. Ids are fixed at load time and never change: plots, the gallery,
the decision store and exports all key on them, never on a row position.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from ogdash.core import chunks
from ogdash.core.errors import OgdashError


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs and labels of one split.

    X:        float32, (n, d) feature rows or (n, C, H, W) images in [0, 1].
    y:        int64 (n,), the given (possibly noisy) labels in 0..len(classes)-1.
    ids:      int64 (n,), stable sample ids, unique.
    classes:  class names; ``len(classes)`` is the number of classes.
    y_true:   int64 (n,) true labels when known (synthetic data, injected noise), else None.
    texts:    the raw text of each sample for text data, else None.
    sources:  where each sample came from, as a person finds it again: a file path relative
              to the image folder, "line 7" of a CSV, "index 12" of an array; None means "id N".
    feature_names: column names of feature rows (from a CSV header), else None.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    classes: tuple[str, ...]
    y_true: np.ndarray | None = None
    texts: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    _fingerprint: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        n = len(self.y)
        if n == 0:
            raise OgdashError(f"{self.name}: the dataset has zero samples; give at least one row.")
        if len(self.X) != n or len(self.ids) != n:
            raise OgdashError(f"{self.name}: X has {len(self.X)} rows but y has {n}; they must match.")
        if self.y_true is not None and len(self.y_true) != n:
            raise OgdashError(f"{self.name}: y_true has {len(self.y_true)} rows but y has {n}; they must match.")
        if self.sources is not None and len(self.sources) != n:
            raise OgdashError(f"{self.name}: {len(self.sources)} sources for {n} samples; give one per sample.")
        if len(np.unique(self.ids)) != n:
            raise OgdashError(f"{self.name}: sample ids are not unique.")
        k = len(self.classes)
        for arr, what in ((self.y, "labels"), (self.y_true, "true labels")):
            if arr is not None and (arr.min() < 0 or arr.max() >= k):
                raise OgdashError(f"{self.name}: {what} must be integers in 0..{k - 1}; found {arr.min()}..{arr.max()}.")

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def kind(self) -> str:
        """'text', 'image' or 'features': how a sample is shown."""
        if self.texts is not None:
            return "text"
        return "image" if self.X.ndim == 4 else "features"

    @property
    def noisy(self) -> np.ndarray | None:
        """Boolean mask of samples whose given label differs from the true one, when known."""
        return None if self.y_true is None else self.y != self.y_true

    def fingerprint(self) -> str:
        """Content hash of inputs, labels and ids: changes whenever the data does."""
        if not self._fingerprint:
            h = hashlib.sha256()
            for arr in (self.X, self.y, self.ids):
                h.update(str((arr.dtype.str, arr.shape)).encode())
                for _, _, block in chunks.blocks(arr):  # a memory-mapped X is hashed chunk by chunk, never copied whole
                    h.update(memoryview(np.ascontiguousarray(block)).cast("B"))
            h.update("\x1f".join(self.classes).encode())
            if self.texts is not None:
                h.update("\x1f".join(self.texts).encode())
            self._fingerprint.append(h.hexdigest()[:16])
        return self._fingerprint[0]

    @property
    def truth_known(self) -> bool:
        """Whether the true labels are known (synthetic data, injected noise); only then may a page talk about truth."""
        return self.y_true is not None

    def source(self, i: int) -> str:
        """Where the sample at position i came from (see ``sources``)."""
        return self.sources[i] if self.sources is not None else f"id {int(self.ids[i])}"

    def source_list(self) -> list[str]:
        return [self.source(i) for i in range(self.n)]

    def positions(self, ids) -> np.ndarray:
        """Row positions of the given sample ids (raises on unknown ids)."""
        order = np.argsort(self.ids)
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids, sorter=order)
        pos = order[np.clip(pos, 0, len(order) - 1)]
        if len(ids) and not np.array_equal(self.ids[pos], ids):
            raise OgdashError(f"{self.name}: unknown sample ids {sorted(set(ids) - set(self.ids.tolist()))[:5]}.")
        return pos

    def subset(self, positions) -> "Dataset":
        """A new Dataset with the rows at the given positions (or boolean mask); ids are kept."""
        p = np.asarray(positions)
        if p.dtype == bool:
            p = np.flatnonzero(p)
        return replace(
            self,
            X=self.X[p],
            y=self.y[p],
            ids=self.ids[p],
            y_true=None if self.y_true is None else self.y_true[p],
            texts=None if self.texts is None else tuple(self.texts[i] for i in p),
            sources=None if self.sources is None else tuple(self.sources[i] for i in p),
            _fingerprint=[],
        )

    def without(self, ids) -> "Dataset":
        """The dataset with the given sample ids removed."""
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        return self.subset(keep)

    def relabelled(self, new_labels: dict[int, int]) -> "Dataset":
        """The dataset with given labels replaced for some ids (id -> class index)."""
        y = self.y.copy()
        if new_labels:
            pos = self.positions(list(new_labels))
            y[pos] = np.fromiter(new_labels.values(), dtype=np.int64)
        return replace(self, y=y, _fingerprint=[])

    def view(self, i: int):
        """How sample at position i looks: an HxW or HxWx3 uint8 image, a text, or a feature row."""
        if self.texts is not None:
            return self.texts[i]
        x = self.X[i]
        if x.ndim == 3:
            img = np.clip(x * 255.0, 0, 255).astype(np.uint8)
            return img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        return x

    def label_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.n_classes)


@dataclass(frozen=True)
class Splits:
    """A training set, an untouched test set, and an optional validation set.

    notes: one-line remarks on how the data was read that a person should see (a text table's
    encoder and class order, texts cut to the length cap); the CLI and the Data page show them.
    """

    train: Dataset
    test: Dataset
    val: Dataset | None = None
    notes: tuple[str, ...] = ()


def make_dataset(name, X, y, classes=None, y_true=None, ids=None, texts=None, sources=None,
                 feature_names=None) -> Dataset:
    """Build a Dataset from plain arrays, casting dtypes (ids default to 0..n-1)."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(np.int64)
    if classes is None:
        classes = tuple(str(c) for c in range(int(y.max()) + 1 if len(y) else 0))
    ids = np.arange(len(y), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    y_true = None if y_true is None else np.asarray(y_true).astype(np.int64)
    return Dataset(name, X, y, ids, tuple(classes), y_true, None if texts is None else tuple(texts),
                   None if sources is None else tuple(map(str, sources)),
                   None if feature_names is None else tuple(map(str, feature_names)))


def split_off(ds: Dataset, share: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(kept, held out): a seeded ``share`` of ``ds`` held out, e.g. as a test set when the user gave none.

    Both parts keep their ids and sources, so the page can list what was held out.
    """
    if not 0 < share < 1:
        raise OgdashError(f"the held-out share must be between 0 and 1; got {share}.")
    k = int(round(share * ds.n))
    if k < 1 or k >= ds.n:
        raise OgdashError(f"{ds.name}: holding out {share:.0%} of {ds.n} samples leaves nothing on one side; "
                          "give a separate test set or change the share.")
    held = np.zeros(ds.n, dtype=bool)
    held[np.random.default_rng(seed).permutation(ds.n)[:k]] = True
    return ds.subset(~held), ds.subset(held)

def hold_out_validation(splits: Splits, fraction: float = 0.1, seed: int = 0) -> Splits:
    """Move a seeded fraction of the training set into a validation set (if there is none)."""
    if splits.val is not None:
        return splits
    if not 0 < fraction < 0.5:
        raise OgdashError(f"validation fraction must be in (0, 0.5); got {fraction}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(splits.train.n)
    k = max(1, int(round(fraction * splits.train.n)))
    return Splits(splits.train.subset(np.sort(order[k:])), splits.test, splits.train.subset(np.sort(order[:k])))

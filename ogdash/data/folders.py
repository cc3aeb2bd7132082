"""Image folders (torchvision's ImageFolder layout) and CIFAR-10/100 in torchvision's local format.

CIFAR's batch files are Python pickles. ogdash never unpickles arbitrary objects:
it reads them with an unpickler that allows only the numpy types an array needs,
and refuses anything else (a pickle that tries to run code is an error, not a run).
CIFAR-N label files (``CIFAR-10_human.pt``, ``CIFAR-100_human.pt``) load with
``torch.load(weights_only=True)`` allowing only numpy arrays, or from an ``.npz``.
"""
from __future__ import annotations

import contextlib
import io
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Dataset, Splits, make_dataset, split_off
from ogdash.data.files import resolve_under
from ogdash.data.limits import check_elements, check_image_pixels, check_npz

GRAY_MODES = {"L", "1", "I", "I;16", "F"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def load_image_folder(root, size: int = 32, grayscale: bool | None = None, name: str | None = None,
                      within=None) -> Dataset:
    """``root/<class>/<image>`` into a Dataset of (n, C, size, size) images in [0, 1].

    Class names are the sorted sub-folder names. Files without an image extension are
    skipped (as torchvision does); an unreadable image is an error that names it.
    ``grayscale=None`` picks grey when every image is single-channel. ``within``: a folder
    (the dashboard's data root) that every image must resolve under, symlinks followed;
    a class folder or image linked out of it is refused, never read.
    """
    root = Path(root)
    if not root.is_dir():
        raise OgdashError(f"image folder not found: {root}; check the path "
                          "(relative paths start at the data root).")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise OgdashError(f"{root}: has no class sub-folders; lay it out as {root}/<class>/<image>.")
    files, labels = [], []
    for c, d in enumerate(class_dirs):
        imgs = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not imgs:
            raise OgdashError(f"{d}: class folder holds no images; add images or remove the folder.")
        files += imgs
        labels += [c] * len(imgs)
    if within is not None:
        for f in files:
            resolve_under(within, f)
    # first the headers (mode and size, nothing decoded): the checks need no pixel
    modes = set()
    for f in files:
        with _opened(f) as im:
            check_image_pixels(f, *im.size)
            modes.add(im.mode)
    gray = grayscale if grayscale is not None else modes <= GRAY_MODES
    channels = 1 if gray else 3
    check_elements(len(files) * channels * size * size, f"{len(files):,} images of {channels} channel(s) at "
                   f"{size}x{size}", root)
    # then each image, shrunk as it is read: never more than one full-resolution image in memory
    X = np.empty((len(files), channels, size, size), np.float32)
    for i, f in enumerate(files):
        with _opened(f) as im:
            small = _shrunk(im, "L" if gray else "RGB", size)
        X[i] = small[None] if gray else np.transpose(small, (2, 0, 1))
        X[i] /= 255.0
    # ids are positions in the sorted listing; each sample keeps its path relative to the folder
    return make_dataset(name or root.name, X, labels, tuple(d.name for d in class_dirs),
                        sources=[f.relative_to(root).as_posix() for f in files])


@contextlib.contextmanager
def _opened(f: Path):
    """An image opened lazily (header read, pixels not yet), or the one-line error that names it."""
    from PIL import Image, UnidentifiedImageError
    from PIL.Image import DecompressionBombError

    try:
        with Image.open(f) as im:
            yield im
    except OgdashError:
        raise
    except (UnidentifiedImageError, DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise OgdashError(f"{f}: is not a readable image ({type(e).__name__}); fix or remove it.") from e


def _shrunk(im, mode: str, size: int) -> np.ndarray:
    """``im`` as a (size, size[, 3]) uint8 array in ``mode``; a large JPEG is decoded at a reduced scale
    (``draft``) and a large image of any kind is reduced by an integer factor before the resampling."""
    if min(im.size) >= 4 * size:  # JPEG only: decode at 1/2, 1/4 or 1/8 scale, still at least 2x the size
        im.draft(mode, (2 * size, 2 * size))
    im.load()
    if im.mode != mode:  # convert() to the same mode would copy the full-resolution image
        im = im.convert(mode)
    return np.asarray(im.resize((size, size), reducing_gap=3.0), dtype=np.uint8)


def load_folder_splits(root, size: int = 32, test=None, test_share: float = 0.2, noise_rate: float = 0.0,
                       noise_kind: str = "uniform", seed: int = 0, within=None) -> Splits:
    """An image folder as training data, every image scored; the test set is a second folder.

    Without ``test``, a seeded ``test_share`` of the folder is held out as the test set
    (listed by path on the Data page, never scored). True labels are known only when
    ``noise_rate`` > 0 injects noise into the training part; a folder's own labels are
    the given ones, never presented as truth.
    """
    from ogdash.data.noise import inject_noise

    ds = load_image_folder(root, size, within=within)
    if test is not None:
        te = load_image_folder(test, size, grayscale=ds.X.shape[1] == 1, name=f"{Path(test).name}", within=within)
        unknown = sorted(set(te.classes) - set(ds.classes))
        if unknown:
            raise OgdashError(f"{test}: has class folder(s) {unknown[:3]} that the training folder lacks; "
                              "the test folder must use the training folder's class names.")
        index = {c: i for i, c in enumerate(ds.classes)}
        te = make_dataset(te.name, te.X, [index[te.classes[c]] for c in te.y], ds.classes, sources=te.sources)
        if te.X.shape[1:] != ds.X.shape[1:]:
            raise OgdashError(f"{test}: images have {te.X.shape[1]} channel(s) but the training images "
                              f"{ds.X.shape[1]}; convert one folder so both are grey or both colour.")
        tr = ds
    else:
        tr, te = split_off(ds, test_share, seed)
    if noise_rate > 0:
        given = inject_noise(tr.y, noise_rate, noise_kind, tr.n_classes, seed=seed)
        tr = replace(tr, y=given, y_true=tr.y, _fingerprint=[])
    return Splits(tr, te)


def nested_class_folders(root) -> list[str]:
    """Class folders of ``root`` that hold sub-folders: often a sign that ``root`` is one level too high."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and any(p.is_dir() and not p.name.startswith(".") for p in d.iterdir()))


def non_image_files(root) -> list[Path]:
    """Files in the class folders of ``root`` that ``load_image_folder`` skips (no image extension).

    Hidden files (``.DS_Store``, ``._x.png``) are not listed: nobody meant them as samples.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                  for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() not in IMAGE_EXTENSIONS)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and numpy arrays; refuses every other global.

    An array's shape is checked against ``OGDASH_MAX_ELEMENTS`` when the pickle declares it, before
    numpy allocates: ``numpy.ndarray((10000, 3072))`` in a 20 KB pickle is 245 MB of memory from a
    shape alone."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def __init__(self, file, where: str = "file", **kwargs):
        super().__init__(file, **kwargs)
        self.where = where
        self.checked_ndarray = self._ndarray  # one object, so _reconstruct can recognise it as the class it stands for

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:  # exact pairs only: no prefix rule a crafted name can satisfy
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        real = super().find_class(module, name)
        if name == "ndarray":
            return self.checked_ndarray
        if name == "_reconstruct":
            return lambda subtype, shape, dtype: self._reconstruct(real, subtype, shape, dtype)
        return real

    def _capped(self, shape, dtype) -> None:
        try:
            dims = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
            itemsize = np.dtype(dtype).itemsize
        except (TypeError, ValueError) as e:
            raise pickle.UnpicklingError(f"an array of shape {str(shape)[:40]}") from e
        if any(d < 0 for d in dims):
            raise pickle.UnpicklingError("an array of negative shape")
        check_elements(int(np.prod(dims, dtype=object)), f"an array of shape {dims}", self.where, max(1, itemsize))

    def _ndarray(self, shape=(), dtype=float, *args, **kwargs):
        """``numpy.ndarray(shape, dtype, ...)``, allocated only after the shape passes the cap."""
        self._capped(shape, dtype)
        return np.ndarray(shape, dtype, *args, **kwargs)

    def _reconstruct(self, real, subtype, shape, dtype):
        """numpy's own pickles start an array as ``_reconstruct(ndarray, shape, dtype)`` (then fill it from the
        pickle's bytes): a plain ndarray only, its shape capped."""
        if subtype is not self.checked_ndarray:
            raise pickle.UnpicklingError("refusing an ndarray subclass")
        self._capped(shape, np.uint8)  # the dtype here is a placeholder ('b'); the filled array is checked below
        return real(np.ndarray, shape, dtype)


def safe_unpickle(data: bytes, where: str = "file"):
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), where, encoding="latin1").load()
    except OgdashError:  # an array over the element cap, from its declared shape
        raise
    except pickle.UnpicklingError as e:
        raise OgdashError(f"{where}: holds objects other than arrays ({e}); ogdash will not unpickle it, "
                          "so use the original CIFAR files.") from e
    except (Exception, SystemExit) as e:  # a crafted file must not stop the app either
        raise OgdashError(f"{where}: is not a readable CIFAR batch ({type(e).__name__}); "
                          "download the original CIFAR files again.") from e


def _cifar_batch(path: Path, label_key: str, read=Path.read_bytes):
    d = safe_unpickle(read(path), str(path))
    if not isinstance(d, dict):
        raise OgdashError(f"{path}: is not a CIFAR batch (expected a dict); use the original CIFAR files.")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise OgdashError(f"{path}: lacks 'data' or '{label_key}'; use the original CIFAR files.")
    data, labels = d["data"], d[label_key]
    # an array of rows of 3,072 bytes, as CIFAR ships it (a list could repeat one row a million times by reference)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise OgdashError(f"{path}: 'data' is not an array of 32x32 colour images (rows of 3,072 values); use the "
                          "original CIFAR files.")
    check_elements(data.size, f"an array of shape {data.shape}", path)  # filled from the file's own bytes
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data) or \
            any(isinstance(v, (list, tuple, dict, np.ndarray)) for v in labels):
        raise OgdashError(f"{path}: '{label_key}' is not one label per image; use the original CIFAR files.")
    return data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar(root, noisy_labels=None, noise_key: str | None = None, within=None) -> Splits:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) from a local folder.

    ``noisy_labels``: optional CIFAR-N file (``.pt`` as released, or ``.npz``) whose
    ``noise_key`` array (e.g. 'worse_label', 'aggre_label', 'random_label1',
    'noisy_label') becomes the given training labels; the original labels become
    the true labels. ``within``: a folder every file read must resolve under (symlinks followed).
    """
    root = Path(root)

    def read(path: Path) -> bytes:
        return (resolve_under(within, path) if within is not None else path).read_bytes()

    c10, c100 = root / "cifar-10-batches-py", root / "cifar-100-python"
    base = root if (root / "data_batch_1").exists() or (root / "train").exists() else (c10 if c10.exists() else c100)
    if (base / "data_batch_1").exists():
        parts = [_cifar_batch(base / f"data_batch_{i}", "labels", read) for i in range(1, 6)]
        Xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        Xte, yte = _cifar_batch(base / "test_batch", "labels", read)
        meta = safe_unpickle(read(base / "batches.meta"), "batches.meta") if (base / "batches.meta").exists() else {}
        names_key = "label_names"
        name = "cifar10"
    elif (base / "train").exists():
        Xtr, ytr = _cifar_batch(base / "train", "fine_labels", read)
        Xte, yte = _cifar_batch(base / "test", "fine_labels", read)
        meta = safe_unpickle(read(base / "meta"), "meta") if (base / "meta").exists() else {}
        names_key = "fine_label_names"
        name = "cifar100"
    else:
        raise OgdashError(f"{root}: holds no CIFAR data; give the folder that holds cifar-10-batches-py/ "
                          "or cifar-100-python/.")
    meta = {k.decode() if isinstance(k, bytes) else k: v for k, v in (meta or {}).items()}
    k = int(max(ytr.max(), yte.max())) + 1
    names = meta.get(names_key)
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names is not None else tuple(map(str, range(k)))
    y_given, y_true = ytr, None
    if noisy_labels is not None:
        y_given = load_cifar_n(resolve_under(within, noisy_labels) if within is not None else noisy_labels,
                               noise_key, len(ytr), len(classes))
        y_true = ytr
    train = make_dataset(f"{name}/train", Xtr.astype(np.float32) / 255.0, y_given, classes, y_true=y_true)
    test = make_dataset(f"{name}/test", Xte.astype(np.float32) / 255.0, yte, classes, y_true=yte)
    return Splits(train, test)


def load_cifar_n(path, key: str | None, n: int, n_classes: int) -> np.ndarray:
    """One label array from a CIFAR-N file, checked against the training set size and classes."""
    path = Path(path)
    if not path.is_file():
        raise OgdashError(f"noisy-label file not found: {path}; check the path "
                          "(relative paths start at the data root).")
    if path.suffix == ".npz":
        check_npz(path)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        import torch

        try:
            with torch.serialization.safe_globals(_numpy_globals()):
                arrays = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise OgdashError(f"{path.name}: cannot be loaded safely ({type(e).__name__}); convert it to .npz.") from e
    if not isinstance(arrays, dict):
        raise OgdashError(f"{path.name}: expected a dict of label arrays; "
                          "give the CIFAR-N file as released or an .npz.")
    choices = [k for k, v in arrays.items() if np.asarray(v).shape == (n,)]
    key = key or next((k for k in ("worse_label", "noisy_label", "aggre_label", "random_label1") if k in choices), None)
    if key not in choices:
        raise OgdashError(f"{path.name}: no label array {key!r} of length {n}; choose one of {choices}.")
    y = np.asarray(arrays[key]).astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise OgdashError(f"{path.name}: labels in {key!r} fall outside 0..{n_classes - 1}; "
                          "check that the file matches this CIFAR version.")
    return y


def _numpy_globals():
    import numpy as np

    out = [np.ndarray, np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            m = __import__(mod, fromlist=["_reconstruct"])
            out.append(m._reconstruct)
            break
        except (ImportError, AttributeError):
            continue
    out += [type(np.dtype(t)) for t in ("int64", "int32", "uint8", "float32", "float64")]
    return out

"""The catalogue of bad inputs (issue #7): one table, run through the library, the CLI and the pages.

Annotators point ogdash at messy folders, half-finished checkpoints and shared machines. Every
row of ``CASES`` below is one bad input. For each:

- **library**: the call the library makes on that input raises ``OgdashError`` with a one-line
  message that names the problem and says what to do (or, for the few inputs that are handled
  without an error, the stated outcome holds: a skipped file, a recomputed cache entry);
- **CLI** (where the CLI takes that input): ``python -m ogdash scan`` exits 2 with one
  ``error: ...`` line on stderr and no traceback;
- **page** (where a page takes that input): under AppTest the page shows the message with
  ``st.error``, raises no exception, keeps the data or model that was active before, and stays
  usable: loading good files afterwards works.

The real-browser suite (``tests/e2e``) repeats the upload cases through a real file chooser.
The decision-store and cache guarantees live in ``tests/test_review.py`` and
``tests/test_cache.py``; the section at the end adds what only the app can show (a restart and
a change of the cache directory keep every decision). ``test_catalogue_covers_the_issue``
checks that every bullet of the issue has a case and prints the count.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard.memo import stamp
from dashboard.nav import ROOT
from dashboard.schema import allowed_modules, link_json
from dashboard.state import check_upload_size
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data import DataSpec, Splits, load_file, load_splits, resolve_under
from ogdash.data.folders import load_cifar, load_cifar_n, load_image_folder, non_image_files
from ogdash.detect.flags import budget_count
from ogdash.models import ModelSpec
from ogdash.models.train import check_fits
from ogdash.models.weights import load_weights
from ogdash.models.user import load_factory
from ogdash.models.zoo import build_model
from ogdash.models.weights import torchvision_model
from ogdash.pipeline import ScanSettings, gradients, scan, train_model
from ogdash.data.prompt_files import load_prompt_file
from ogdash.models.llm import load_language_model
from ogdash.review import DecisionStore

ARCH = "shufflenet_v2_x0_5"  # a small torchvision architecture: checkpoints of a few MB
MAX_MESSAGE = 400  # characters; paths in messages are long under pytest's tmp folders
PWNED = "pwned_marker"  # a pickle that carries code would create this file if it ever ran
JUNK_STORE = b"someone's notes, not a database\n" * 100  # a "decision store" that is not one


# ------------------------------------------------------------------ the inputs, written once under a data root

class Payload:
    """A pickle that runs a shell command when loaded: ogdash must refuse it, never run it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _savez(path: Path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def _image_folder(root: Path, classes=("cat", "dog"), n=3, size=10):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "RGB").save(root / c / f"{i}.png")
    return root


def _fake_cifar10(root: Path, n=20):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (base / name).write_bytes(pickle.dumps(batch))
    return root


def build_data_root(base: Path) -> Path:
    """Every bad input of the catalogue (and a few good ones) under ``base/root``; ``base/outside`` is out of it."""
    root, outside = base / "root", base / "outside"
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2)) + 2.0 * (np.arange(40) % 2)[:, None], np.arange(40) % 2
    _savez(root / "good_train.npz", X=X, y=y)
    _savez(root / "good_test.npz", X=X[:20] + 0.1, y=y[:20])
    _savez(root / "other_train.npz", X=X[:30], y=y[:30])
    _savez(outside / "secret.npz", X=X, y=y)
    os.symlink(outside, root / "escape")  # a symlink inside the root that points out of it

    f = root / "files"
    _savez(f / "missing_y.npz", X=X)
    f.joinpath("missing_label.csv").write_text("f1,f2,target\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(X, y)))
    _savez(f / "length_mismatch.npz", X=X, y=y[:39])
    f.joinpath("string_labels.csv").write_text("f1,f2,label\n" + "".join(
        f"{a},{b},{'cat' if c else 'dog'}\n" for (a, b), c in zip(X, y)))
    _savez(f / "float_labels.npz", X=X, y=np.where(np.arange(40) == 7, 0.5, y))
    _savez(f / "negative_labels.npz", X=X, y=np.where(np.arange(40) == 3, -1, y))
    _savez(f / "out_of_range.npz", X=X, y=np.where(np.arange(40) == 5, 2, y), classes=np.array(["cat", "dog"]))
    _savez(f / "nan_features.npz", X=np.where(np.arange(40)[:, None] == 9, np.nan, X), y=y)
    _savez(f / "inf_features.npz", X=np.where(np.arange(40)[:, None] == 9, np.inf, X), y=y)
    _savez(f / "single_class.npz", X=X, y=np.zeros(40, int))
    _savez(f / "zero_samples.npz", X=np.zeros((0, 2)), y=np.zeros(0, int))
    f.joinpath("zero_samples.csv").write_text("f1,f2,label\n")
    _savez(f / "unseen_class_test.npz", X=X[:20], y=np.arange(20) % 3)
    f.joinpath("latin1.csv").write_bytes(("f1,f2,label,note\n" + "".join(
        f"{a},{b},{c},caf\xe9\n" for (a, b), c in zip(X, y))).encode("latin-1"))
    f.joinpath("not_a_zip.npz").write_bytes(b"PK\x03\x04 half of a zip file")
    _savez(f / "object_array.npz", X=np.array([{"a": 1}] * 40, dtype=object), y=y)
    # finite features near float32's maximum: valid data, but the first forward pass overflows
    _savez(f / "huge_features.npz", X=((0.99 + 0.01 * rng.random((40, 16))) * 3.4e38).astype(np.float32), y=y)
    _savez(f / "huge_test.npz", X=np.ones((10, 16), np.float32), y=np.arange(10) % 2)
    # small files that stand for huge arrays (issue 20, finding 4)
    np.savez_compressed(f / "bomb.npz", X=np.zeros((8_000, 6_500), np.uint8), y=np.arange(8_000) % 2)
    f.joinpath("wide.csv").write_text(",".join(f"f{j}" for j in range(10_001)) + ",label\n"
                                      + "".join("0," * 10_001 + f"{c}\n" for c in (0, 1)))

    im = root / "images"
    png = _image_folder(im / "truncated_png")
    whole = (png / "dog" / "0.png").read_bytes()
    (png / "dog" / "broken.png").write_bytes(whole[: len(whole) // 2])
    _image_folder(im / "disguised").joinpath("cat", "notes.jpg").write_text("meeting notes, not a photo")
    _image_folder(im / "with_text_file").joinpath("cat", "notes.txt").write_text("labelling guide")
    for c in ("cat", "dog"):  # grey images: a colour model's checkpoint cannot take them
        (im / "grey" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (10, 10), dtype=np.uint8), "L").save(im / "grey" / c / f"{i}.png")
    (im / "empty").mkdir(parents=True)
    (_image_folder(im / "empty_class") / "zebra").mkdir()

    ck = root / "ckpt"
    ck.mkdir()
    state = torchvision_model(ARCH, 2).state_dict()
    torch.save(state, ck / "valid.pt")
    torch.save(build_model(ModelSpec("mlp"), (2,), 2).state_dict(), ck / "other_arch.pt")
    torch.save({k: v for k, v in state.items() if k != "fc.bias"}, ck / "missing_keys.pt")
    torch.save({**state, "fc.weight": Payload(base / PWNED)}, ck / "code.pt")
    (ck / "code_raw.pt").write_bytes(pickle.dumps({"fc.weight": Payload(base / PWNED)}))
    whole = (ck / "valid.pt").read_bytes()
    (ck / "truncated.pt").write_bytes(whole[: len(whole) // 3])
    torch.save({k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in state.items()},
               ck / "nan_weights.pt")

    evil = _fake_cifar10(root / "cifar_code")
    (evil / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({b"data": Payload(base / PWNED),
                                                                               b"labels": [0]}))
    _fake_cifar10(root / "cifar_ok")
    # symlinks below the root that leave it (issue 20, finding 8): a class folder, a CIFAR folder
    _image_folder(outside / "dogs", classes=("dog",))
    linked = _image_folder(im / "linked_class", classes=("cat",))
    os.symlink(outside / "dogs" / "dog", linked / "dog")
    _fake_cifar10(outside / "cifar")
    (root / "cifar_linked").mkdir()
    os.symlink(outside / "cifar" / "cifar-10-batches-py", root / "cifar_linked" / "cifar-10-batches-py")
    torch.save({"worse_label": Payload(base / PWNED)}, root / "cifar_n_code.pt")

    # tables of texts (issue #28)
    t = root / "texts"
    t.mkdir()
    words = ["a fine film", "a dull film", "great fun", "tedious and flat", "warm and witty", "a bore"]
    rows = [(f"{words[i % 6]} number {i}", "pos" if i % 6 in (0, 2, 4) else "neg") for i in range(40)]
    lines = lambda rows: "text,label\n" + "".join(f"{a},{b}\n" for a, b in rows)  # noqa: E731
    t.joinpath("train.csv").write_text(lines(rows))
    t.joinpath("test.csv").write_text(lines(rows[:20]))
    t.joinpath("empty_text.csv").write_text(lines([("  " if i == 5 else a, b) for i, (a, b) in enumerate(rows)]))
    t.joinpath("latin1.csv").write_bytes(lines([(a + " caf\xe9", b) for a, b in rows]).encode("latin-1"))
    t.joinpath("no_text_column.tsv").write_text("review\tlabel\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    t.joinpath("unseen_names_test.csv").write_text(lines([(a, "meh" if i == 3 else b) for i, (a, b)
                                                          in enumerate(rows[:20])]))
    t.joinpath("long.csv").write_text(lines([(a + " and on" * (60 if i == 7 else 0), b) for i, (a, b)
                                             in enumerate(rows)]))
    (root / "decisions_junk.sqlite").write_bytes(JUNK_STORE)
    _issue_25_inputs(root, outside, base)
    _llm_inputs(root / "llm")
    return root


def _hf(path: Path, **columns) -> Path:
    import datasets

    datasets.Dataset.from_dict(columns).save_to_disk(str(path))
    return path


def _issue_25_inputs(root: Path, outside: Path, base: Path) -> None:
    """The inputs of the second security review (issue 25)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = root / "files"
    n = 26_000_000  # 52 million values from a file of a few MB: over the default cap, from the footer alone
    pq.write_table(pa.table({"f": np.zeros(n, np.int8), "label": np.tile(np.array([0, 1], np.int8), n // 2)}),
                   f / "parquet_bomb.parquet")
    f.joinpath("cr_only.csv").write_bytes(b"f1,label\r" + b"".join(b"%d,%d\r" % (i, i % 2) for i in range(600)))
    cells = []
    for i in range(4):
        buf = io.BytesIO()
        Image.new("L", (40, 40), 50 * i).save(buf, "PNG")
        cells.append({"bytes": buf.getvalue(), "path": None})
    pq.write_table(pa.table({"image": cells, "label": [0, 1, 0, 1]}), f / "images_table.parquet")
    secret = _hf(outside / "hf_secret", f=[7.0] * 6, label=[0, 1] * 3)
    escape = _hf(f / "hf_escape", f=[1.0] * 6, label=[0, 1] * 3)
    state = json.loads((escape / "state.json").read_text())
    state["_data_files"] = [{"filename": f"../../../outside/hf_secret/{next(secret.glob('*.arrow')).name}"}]
    (escape / "state.json").write_text(json.dumps(state))
    odd = _hf(f / "hf_dtype", f=[1.0] * 6, label=[0, 1] * 3)
    info = json.loads((odd / "dataset_info.json").read_text())
    info["features"]["f"] = {"dtype": "show_versions", "_type": "Value"}  # datasets would call pyarrow.show_versions()
    (odd / "dataset_info.json").write_text(json.dumps(info))
    batch = (b"(dp0\nS'data'\np1\ncnumpy\nndarray\np2\n((I2\nI3072\nttp3\nRp4\nsS'labels'\np5\n(lp6\ns.")
    declared = root / "cifar_declared" / "cifar-10-batches-py"  # each batch declares an array, holds no data
    declared.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (declared / name).write_bytes(batch)
    (root / "examples").mkdir()  # a namespace package under the data root, as a link once could name
    (root / "examples" / "pwn.py").write_text(f"open({str(base / PWNED)!r}, 'w').close()\ndef net():\n    pass\n")
    f.joinpath("relabel_999.csv").write_text("dataset,sample_id,decision,new_label,reviewer,timestamp,note\n"
                                             "x,0,keep,,ann,2020-01-01T00:00:00,\nx,1,relabel,999,ann,2020-01-01,\n")
    looped = _image_folder(root / "images" / "looped")
    os.symlink(looped, looped / "cat" / "again")  # a link back up: a walk that follows it never ends


def _llm_inputs(llm_root: Path) -> None:
    """Fine-tuning files, a model folder and an adapter for the LLM cases (issue #29)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from ogdash.data.prompt_files import write_jsonl
    from ogdash.data.prompts import make_instruction_set
    from ogdash.models.llm import tiny_model

    s = make_instruction_set(per_task=4, test_per_task=1, wrong_rate=0.25, seed=0)
    write_jsonl(list(s.train), llm_root / "good_train.jsonl")
    write_jsonl(list(s.test), llm_root / "good_test.jsonl")
    good = '{"prompt": "2+2 ->", "completion": " 4"}\n'
    (llm_root / "malformed.jsonl").write_text(good * 2 + '{"prompt": "3+3 ->", "completion": " 6"\n' + good)
    (llm_root / "missing_field.jsonl").write_text(good + '{"prompt": "3+3 ->"}\n' + good)
    (llm_root / "empty_completion.jsonl").write_text(good * 3 + '{"prompt": "3+3 ->", "completion": ""}\n')
    short = [{"prompt": f"{a}+{a} ->", "completion": f" {2 * a}"} for a in range(12)]
    write_jsonl(short[:2] + [{"prompt": "Tell me a story. " * 40 + "->", "completion": " Once."}] + short[2:],
                llm_root / "long.jsonl")
    model, _ = tiny_model(0)
    model.save_pretrained(llm_root / "model_no_tokenizer")  # safetensors weights and config, no tokenizer
    cfg = LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2)
    get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(
        llm_root / "other_adapter")  # a LoRA adapter trained for another (smaller) model


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_data_root(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(autouse=True)
def _nothing_ran_nothing_overwritten(request):
    """After every test: no pickle in the catalogue ever ran its payload, and the refused store is untouched."""
    yield
    if "root" in request.fixturenames:
        root = request.getfixturevalue("root")
        assert not (root.parent / PWNED).exists(), "a pickle's code was executed"
        assert (root / "decisions_junk.sqlite").read_bytes() == JUNK_STORE


# ------------------------------------------------------------------ how the library, the CLI and the pages take them

def splits(root, train, test="good_test.npz", val=None):
    return load_splits(root / train, root / test, None if val is None else root / val)


def weights(root, name, arch=ARCH):
    """What the Data page does for 'torchvision architecture + your weights', for the good files' data."""
    data = splits(root, "good_train.npz").train
    model = load_weights(torchvision_model(arch, data.n_classes), resolve_under(root, f"ckpt/{name}"))
    check_fits(model, data.X, data.n_classes, f"{arch} with {name}")
    return model


def cli_args(train, test="good_test.npz", *extra):
    return ["scan", "--train", train, "--test", test, "--model", "mlp", "--epochs", "2", "--no-cache", *extra]


def _find(widgets, label):
    return next(w for w in widgets if w.label == label)


def click(at, label):
    _find(at.button, label).click().run()
    return at


def use_files(at, train, test="good_test.npz"):
    _find(at.text_input, "…or training path").set_value(train)
    _find(at.text_input, "…or test path").set_value(test)
    return click(at, "Use these files")


def texts(root, train, test="texts/test.csv"):
    """What the library does for a table of texts (the tiny hashing encoder: no model to load)."""
    return DataSpec.from_paths(root / train, root / test, encoder="hashing").load()


def use_texts(at, train, test="texts/test.csv"):
    """The Data page's files form with a table of texts, embedded by TF-IDF (fast, nothing to load)."""
    _find(at.selectbox, "Encoder (tables of texts)").set_value("tfidf")
    return use_files(at, train, test)


def bad_text_file(title, train, needle, test="texts/test.csv", **kw):
    """A bad table of texts, given to the library, the CLI and the Data page alike."""
    return Case(title, B_TEXT, lambda r: texts(r, train, test), needle,
                cli=cli_args(train, test, "--encoder", "hashing"), page=lambda at: use_texts(at, train, test), **kw)


def _long_texts(root):
    """Not an error: a text over the length cap is cut, and the splits' notes say so."""
    splits = _with_env("OGDASH_MAX_TEXT_CHARS", "100", lambda r: texts(r, "texts/long.csv"))(root)
    assert max(map(len, splits.train.texts + splits.test.texts)) == 100
    assert any("long.csv: 1 text(s) longer than 100 characters were cut" in n and "line 9" in n for n in splits.notes)


def bad_train_file(title, name, needle, **kw):
    """A bad training file, given to the library, the CLI and the Data page alike."""
    path = f"files/{name}"
    return Case(title, B_DATA, lambda r: splits(r, path), needle, cli=cli_args(path),
                page=lambda at: use_files(at, path), **kw)


def use_folder(at, path):
    _find(at.text_input, "Training folder (under the data root)").set_value(path)
    return click(at, "Use this folder")


def use_cifar(at, path, noisy=""):
    _find(at.text_input, "CIFAR folder (under the data root)").set_value(path)
    _find(at.text_input, "CIFAR-N label file (optional)").set_value(noisy)
    return click(at, "Use CIFAR")


# torchvision models are offered for images only: checkpoint cases open a small image folder by link
IMAGE_LINK = {"data": {"source": "imagefolder", "path": "images/with_text_file", "size": 8}}


def load_model(at, name, arch=ARCH):
    _find(at.selectbox, "Architecture").set_value("torchvision").run()
    _find(at.text_input, "Architecture name").set_value(arch)
    _find(at.text_input, "Weights file (.safetensors or .pt, under the data root)").set_value(f"ckpt/{name}")
    return click(at, "Load model")


def use_factory(at, arch, weights="ckpt/valid.pt"):
    """The Data page's 'Your own network' form: a factory and its weights, loaded as they are."""
    _find(at.selectbox, "Architecture").set_value("custom").run()
    _find(at.text_input, "Factory (package.module:factory)").set_value(arch)
    _find(at.text_input, "Weights file (.safetensors or .pt, under the data root)").set_value(weights)
    return click(at, "Load model")


def upload_file(at, root, name):
    """Upload a file of the data root as the training set."""
    at.file_uploader[0].set_value((Path(name).name, (root / name).read_bytes(), "application/octet-stream"))
    at.run()
    return click(at, "Use these files")


def import_decisions_file(at, root, name):
    """On the Review page (after training), import a decisions file through 'Import decisions (admins)'."""
    train_then_review(at)
    at.file_uploader(key="import_decisions").set_value((Path(name).name, (root / name).read_bytes(), "text/csv"))
    at.run()
    return click(at, "Import")


def decide_as(at, name):
    """On the Review page (after training), type a reviewer name and remove the first card (its button is disabled,
    with the reason on the card, when the name is refused: then nothing can be clicked)."""
    train_then_review(at)
    _find(at.text_input, "Reviewer name").set_value(name).run()
    remove = next(b for b in at.button if b.key and b.key.startswith("remove_"))
    if not remove.disabled:
        remove.click().run()
    return at


def upload(at, name, size):
    """Upload a valid .npz of about ``size`` bytes as both the training and the test set."""
    buf = io.BytesIO()
    np.savez(buf, X=np.zeros((size // 8, 1)), y=np.arange(size // 8) % 2)
    for uploader in at.file_uploader[:2]:
        uploader.set_value((name, buf.getvalue(), "application/octet-stream"))
    at.run()
    return click(at, "Use these files")


def train_then_review(at):
    """Train on the good files, extract gradients, open the review page (where decisions are stored)."""
    click(at, "Train model")
    at.switch_page("views/gradient_space.py").run()
    click(at, "Extract gradients")
    at.switch_page("views/review.py").run()
    return at


# ------------------------------------------------------------------ the catalogue

@dataclass(frozen=True)
class Case:
    """One bad input.

    library: the library's call on it; raises OgdashError whose message matches ``needle``
             (a regex), unless ``needle`` is None: then it returns normally and checks the outcome.
    cli:     arguments for ``python -m ogdash`` (paths relative to the root), or None where the CLI
             takes no such input (folders, checkpoints, UI paths, uploads).
    page:    drives an AppTest opened on the Data page to the input, or None where no page takes it
             (budgets: the page's slider cannot go out of range; cache entries).
    keeps:   what the page must still hold after the error: 'data' (the good files), 'model'
             (the model choice), or None.
    page_env / page_query: environment variables and URL query parameters for the page test (a query value
             that is a string goes into the address as it is).
    also:    other tests that exercise the same input.
    shows:   with ``needle`` None, what the page shows afterwards (the default data, or the input itself).
    """

    name: str
    bullet: str
    library: Callable
    needle: str | None
    cli: list | None = None
    page: Callable | None = None
    keeps: str | None = "data"
    page_env: dict = field(default_factory=dict)
    page_query: dict | None = None
    also: str = ""
    shows: str = "digits"  # what the page shows when it handles the input without an error


B_FILES, B_DATA, B_SPLITS, B_BUDGET, B_SIZE = "bad files", "bad arrays", "bad splits", "bad budget", "too large"
B_CKPT, B_PATH, B_UPLOAD, B_TRAIN, B_CACHE, B_STORE = ("bad checkpoint", "path escape", "upload", "training",
                                                       "cache", "decision store")
B_CODE, B_LINK = "code a link names", "bad link"
B_TEXT = "bad texts"


def _cache_entry_damaged(root, how):
    """Damage a cached gradients entry; the next call detects it, recomputes, and returns the same gradients."""
    cache = DiskCache(root.parent / f"cache_{how}")
    s = splits(root, "good_train.npz")
    model = train_model(ModelSpec("mlp", epochs=5), s.train, cache=cache)
    expected = np.array(gradients(model, s.train, cache=cache).matrix())  # a copy: cache arrays may be memory-mapped
    (entry,) = (cache.root / "gradients").iterdir()
    target = next(p for p in sorted(entry.glob("*.npy")) if p.stat().st_size > 256)
    data = bytearray(target.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:  # same length, flipped bytes: only the checksum can tell
        data[-16:] = bytes(255 - b for b in data[-16:])
    # a new file in its place (not an in-place write: a live memory map of the old one must not see it change)
    target.with_suffix(".tmp").write_bytes(bytes(data))
    os.replace(target.with_suffix(".tmp"), target)
    assert cache.load("gradients", entry.name) is None  # detected: never loaded
    again = gradients(model, s.train, cache=cache)  # recomputed
    np.testing.assert_array_equal(np.array(again.matrix()), expected)
    assert cache.load("gradients", entry.name) is not None  # and stored intact again


def _skipped_text_file(root):
    ds = load_image_folder(root / "images/with_text_file", size=8)
    assert ds.n == 6  # the text file is not a sample
    assert [p.name for p in non_image_files(root / "images/with_text_file")] == ["notes.txt"]


def _ocsvm_without_validation(root):
    """Not an error: OneClassSVM fits on the training gradients, every sample is scored, and the scan says so."""
    s = splits(root, "good_train.npz")
    res = scan(Splits(s.train, s.test, None), ModelSpec("mlp", epochs=2), ScanSettings(detector="ocsvm"))
    assert len(res.scores) == s.train.n and np.isfinite(res.scores).all()
    assert res.notes and "fitted on the training gradients themselves" in res.notes[0]


def _huge_training(root):
    # unscaled: standardising the columns (the default since issue 30) keeps these values from diverging
    train_model(ModelSpec("mlp", epochs=3, scale=False),
                splits(root, "files/huge_features.npz", "files/huge_test.npz").train)


def _unscaled(at):
    _find(at.checkbox, "Scale feature columns").uncheck().run()
    return at


def _capped(call, cap: int = 1000):
    """``call`` run with OGDASH_MAX_ELEMENTS set to ``cap`` (as the page test sets it with page_env)."""
    return _with_env("OGDASH_MAX_ELEMENTS", str(cap), call)


def _with_env(name: str, value: str, call):
    """``call`` run with the environment variable ``name`` set to ``value``."""
    def run(root):
        before = os.environ.get(name)
        os.environ[name] = value
        try:
            return call(root)
        finally:
            if before is None:
                del os.environ[name]
            else:
                os.environ[name] = before
    return run


CASES = [
    # --- images and folders
    Case("corrupt image file (a truncated PNG)", B_FILES,
         lambda r: load_image_folder(r / "images/truncated_png"), r"broken\.png.*not a readable image.*fix or remove",
         page=lambda at: use_folder(at, "images/truncated_png"), also="test_folders.py::test_image_folder_bad_inputs"),
    Case("non-image file with an image name (text saved as .jpg)", B_FILES,
         lambda r: load_image_folder(r / "images/disguised"), r"notes\.jpg.*not a readable image",
         page=lambda at: use_folder(at, "images/disguised")),
    Case("non-image file among the images (notes.txt): skipped, as torchvision does, and the page says so", B_FILES,
         _skipped_text_file, None, page=lambda at: use_folder(at, "images/with_text_file"), keeps=None,
         also="test_folders.py::test_image_folder_layout"),
    Case("empty folder", B_FILES, lambda r: load_image_folder(r / "images/empty"), r"no class sub-folders",
         page=lambda at: use_folder(at, "images/empty")),
    Case("class folder with no images", B_FILES, lambda r: load_image_folder(r / "images/empty_class"),
         r"zebra.*holds no images", page=lambda at: use_folder(at, "images/empty_class")),
    Case("image folder that does not exist", B_FILES, lambda r: load_image_folder(r / "images/nope"),
         r"not found", page=lambda at: use_folder(at, "images/nope")),
    # --- .npz / .csv contents
    bad_train_file(".npz without the y array", "missing_y.npz", r"missing array 'y'",
                   also="test_data.py::test_bad_files_give_one_clear_error"),
    bad_train_file(".csv without the label column", "missing_label.csv", r"missing the 'label' column"),
    bad_train_file("X and y of different lengths", "length_mismatch.npz", r"40 rows but y has 39"),
    # where the bad labels are, never what they are (issue 25, item 11): the file may hold anything
    bad_train_file("labels that are strings", "string_labels.csv",
                   r"integer class indices 0\.\.K-1; 40 of 40 are not \(the first at line 2\)"),
    bad_train_file("labels that are floats", "float_labels.npz",
                   r"integer class indices 0\.\.K-1; 1 of 40 are not \(the first at index 7\)"),
    bad_train_file("negative labels", "negative_labels.npz", r"non-negative.*found -1"),
    bad_train_file("labels out of range of the listed classes", "out_of_range.npz",
                   r"labels must be in 0\.\.1.*found 2"),
    bad_train_file("NaN features", "nan_features.npz", r"NaN or infinite",
                   also="test_pipeline.py::test_cli_bad_file_in_a_real_process"),
    bad_train_file("infinite features", "inf_features.npz", r"NaN or infinite"),
    bad_train_file("a single class", "single_class.npz", r"single class",
                   also="test_data.py::test_splits_validate_against_training"),
    bad_train_file("zero samples (.npz)", "zero_samples.npz", r"zero samples"),
    bad_train_file("zero samples (.csv with only a header)", "zero_samples.csv", r"zero samples"),
    bad_train_file("CSV in a non-UTF-8 encoding (Latin-1)", "latin1.csv", r"not UTF-8"),
    bad_train_file(".npz that is not a zip (a half-copied file)", "not_a_zip.npz", r"not a readable \.npz"),
    bad_train_file(".npz holding pickled objects (refused, never unpickled)", "object_array.npz",
                   r"refuses to unpickle"),
    bad_train_file("file that does not exist", "nope.npz", r"file not found"),
    # --- inputs that explode in memory (issue 20, finding 4; the full-size probes are in test_hardening.py)
    bad_train_file(".npz that decompresses beyond the element limit", "bomb.npz",
                   r"52,000,000 values .*over the limit of 50,000,000 \(OGDASH_MAX_ELEMENTS\)"),
    bad_train_file(".csv with more columns than the limit", "wide.csv",
                   r"10,002 columns, over the limit of 10,000 \(OGDASH_MAX_COLUMNS\)"),
    Case("image folder whose images x size exceed the element limit", B_SIZE,
         _capped(lambda r: load_image_folder(r / "images/grey", 32)),
         r"10 images of 1 channel\(s\) at 32x32 would hold 10,240 values.*OGDASH_MAX_ELEMENTS",
         page=lambda at: use_folder(at, "images/grey"), page_env={"OGDASH_MAX_ELEMENTS": "1000"}),
    # --- tables of texts (issue #28)
    bad_text_file("table of texts with an empty text", "texts/empty_text.csv",
                  r"1 empty text\(s\) in column 'text' \(the first at line 7\); fill them in or drop those rows",
                  also="test_text_tables.py::test_bad_text_tables_say_what_is_wrong_in_one_line"),
    bad_text_file("table of texts with non-UTF-8 bytes (Latin-1)", "texts/latin1.csv", r"not UTF-8.*re-save"),
    bad_text_file("table of texts missing its text column", "texts/no_text_column.tsv",
                  r"no text column 'text' \(its columns: 'review', 'label'\); name the column of texts with "
                  r"--text-column"),
    bad_text_file("texts whose test file has a label name unseen in training", "texts/train.csv",
                  r"'meh' \(at line 5\) is not a class of the training file \(neg, pos\)",
                  test="texts/unseen_names_test.csv"),
    Case("texts over the length cap: cut to it, and the data's notes say so", B_TEXT, _long_texts, None,
         page=lambda at: use_texts(at, "texts/long.csv"), keeps=None, page_env={"OGDASH_MAX_TEXT_CHARS": "100"},
         also="test_text_tables.py::test_texts_over_the_length_cap_are_cut_with_a_note"),
    # --- train / test / validation
    Case("test set with a class unseen in training", B_SPLITS,
         lambda r: splits(r, "good_train.npz", "files/unseen_class_test.npz"), r"class 2, unseen in training",
         cli=cli_args("good_train.npz", "files/unseen_class_test.npz"),
         page=lambda at: use_files(at, "good_train.npz", "files/unseen_class_test.npz")),
    Case("OneClassSVM with no validation set (fitted on the training gradients, said in a note)", B_SPLITS,
         _ocsvm_without_validation, None, also="test_detectors.py::test_ocsvm_uses_validation_inliers"),
    Case("OneClassSVM with an empty validation file", B_SPLITS,
         lambda r: splits(r, "good_train.npz", val="files/zero_samples.npz"), r"zero samples",
         cli=cli_args("good_train.npz", "good_test.npz", "--detector", "ocsvm", "--val", "files/zero_samples.npz"),
         page=lambda at: at, keeps=None,
         page_query={"data": {"source": "files", "train": "good_train.npz", "test": "good_test.npz",
                              "val": "files/zero_samples.npz"}}),
    # --- budgets
    Case("budget of 0", B_BUDGET, lambda r: budget_count(0, 40), r"budget must be positive",
         cli=cli_args("good_train.npz", "good_test.npz", "--budget", "0"),
         also="test_detectors.py::test_budget_fraction_and_count, test_pipeline.py::test_cli_bad_input_is_one_line"),
    Case("negative budget", B_BUDGET, lambda r: budget_count(-0.1, 40), r"budget must be positive",
         cli=cli_args("good_train.npz", "good_test.npz", "--budget=-0.1")),
    Case("budget above 1 as a fraction (1.5)", B_BUDGET, lambda r: budget_count(1.5, 40), r"count.*whole",
         cli=cli_args("good_train.npz", "good_test.npz", "--budget", "1.5")),
    Case("budget above n as a count", B_BUDGET, lambda r: budget_count(41, 40), r"more than the 40 training",
         cli=cli_args("good_train.npz", "good_test.npz", "--budget", "41")),
    Case("budget that is not a number", B_BUDGET, lambda r: budget_count(float("nan"), 40), r"budget must be a number",
         cli=cli_args("good_train.npz", "good_test.npz", "--budget", "lots")),
    # --- checkpoints
    Case("checkpoint for another architecture", B_CKPT, lambda r: weights(r, "other_arch.pt"),
         r"does not fit this architecture", page=lambda at: load_model(at, "other_arch.pt"), page_query=IMAGE_LINK, keeps="model",
         also="test_models.py::test_weights_roundtrip_and_refusals"),
    Case("checkpoint with missing keys", B_CKPT, lambda r: weights(r, "missing_keys.pt"),
         r"does not fit this architecture.*fc\.bias", page=lambda at: load_model(at, "missing_keys.pt"), page_query=IMAGE_LINK,
         keeps="model"),
    Case("checkpoint that is a pickle with code (torch.save)", B_CKPT, lambda r: weights(r, "code.pt"),
         r"cannot be loaded as weights", page=lambda at: load_model(at, "code.pt"), page_query=IMAGE_LINK, keeps="model",
         also="test_models.py::test_checkpoint_with_code_is_refused_not_executed"),
    Case("checkpoint that is a pickle with code (plain pickle)", B_CKPT, lambda r: weights(r, "code_raw.pt"),
         r"cannot be loaded as weights", page=lambda at: load_model(at, "code_raw.pt"), page_query=IMAGE_LINK, keeps="model"),
    Case("half-written checkpoint (truncated)", B_CKPT, lambda r: weights(r, "truncated.pt"),
         r"cannot be loaded as weights", page=lambda at: load_model(at, "truncated.pt"), page_query=IMAGE_LINK, keeps="model"),
    Case("checkpoint with NaN weights (from a diverged run)", B_CKPT, lambda r: weights(r, "nan_weights.pt"),
         r"NaN or infinite weights", page=lambda at: load_model(at, "nan_weights.pt"), page_query=IMAGE_LINK, keeps="model"),
    Case("checkpoint whose model does not take this data's inputs", B_CKPT, lambda r: weights(r, "valid.pt"),
         r"does not accept inputs of shape \((2,|1, 8, 8)\)", page=lambda at: load_model(at, "valid.pt"), keeps="model",
         page_query={"data": {"source": "imagefolder", "path": "images/grey", "size": 8}}),
    Case("CIFAR batch that is a pickle with code", B_CKPT, lambda r: load_cifar(r / "cifar_code"),
         r"will not unpickle", page=lambda at: use_cifar(at, "cifar_code"),
         also="test_folders.py::test_a_pickle_with_code_is_refused_not_run"),
    Case("CIFAR-N label file that is a pickle with code", B_CKPT,
         lambda r: load_cifar_n(r / "cifar_n_code.pt", None, 100, 10), r"cannot be loaded safely",
         page=lambda at: use_cifar(at, "cifar_ok", "cifar_n_code.pt")),
    # --- paths typed into the UI
    Case("path that escapes the data root with ../", B_PATH, lambda r: resolve_under(r, "../outside/secret.npz"),
         r"outside the data root", page=lambda at: use_files(at, "../outside/secret.npz"),
         also="test_data.py::test_paths_stay_under_the_data_root"),
    Case("absolute path outside the data root", B_PATH,
         lambda r: resolve_under(r, str(r.parent / "outside/secret.npz")), r"outside the data root",
         page=lambda at: use_files(at, str(Path(os.environ["OGDASH_DATA_ROOT"]).parent / "outside/secret.npz"))),
    Case("symlink inside the root that points out of it", B_PATH, lambda r: resolve_under(r, "escape/secret.npz"),
         r"outside the data root", page=lambda at: use_files(at, "escape/secret.npz")),
    Case("image folder path outside the data root", B_PATH, lambda r: resolve_under(r, "../outside"),
         r"outside the data root", page=lambda at: use_folder(at, "../outside")),
    Case("weights path outside the data root", B_PATH, lambda r: resolve_under(r, "/etc/passwd"),
         r"outside the data root", page=lambda at: load_model(at, "../../etc/passwd"), page_query=IMAGE_LINK, keeps="model"),
    Case("shared link (URL) whose paths escape the data root: ignored, the default data opens", B_PATH,
         lambda r: None, None, page=lambda at: at, keeps=None,
         page_query={"data": {"source": "files", "train": "../outside/secret.npz", "test": "good_test.npz"}}),
    Case("image class folder linked out of the data root", B_PATH,
         lambda r: load_image_folder(r / "images/linked_class", within=r), r"dog/0\.png: is outside the data root",
         page=lambda at: use_folder(at, "images/linked_class")),
    Case("CIFAR folder linked out of the data root", B_PATH, lambda r: load_cifar(r / "cifar_linked", within=r),
         r"data_batch_1: is outside the data root", page=lambda at: use_cifar(at, "cifar_linked")),
    # --- uploads
    Case("upload over the size limit", B_UPLOAD, lambda r: check_upload_size("big.npz", 3 * 2**20, 2),
         r"big\.npz: is [0-9.]+ MB, over the [0-9.]+ MB upload limit", page=lambda at: upload(at, "big.npz", 4096),
         page_env={"OGDASH_MAX_UPLOAD_MB": "0.001"}, also="tests/e2e/test_browser.py::test_upload_over_the_limit"),
    # --- training
    Case("training run whose loss becomes NaN", B_TRAIN, _huge_training, r"training diverged",
         cli=cli_args("files/huge_features.npz", "files/huge_test.npz", "--no-scale"),
         page=lambda at: click(_unscaled(use_files(at, "files/huge_features.npz", "files/huge_test.npz")),
                               "Train model"),
         keeps="model", also="test_models.py::test_training_that_diverges_says_so"),
    # --- issue 25: what the second security review found (the probes themselves are in test_hardening.py)
    bad_train_file("Parquet whose footer declares more values than the element limit", "parquet_bomb.parquet",
                   r"26,000,000 rows and 2 columns would hold 52,000,000 values .*OGDASH_MAX_ELEMENTS",
                   also="test_hardening.py::test_a_parquet_file_is_capped_from_its_footer"),
    Case("Parquet upload whose footer declares more values than the element limit", B_UPLOAD,
         lambda r: load_file(r / "files/parquet_bomb.parquet"), r"would hold 52,000,000 values",
         page=lambda at: upload_file(at, Path(os.environ["OGDASH_DATA_ROOT"]), "files/parquet_bomb.parquet")),
    Case("CSV with carriage returns only, beyond the element limit", B_SIZE,
         _capped(lambda r: load_file(r / "files/cr_only.csv")), r"a table of 2 columns would hold 1,200 values",
         page=lambda at: use_files(at, "files/cr_only.csv"), page_env={"OGDASH_MAX_ELEMENTS": "1000"},
         also="test_hardening.py::test_a_csv_with_carriage_returns_only_is_counted"),
    Case("table images whose headers exceed the element limit", B_SIZE,
         _capped(lambda r: load_file(r / "files/images_table.parquet")), r"4 images of 1 channel\(s\) at 40x40",
         page=lambda at: use_files(at, "files/images_table.parquet"), page_env={"OGDASH_MAX_ELEMENTS": "1000"},
         also="test_hardening.py::test_images_in_a_table_are_capped_from_their_headers"),
    Case("CIFAR batch declaring an array beyond the element limit", B_SIZE,
         _capped(lambda r: load_cifar(r / "cifar_declared")), r"an array of shape \(2, 3072\) would hold 6,144",
         page=lambda at: use_cifar(at, "cifar_declared"), page_env={"OGDASH_MAX_ELEMENTS": "1000"},
         also="test_hardening.py::test_a_cifar_batch_is_capped_by_the_shape_its_pickle_declares"),
    bad_train_file("dataset folder whose state.json names a data file outside it", "hf_escape",
                   r"data file 1 of state\.json is not an \.arrow file inside the dataset folder",
                   also="test_hardening.py::test_a_dataset_folder_cannot_name_data_files_outside_it"),
    bad_train_file("dataset folder naming an unknown dtype", "hf_dtype", r"names an unknown dtype",
                   also="test_hardening.py::test_a_dataset_folder_may_name_known_dtypes_only"),
    Case("factory with an attribute chain after the colon (module:torch.os.abort)", B_CODE,
         lambda r: load_factory("ogdash.examples.own_network:torch.os.abort", allowed=allowed_modules()),
         r"is not a model factory",
         cli=["scan", "--train", "good_train.npz", "--test", "good_test.npz", "--model", "custom", "--arch",
              "ogdash.examples.own_network:torch.os.abort", "--weights", "ckpt/valid.pt", "--no-cache"],
         page=lambda at: use_factory(at, "ogdash.examples.own_network:torch.os.abort"), page_query=IMAGE_LINK,
         keeps="model", also="test_hardening.py::test_a_factory_is_one_plain_name_checked_before_anything_is_imported"),
    Case("factory in a namespace package under the data root (examples/pwn.py)", B_CODE,
         lambda r: load_factory("examples.pwn:net", allowed=(*allowed_modules(), "examples")),
         r"namespace package", page=lambda at: use_factory(at, "examples.pwn:net"), page_query=IMAGE_LINK,
         page_env={"OGDASH_MODEL_MODULES": "examples"}, keeps="model",
         also="test_hardening.py::test_examples_come_from_the_install_never_from_the_current_folder"),
    Case("link nested 3,000 levels deep", B_LINK, lambda r: link_json("[" * 3000), r"nest 3,000 levels deep",
         page=lambda at: at, page_query={"data": "[" * 3000}, keeps=None,
         also="test_hardening.py::test_a_deeply_nested_link_is_refused_before_parsing"),
    Case("symlink loop inside an image folder: the folder loads, its stamp ends", B_PATH,
         lambda r: stamp(r / "images/looped") and load_image_folder(r / "images/looped", 8), None,
         page=lambda at: use_folder(at, "images/looped"), keeps=None, shows="looped",
         also="test_hardening.py::test_a_symlink_loop_does_not_hang_a_folders_stamp"),
    Case("imported relabel to a class the data lacks", B_STORE,
         lambda r: DecisionStore(r.parent / "relabel.sqlite").import_(r / "files/relabel_999.csv", n_classes=2),
         r"Row 2 of .*new_label 999 is not a class of this data \(0\.\.1\)",
         page=lambda at: import_decisions_file(at, Path(os.environ["OGDASH_DATA_ROOT"]), "files/relabel_999.csv"),
         keeps=None, also="test_hardening.py::test_an_import_relabel_beyond_the_classes_is_refused"),
    Case("reviewer name with a control character (a carriage return)", B_STORE,
         lambda r: DecisionStore(r.parent / "names.sqlite").record("x", 1, "keep", "ann\r=cmd|' /C calc'!A0"),
         r"control character", page=lambda at: decide_as(at, "ann\r=cmd|' /C calc'!A0"), keeps=None,
         also="test_hardening.py::test_reviewer_names_with_control_characters_are_refused"),
    # --- cache and decision store
    Case("truncated cache file: detected and recomputed", B_CACHE, lambda r: _cache_entry_damaged(r, "truncated"),
         None, also="test_cache.py::test_roundtrip_and_corruption_recompute"),
    Case("corrupt cache file (same size, bytes flipped): detected and recomputed", B_CACHE,
         lambda r: _cache_entry_damaged(r, "flipped"), None),
    Case("decision store that is not a database: refused and left untouched", B_STORE,
         lambda r: DecisionStore(r / "decisions_junk.sqlite"), r"not a readable decision store",
         page=train_then_review, keeps=None, page_env={"OGDASH_DECISIONS": "decisions_junk.sqlite"},
         also="test_review.py::test_corrupt_file_raises_and_is_kept"),
]

# --- your own fine-tuning files and language models (issue #29): the LLM page's "your data" mode and ogdash llm
B_LLM = "fine-tuning data"


def _llm_cli(train="llm/good_train.jsonl", *extra):
    return ["llm", "--train", train, "--model", "tiny", "--no-cache", "--quiet", "--max-length", "512", *extra]


def _long_texts_are_cut_with_a_note(root):
    from ogdash.experiments import llm_files as lf
    from ogdash.models.llm import FinetuneSettings, LoraSettings

    settings = lf.FileSettings(model="tiny", proj_dim=64, lora=LoraSettings(layers=1),
                               finetune=FinetuneSettings(epochs=1, max_length=128, loss_on="completion"))
    run = lf.extract(root / "llm/long.jsonl", None, settings, DiskCache(root.parent / "cache_llm_long"))
    assert run.train.n == 13 and run.G.shape[0] == 13
    (note,) = run.notes
    assert re.search(r"1 training example\(s\) are longer than 128 tokens and were cut \(first: line 3\)", note)


def _mismatched_adapter(root):
    from ogdash.models.llm import load_adapter_folder, load_language_model

    load_adapter_folder(load_language_model("tiny", "cpu"), root / "llm/other_adapter")


def _edit_over_the_cap(root):
    from ogdash.experiments.llm_review import EDIT_MAX_CHARS, record

    data = load_prompt_file(root / "llm/good_train.jsonl")
    record(DecisionStore(root.parent / "edit_cap.sqlite"), data, int(data.sample_ids[0]), "edit", "ann",
           new_completion="x" * (EDIT_MAX_CHARS + 1))


LLM_CASES = [
    Case("fine-tuning file with a malformed JSON line", B_LLM,
         lambda r: load_prompt_file(r / "llm/malformed.jsonl"), r"malformed\.jsonl: line 3 is not valid JSON",
         cli=_llm_cli("llm/malformed.jsonl"), keeps=None),
    Case("fine-tuning record missing its completion field", B_LLM,
         lambda r: load_prompt_file(r / "llm/missing_field.jsonl"), r"line 2 has no 'completion' field",
         cli=_llm_cli("llm/missing_field.jsonl"), keeps=None),
    Case("fine-tuning record with an empty completion", B_LLM,
         lambda r: load_prompt_file(r / "llm/empty_completion.jsonl"),
         r"1 example\(s\) have an empty completion \(first: line 4\)", cli=_llm_cli("llm/empty_completion.jsonl"),
         keeps=None),
    Case("fine-tuning text over the token cap: cut, with a note naming its line", B_LLM,
         _long_texts_are_cut_with_a_note, None, keeps=None, also="test_llm_files.py::test_cli_contract_on_your_files"),
    Case("language model folder without a tokenizer", B_LLM,
         lambda r: load_language_model(str(r / "llm/model_no_tokenizer"), "cpu"), r"has no tokenizer",
         cli=["llm", "--train", "llm/good_train.jsonl", "--model", "llm/model_no_tokenizer", "--no-cache"], keeps=None,
         also="test_llm_files.py::test_adapter_and_model_folders_that_do_not_fit"),
    Case("LoRA adapter that does not match the model", B_LLM, _mismatched_adapter,
         r"the adapter does not match the model tiny", cli=_llm_cli("llm/good_train.jsonl", "--adapter",
                                                                   "llm/other_adapter"), keeps=None),
    Case("edited completion over the review's cap", B_LLM, _edit_over_the_cap,
         r"The edited completion is 20,001 characters, over the 20,000", keeps=None,
         also="test_review_examples.py::test_an_edit_over_the_cap_or_empty_is_refused_in_one_line"),
]
CASES += LLM_CASES

ISSUE_BULLETS = {
    "corrupt image file": "corrupt image file", "non-image file": "non-image file", "empty folder": "empty folder",
    "class folder with no images": "class folder with no images", "missing arrays": "without the y array",
    "missing columns": "without the label column", "length mismatch": "of different lengths",
    "string labels": "labels that are strings", "float labels": "labels that are floats",
    "negative labels": "negative labels", "out-of-range labels": "labels out of range", "NaN features": "NaN features",
    "inf features": "infinite features", "single class": "a single class", "zero samples": "zero samples",
    "unseen test classes": "unseen in training", "empty OneClassSVM validation": "OneClassSVM with an empty",
    "budget 0": "budget of 0", "negative budget": "negative budget", "fraction above 1": "above 1 as a fraction",
    "count above n": "above n as a count", "other architecture": "another architecture",
    "missing keys": "missing keys", "pickle with code": "pickle with code (torch.save)",
    "../": "with ../", "absolute path": "absolute path", "symlink": "symlink", "upload size": "upload over",
    "non-UTF-8 CSV": "non-UTF-8", "NaN loss": "loss becomes NaN", "corrupt cache": "corrupt cache file",
    "truncated cache": "truncated cache file",
    # issue 25
    "Parquet footer": "Parquet whose footer", "Parquet upload": "Parquet upload", "CR-only CSV": "carriage returns",
    "image headers in a table": "table images", "CIFAR declared shape": "CIFAR batch declaring",
    "dataset folder data files": "names a data file outside", "dataset folder dtype": "unknown dtype",
    "factory attribute chain": "attribute chain", "namespace examples": "namespace package",
    "link nesting": "nested 3,000", "symlink loop": "symlink loop", "relabel beyond classes": "class the data lacks",
    "control characters in names": "control character",
    # issue #28, tables of texts
    "empty texts": "an empty text", "non-UTF-8 texts": "texts with non-UTF-8", "missing text column":
    "missing its text column", "unseen label names": "label name unseen", "texts over a length cap": "length cap",
    # issue #29
    "malformed JSON lines": "malformed JSON line", "missing fields": "missing its completion field",
    "empty completions": "empty completion", "texts over the token cap": "over the token cap",
    "model folder without a tokenizer": "without a tokenizer", "adapter that does not match": "adapter that does not",
}


def case_id(case):
    return re.sub(r"[^a-z0-9]+", "_", case.name.lower()).strip("_")[:60]


def one_line(message: str) -> str:
    assert "\n" not in message and 10 < len(message) <= MAX_MESSAGE, message
    assert "Traceback" not in message
    return message


def test_catalogue_covers_the_issue(capsys):
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    missing = [bullet for bullet, needle in ISSUE_BULLETS.items() if not any(needle in n for n in names)]
    assert not missing, f"no catalogue case for: {missing}"
    with capsys.disabled():
        print(f"\nbad-input catalogue: {len(CASES)} cases; library {len(CASES)}, "
              f"CLI {sum(c.cli is not None for c in CASES)}, "
              f"pages {sum(c.page is not None for c in CASES) + len(LLM_PAGE)}")


# ------------------------------------------------------------------ library

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_library(case, root):
    if case.needle is None:
        case.library(root)
        return
    with pytest.raises(OgdashError) as err:
        case.library(root)
    message = one_line(str(err.value))
    assert re.search(case.needle, message), message


# ------------------------------------------------------------------ CLI

CLI_CASES = [c for c in CASES if c.cli is not None]


def _cli_argv(case, root):
    return [str(root / a) if a.endswith((".npz", ".csv", ".tsv", ".parquet", ".pt")) or a.startswith(("files/", "llm/"))
            else a for a in case.cli]


@pytest.mark.parametrize("case", CLI_CASES, ids=case_id)
def test_cli(case, root, capsys):
    from ogdash.cli.main import main

    try:
        code = main(_cli_argv(case, root))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out = capsys.readouterr()
    assert code == 2, out
    err = out.err.strip()
    assert err.startswith("error: ") and one_line(err)
    assert re.search(case.needle, err), err
    assert out.out == ""


@pytest.mark.parametrize("name", ["labels that are strings", "training run whose loss becomes NaN"])
def test_cli_in_a_real_process(name, root):
    case = next(c for c in CASES if c.name == name)
    r = subprocess.run([sys.executable, "-m", "ogdash", *_cli_argv(case, root)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(case.needle, r.stderr), r.stderr


# ------------------------------------------------------------------ pages (AppTest)

PAGE_CASES = [c for c in CASES if c.page is not None]
MODEL = {"kind": "mlp", "seed": 0, "epochs": 3}


@pytest.fixture
def page_env(root, tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()  # the app's process-wide memo must not leak between tests
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(root))
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    return root


def good_files(root, train="good_train.npz"):
    return DataSpec("files", train=str((root / train).resolve()), test=str((root / "good_test.npz").resolve()))


def open_data_page(root, query=None):
    """The Data page of a fresh session: the good files active (or what a shared link says), an MLP chosen."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    if query is not None:
        at.query_params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in query.items()})
    else:
        at.session_state["data_spec"] = good_files(root)
    at.session_state["model_config"] = dict(MODEL)
    at.run()
    at.first_errors = [e.value for e in at.error]  # a link's problems are said once, on the first run
    at.switch_page("views/data.py").run()
    assert not at.exception, at.exception
    return at


def seen(markdown: str) -> str:
    """What a reader sees of Markdown whose user strings were escaped (dashboard/escape.py)."""
    return re.sub(r"\\([^\w\s]|_)", r"\1", markdown)


def shown(at) -> str:
    return " ".join(seen(s.value) for s in at.subheader)


@pytest.mark.parametrize("case", PAGE_CASES, ids=case_id)
def test_page(case, page_env, monkeypatch):
    root = page_env
    for k, v in case.page_env.items():
        monkeypatch.setenv(k, str(root / v) if k == "OGDASH_DECISIONS" else v)
    at = open_data_page(root, case.page_query)
    model_before = dict(at.session_state["model_config"])
    case.page(at)
    assert not at.exception, at.exception

    if case.needle is None:  # handled without an error
        assert not at.error, [e.value for e in at.error]
        if "non-image" in case.name:
            warnings = [one_line(seen(w.value)) for w in at.warning]
            assert any("notes.txt" in w and "not images" in w for w in warnings), warnings
        elif "length cap" in case.name:  # the texts were loaded, and the page says which were cut
            notes = [seen(c.value) for c in at.caption]
            assert any("1 text(s) longer than 100 characters were cut" in n for n in notes), notes
        else:  # the link's escaping path was ignored (the default data is shown), or the input loaded
            assert case.shows in shown(at), shown(at)
    else:
        errors = [one_line(seen(e)) for e in getattr(at, "first_errors", [])] + \
                 [one_line(seen(e.value)) for e in at.error]
        assert any(re.search(case.needle, e) for e in errors), errors

    if case.keeps == "data":  # the data that was active before is still active and shown
        assert at.session_state["data_spec"] == good_files(root)
        assert "good_train.npz" in shown(at)
    if case.keeps == "model":  # the failed model did not replace the chosen one
        assert at.session_state["model_config"] == model_before

    # and the page stays usable: other good data loads
    at.switch_page("views/data.py").run()
    use_files(at, "other_train.npz")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "other_train.npz" in shown(at)
    assert _find(at.metric, "Training samples").value == "30"  # every sample of the user's file: no hidden hold-out


# ------------------------------------------------------------------ the LLM page's "your data" mode (issue #29)

LLM_PAGE = {  # case name -> (training file, test file, model, model folder, adapter folder)
    "fine-tuning file with a malformed JSON line": ("llm/malformed.jsonl", "", "tiny", "", ""),
    "fine-tuning record missing its completion field": ("llm/missing_field.jsonl", "", "tiny", "", ""),
    "fine-tuning record with an empty completion": ("llm/empty_completion.jsonl", "", "tiny", "", ""),
    "fine-tuning text over the token cap: cut, with a note naming its line": ("llm/long.jsonl", "", "tiny", "", ""),
    "language model folder without a tokenizer": ("llm/good_train.jsonl", "", "folder", "llm/model_no_tokenizer", ""),
    "LoRA adapter that does not match the model": ("llm/good_train.jsonl", "", "tiny", "", "llm/other_adapter"),
}


def run_llm_files(at, train, test="", model="tiny", folder="", adapter="", max_length=128):
    _find(at.text_input, "Training file (under the data root)").set_value(train)
    _find(at.text_input, "Test file (optional)").set_value(test)
    _find(at.selectbox, "Model").set_value(model)
    _find(at.text_input, "Model folder (for a local model)").set_value(folder)
    _find(at.text_input, "LoRA adapter folder (optional, used as it is)").set_value(adapter)
    _find(at.number_input, "LoRA in the last N layers (0 = all)").set_value(1)
    _find(at.number_input, "Token cap per example").set_value(max_length)
    _find(at.number_input, "Gradient width (0 = no projection)").set_value(64)
    return click(at, "Run on my files")


@pytest.mark.parametrize("case", [c for c in LLM_CASES if c.name in LLM_PAGE], ids=case_id)
def test_llm_page(case, page_env, monkeypatch, tmp_path_factory):
    """The page shows the one line (or the note), raises nothing, keeps the run it had, and stays usable."""
    monkeypatch.setenv("OGDASH_CACHE", str(tmp_path_factory.getbasetemp() / "llm_page_cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        at = AppTest.from_file(str(ROOT / "views" / "llm_influence.py"), default_timeout=240).run()
        _find(at.radio, "Data").set_value("files").run()
        run_llm_files(at, "llm/good_train.jsonl", max_length=512)
        assert not at.error, [e.value for e in at.error]
        good = at.session_state["llm_files_run"]
        run_llm_files(at, *LLM_PAGE[case.name])
        assert not at.exception, at.exception
        if case.needle is None:  # cut with a note naming its line, and the run goes on
            infos = [one_line(seen(i.value)) for i in at.info]
            assert any("1 training example(s) are longer than 128 tokens" in i and "line 3" in i for i in infos), infos
            assert at.session_state["llm_files_run"].train.n == 13
        else:
            errors = [one_line(seen(e.value)) for e in at.error]
            assert any(re.search(case.needle, e) for e in errors), errors
            assert at.session_state["llm_files_run"] is good  # the run that was shown is kept
        run_llm_files(at, "llm/good_train.jsonl", max_length=512)  # and the page stays usable
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert any("20 training / 0 test examples" in seen(h.value) for h in at.subheader)
    finally:
        torch.set_num_threads(before)


def test_llm_cli_notes_a_cut_text_in_one_line(root, capsys):
    from ogdash.cli.main import main

    code = main(["llm", "--train", str(root / "llm/long.jsonl"), "--model", "tiny", "--no-cache", "--quiet",
                 "--proj-dim", "64", "--lora-layers", "1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    notes = [line for line in out.out.splitlines() if line.strip().startswith("note:")]
    assert len(notes) == 1 and "1 training example(s) are longer than 128 tokens" in notes[0] and "line 3" in notes[0]


# ------------------------------------------------------------------ decisions are never lost: restart and cache change

def test_decisions_survive_an_app_restart_and_a_cache_change(page_env, tmp_path, monkeypatch):
    """Decide in one app process; 'restart' (new session, Streamlit's caches cleared, another OGDASH_CACHE).

    The store path comes from OGDASH_DECISIONS, independent of the cache, so the decision is
    still there and the review page shows it. (Two writer processes, a kill during a bulk save
    and export/import round trips are in tests/test_review.py.)
    """
    import streamlit as st

    root = page_env
    monkeypatch.setenv("OGDASH_CACHE", str(tmp_path / "cache_a"))
    at = open_data_page(root)
    train_then_review(at)
    assert not at.exception, at.exception
    _find(at.text_input, "Reviewer name").set_value("ann").run()
    card_buttons = [b for b in at.button if b.key and b.key.startswith("remove_")]
    sid = int(card_buttons[0].key.split("_")[1])
    card_buttons[0].click().run()
    assert not at.exception and _find(at.metric, "remove").value == "1"
    url = dict(at.query_params)  # what a browser keeps across a restart

    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setenv("OGDASH_CACHE", str(tmp_path / "cache_b"))
    again = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    again.query_params.update(url)
    again.run()
    again.switch_page("views/data.py").run()
    assert "good_train.npz" in shown(again)  # the link kept the data choice
    train_then_review(again)  # a new cache: the model is trained again
    assert not again.exception, again.exception
    assert _find(again.metric, "remove").value == "1"
    store = DecisionStore(os.environ["OGDASH_DECISIONS"])
    (dataset,) = _datasets(store.path)
    assert store.history(dataset)[["sample_id", "decision", "reviewer"]].values.tolist() == [[sid, "remove", "ann"]]
    assert any((tmp_path / "cache_b").rglob("meta.json"))  # the new cache was really used (model retrained)
    assert not list((tmp_path / "cache_b").rglob("*.sqlite"))  # and it holds no decisions


def _datasets(path):
    import sqlite3

    with sqlite3.connect(path) as con:
        return [r[0] for r in con.execute("SELECT DISTINCT dataset FROM decisions")]


def test_upload_limit_setting(monkeypatch):
    from dashboard.state import max_upload_mb

    monkeypatch.setenv("OGDASH_MAX_UPLOAD_MB", "0.5")
    assert max_upload_mb() == 0.5
    check_upload_size("ok.npz", 2**19)  # exactly at the limit: accepted
    with pytest.raises(OgdashError, match="over the 0.5 MB upload limit"):
        check_upload_size("big.npz", 2**19 + 1)
    for bad in ("lots", "-1", "nan", "0"):  # a malformed setting falls back to the default, never crashes the page
        monkeypatch.setenv("OGDASH_MAX_UPLOAD_MB", bad)
        assert max_upload_mb() == 200.0

"""Probes from the security review (issue 20), each reproduced: what a user, a file or a link can give."""
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data import DataSpec
from ogdash.data.files import load_file
from ogdash.data.folders import safe_unpickle
from ogdash.data.text import load_text_csv
from ogdash.review import DecisionStore

SECRET = "aws_secret_access_key=AKIAEXAMPLESECRET"


def seen(markdown: str) -> str:
    """What a reader sees of Markdown whose user strings were escaped (dashboard/escape.py)."""
    return re.sub(r"\\([^\w\s]|_)", r"\1", markdown)


@pytest.mark.parametrize("name", ["credentials", "credentials.txt", "credentials.csv"])
def test_a_files_first_line_never_leaks_through_an_error(tmp_path, name):
    """Finding 1: a file that is not the expected CSV names what is missing, never what it holds."""
    path = tmp_path / name
    path.write_text(SECRET + "\nmore,secret\n")
    with pytest.raises(OgdashError) as text_error:
        load_text_csv(path)
    assert "AKIA" not in str(text_error.value) and "secret" not in str(text_error.value).replace(name, "")
    if name.endswith(".csv"):
        with pytest.raises(OgdashError) as data_error:
            load_file(path)
        assert "AKIA" not in str(data_error.value) and "missing the 'label' column" in str(data_error.value)
    else:
        assert "not a .csv or .tsv" in str(text_error.value)


def test_the_cifar_unpickler_allows_exact_pairs_only():
    """Finding 5: a crafted batch naming any numpy module with a name ending in DType was imported and could
    stop the app (numpy.f2py.__main__ ran f2py's command line and raised SystemExit)."""
    crafted = b"cnumpy.f2py.__main__\nAnythingDType\n."  # pickle protocol 0: GLOBAL module name, STOP
    with pytest.raises(OgdashError, match="will not unpickle"):
        safe_unpickle(crafted, "data_batch_1")
    import pickle

    good = pickle.dumps({b"data": np.zeros((2, 3), np.uint8), b"labels": [0, 1]})
    assert safe_unpickle(good)[b"labels"] == [0, 1]  # what CIFAR needs still loads


def test_cache_metadata_names_cannot_leave_the_entry(tmp_path):
    """Finding 13: a crafted meta.json entry '../../../outside/secret' was opened outside the cache entry."""
    cache = DiskCache(tmp_path / "cache")
    cache.save("models", "k", {"w": np.ones(3)})
    outside = tmp_path / "outside"
    outside.mkdir()
    np.save(outside / "secret.npy", np.arange(4))
    meta = cache.entry("models", "k") / "meta.json"
    files = json.loads(meta.read_text())
    files["files"]["../../../outside/secret"] = files["files"]["w"]
    meta.write_text(json.dumps(files))
    assert cache.load("models", "k") is None  # refused (and so recomputed), never read


def test_cache_keeps_a_models_dotted_names(tmp_path):
    cache = DiskCache(tmp_path / "cache")
    cache.save("models", "k", {"body.0.weight": np.ones(3), "head.bias": np.zeros(2)})
    assert set(cache.load("models", "k")) == {"body.0.weight", "head.bias"}


def test_decision_exports_never_start_a_spreadsheet_formula(tmp_path):
    """Finding 10: a reviewer name or note starting with = + - @ ran as a formula when the CSV was opened."""
    store = DecisionStore(tmp_path / "d.sqlite")
    store.record("fp", 1, "remove", "=HYPERLINK(\"http://example.invalid\")", note="@SUM(1)")
    store.record("fp", 2, "keep", "-ann", note="+1")
    path = store.export("fp", tmp_path / "d.csv")
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert all(r["reviewer"].startswith("'") and r["note"].startswith("'") for r in rows)
    assert [r["sample_id"] for r in rows] == ["1", "2"]  # numbers are left as they are


# ------------------------------------------------------------------ finding 4: small files that explode in memory

def _refuse_to_parse(monkeypatch):
    """Make every full read fail: a refusal must come from headers alone."""
    import pandas as pd

    def boom(*a, **k):
        raise AssertionError("read in full before the limits were checked")
    monkeypatch.setattr(np, "load", boom)
    monkeypatch.setattr(pd, "read_csv", boom)


def test_an_npz_bomb_is_refused_from_its_headers(tmp_path, monkeypatch):
    """Finding 4: a 232 KB .npz decompressed to 240 million values (+1.4 GB) before anything was checked."""
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, X=np.zeros((60_000, 4_000), np.uint8), y=np.arange(60_000) % 2)
    assert path.stat().st_size < 300_000
    _refuse_to_parse(monkeypatch)
    with pytest.raises(OgdashError, match=r"240,000,000 values.*limit of 50,000,000 \(OGDASH_MAX_ELEMENTS\)"):
        load_file(path)


def test_the_element_limit_is_a_setting(tmp_path, monkeypatch):
    path = tmp_path / "small.npz"
    np.savez(path, X=np.ones((100, 10)), y=np.arange(100) % 2)
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "500")
    with pytest.raises(OgdashError, match="over the limit of 500 .*raise OGDASH_MAX_ELEMENTS"):
        load_file(path)
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "1000")
    assert load_file(path).X.shape == (100, 10)
    for bad in ("lots", "-3", "0"):  # a malformed setting means the default, never a crash
        monkeypatch.setenv("OGDASH_MAX_ELEMENTS", bad)
        assert load_file(path).n == 100


def test_a_csv_with_300000_columns_is_refused_from_its_header(tmp_path, monkeypatch):
    """Finding 4: a 3.3 MB CSV with 300,000 columns took 18 s and +0.8 GB to parse."""
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"f{j}" for j in range(300_000)) + ",label\n" + "0," * 300_000 + "1\n")
    text = tmp_path / "wide_text.csv"
    text.write_text("text,label," + ",".join(f"c{j}" for j in range(300_000)) + "\n")
    _refuse_to_parse(monkeypatch)
    with pytest.raises(OgdashError, match=r"300,001 columns, over the limit of 10,000 \(OGDASH_MAX_COLUMNS\)"):
        load_file(path)
    with pytest.raises(OgdashError, match="OGDASH_MAX_COLUMNS"):
        load_text_csv(text)
    monkeypatch.setenv("OGDASH_MAX_COLUMNS", "100")  # a header line that never ends is refused too
    endless = tmp_path / "endless.csv"
    endless.write_text("x" * 200_000)
    with pytest.raises(OgdashError, match="more than 1 columns"):
        load_file(endless)


def test_an_image_folder_is_capped_by_files_times_size(tmp_path, monkeypatch):
    """Finding 4: 5,000 tiny images at size 128 became 312 MB; the cap counts images x channels x size²
    before a single pixel is decoded."""
    from PIL import Image

    from ogdash.data import folders

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(20):
            Image.new("L", (4, 4), i).save(tmp_path / c / f"{i}.png")
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "100000")
    monkeypatch.setattr(folders, "_shrunk", lambda *a: pytest.fail("decoded before the cap was checked"))
    with pytest.raises(OgdashError, match=r"40 images of 1 channel\(s\) at 128x128 would hold 655,360 values"):
        folders.load_image_folder(tmp_path, 128)


def test_images_are_read_as_before_when_small(tmp_path):
    """Shrinking while reading changes nothing for images up to a few times the size."""
    from PIL import Image

    from ogdash.data.folders import load_image_folder

    rng = np.random.default_rng(0)
    arrays = {}
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i, mode in enumerate(("RGB", "L", "RGBA", "P")):
            im = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), "RGB").convert(mode)
            im.save(tmp_path / c / f"{i}.png")
            arrays[f"{c}/{i}.png"] = np.asarray(im.convert("RGB").resize((16, 16)), np.float32) / 255.0
    ds = load_image_folder(tmp_path, 16)
    expected = np.stack([np.transpose(arrays[s], (2, 0, 1)) for s in ds.sources])
    np.testing.assert_array_equal(ds.X, expected)


PEAK = """
import resource, sys
from ogdash.data.folders import load_image_folder
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ds = load_image_folder(sys.argv[1], 32)
assert ds.X.shape == (6, 3, 32, 32), ds.X.shape
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


def test_large_images_are_shrunk_while_read(tmp_path):
    """Finding 4: six 8000x8000 PNGs (1.1 MB on disk) took +2 GB, because every full-resolution image was kept
    until all were read. Now one image is decoded at a time: the peak is about one image, not six."""
    import subprocess
    import sys

    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (5000, 5000), (40 * i, 90, 200)).save(tmp_path / c / f"{i}.png")
    out = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path)], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    added_mb = int(out.stdout.split()[-1])
    one_image_mb = 5000 * 5000 * 4 / 2**20  # Pillow holds RGB as 4 bytes a pixel: 95 MB
    assert added_mb < 3 * one_image_mb, added_mb  # all six kept would be 572 MB


# ------------------------------------------------------------------ finding 7: imported decisions from the future

def _decisions_csv(path, rows):
    path.write_text("dataset,sample_id,decision,new_label,reviewer,timestamp,note\n"
                    + "".join(f"fp,{sid},{dec},,{who},{stamp},\n" for sid, dec, who, stamp in rows))
    return path


def test_an_imported_decision_from_the_future_is_refused(tmp_path):
    """Finding 7: a row dated 9999-01-01 outranked every later decision, forever ("latest timestamp wins")."""
    store = DecisionStore(tmp_path / "d.sqlite")
    store.record("fp", 1, "keep", "ann")
    future = _decisions_csv(tmp_path / "future.csv", [(2, "keep", "eve", "2020-01-01T00:00:00+00:00"),
                                                       (1, "remove", "eve", "9999-01-01T00:00:00+00:00")])
    with pytest.raises(OgdashError, match="Row 2 of future.csv is dated 9999-01-01 00:00 UTC, in the future"):
        store.import_(future)
    assert store.history("fp")[["sample_id", "decision"]].values.tolist() == [[1, "keep"]]  # nothing imported
    store.record("fp", 1, "relabel", "ann", new_label=0)  # a later decision still wins
    assert store.current("fp")["decision"].tolist() == ["relabel"]
    # a few seconds ahead (another machine's clock) is accepted, and an old import never outranks newer decisions
    from datetime import datetime, timedelta, timezone

    soon = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
    assert store.import_(_decisions_csv(tmp_path / "ok.csv", [(2, "remove", "bob", soon),
                                                              (1, "keep", "bob", "2020-01-01T00:00:00")])) == 2
    assert store.current("fp")[["sample_id", "decision"]].values.tolist() == [[1, "relabel"], [2, "remove"]]


@pytest.mark.parametrize("sample_id, stamp, needle", [
    (10**30, "2020-01-01T00:00:00", r"Row 1 of bad.csv: sample_id '10{30}' is out of range"),
    (2**63, "2020-01-01T00:00:00", "out of range"),
    ("1e400", "2020-01-01T00:00:00", "must be an integer"),
    (1, "9999-12-31T23:59:59-05:00", "Row 1 of bad.csv has a bad timestamp"),  # OverflowError on the way to UTC
    (1, "0001-01-01T00:00:00+05:00", "bad timestamp"),
])
def test_out_of_range_imports_give_one_line(tmp_path, sample_id, stamp, needle):
    """Finding 7: sample_id=10**30 and a far-future timestamp with an offset raised an uncaught OverflowError."""
    store = DecisionStore(tmp_path / "d.sqlite")
    store.record("fp", 1, "keep", "ann")
    with pytest.raises(OgdashError, match=needle) as err:
        store.import_(_decisions_csv(tmp_path / "bad.csv", [(sample_id, "keep", "eve", stamp)]))
    assert "\n" not in str(err.value) and len(str(err.value)) < 300
    assert len(store.history("fp")) == 1  # no decision lost or added
    with pytest.raises(OgdashError, match="out of range"):
        store.record("fp", 10**30, "keep", "ann")  # the same check when a decision is recorded


# ------------------------------------------------------------------ finding 12: large-model cache keys

def _sparse(path, size: int, middle: bytes = b"") -> None:
    """A file of ``size`` bytes that takes no disk space; ``middle`` written half-way."""
    with open(path, "wb") as f:
        f.truncate(size)
        if middle:
            f.seek(size // 2)
            f.write(middle)


@pytest.mark.slow  # hashes 4 GiB (sparse files: no disk space), about 10-25 s
def test_two_large_models_never_share_a_cache_key(tmp_path):
    """Finding 12: above 2 GiB the weights digest hashed only the size and the first and last 16 MiB, so two
    different 2 GiB models got the same key (and one's cached gradients were served for the other)."""
    from ogdash.models.llm import model_key

    keys = []
    for name, middle in (("a", b""), ("b", b"another model")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "llama"}')
        (folder / "tokenizer.json").write_text("{}")  # a model folder must bring its tokenizer
        _sparse(folder / "model.safetensors", (2 << 30) + 1, middle)
        keys.append(model_key(str(folder), device="cpu"))
    assert keys[0] != keys[1]


def test_a_file_is_hashed_once_and_again_when_it_changes(tmp_path, monkeypatch):
    from ogdash.core import cache as cache_module
    from ogdash.core.cache import file_digest

    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 1000)
    first = file_digest(path, tmp_path / "cache")
    import hashlib

    assert first == hashlib.sha256(b"x" * 1000).hexdigest()  # the whole content
    cache_module._DIGESTS.clear()  # a new process: the digest is read back from beside the cache, not recomputed
    monkeypatch.setattr(cache_module, "_sha256", lambda p: pytest.fail("hashed again"))
    assert file_digest(path, tmp_path / "cache") == first
    monkeypatch.undo()
    path.write_bytes(b"y" * 1000)  # same size, new content
    assert file_digest(path, tmp_path / "cache") == hashlib.sha256(b"y" * 1000).hexdigest()


# ------------------------------------------------------------------ finding 3: the URL's configuration is checked whole

ANALYSIS_PAGES = ["views/home.py", "views/data.py", "views/gradient_space.py", "views/review.py", "views/retrain.py"]


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()  # the app's process-wide memo must not leak between tests
    root = tmp_path / "root"
    (root / "imgs" / "a").mkdir(parents=True)
    (root / "imgs" / "b").mkdir()
    from PIL import Image

    for c in ("a", "b"):
        for i in range(8):
            Image.new("L", (6, 6), 30 * i).save(root / "imgs" / c / f"{i}.png")
    torch_file = root / "small.pt"
    import torch

    torch.save({"fc.weight": torch.zeros(2, 4)}, torch_file)
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(root))
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    return root


def open_link(query: dict, page: str = "views/data.py"):
    from streamlit.testing.v1 import AppTest

    from dashboard.nav import ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in query.items()})
    at.run()
    assert not at.exception, at.exception
    errors = [seen(e.value) for e in at.error]
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at, errors


BAD_LINKS = [
    ({"data": {"source": "imagefolder", "path": "imgs", "size": 2000}}, r"size: 2000 is not a whole number from 8 to 128"),
    ({"data": {"source": "builtin", "name": "digits", "seed": -1}}, r"seed: -1 is not a whole number"),
    ({"data": {"source": "builtin", "name": "cifar1000"}}, r"name: 'cifar1000' is not one of"),
    ({"data": {"source": "ftp", "path": "x"}}, r"source 'ftp' is not one of builtin, files"),
    ({"data": {"source": "files"}}, r"'train' is missing"),
    ({"data": {"source": "builtin", "name": "digits", "noise_rate": float("nan")}}, r"noise_rate: nan is not a number"),
    ({"data": {"source": "builtin", "name": "digits", "extra": 1}}, r"'extra' is not a setting of source builtin"),
    ({"data": [1, 2]}, r"not a set of named settings"),
    ({"data": "{not json"}, r"data settings were not used \(they are not readable\)"),
    ({"model": {"kind": "torchvision"}}, r"model settings were not used \('arch' is missing\)"),
    ({"model": {"kind": "torchvision", "arch": "vit_h_14", "weights": "missing.pt"}},
     r"weights: missing\.pt is not an existing file under the data root"),
    ({"model": {"kind": "torchvision", "arch": "not_a_net", "weights": "small.pt"}}, r"arch: 'not_a_net' is not one"),
    # naming package.module:factory runs that code: a link may only name packages the operator allowed
    ({"model": {"kind": "custom", "arch": "os:abort", "weights": "small.pt"}}, r"arch: os is not an allowed package"),
    ({"model": {"kind": "custom", "arch": "resnet18", "weights": "small.pt"}}, r"arch: 'resnet18' is not package"),
    # issue 25, item 1: an attribute chain after the colon reached os.abort through a module's imports
    ({"model": {"kind": "custom", "arch": "examples.frozen_backbone:torch.os.abort", "weights": "small.pt"}},
     r"arch: 'examples\.frozen_backbone:torch\.os\.abort' is not a model factory"),
    ({"model": {"kind": "custom", "arch": "examples.pwn:net", "weights": "small.pt"}},
     r"arch: examples\.pwn is not an allowed package"),
    ({"model": {"kind": "mlp", "hidden": [10**9]}}, r"hidden: 1000000000 is not a whole number from 1 to 4,096"),
    ({"model": {"kind": "mlp", "epochs": 10**12}}, r"epochs: 1000000000000 is not a whole number"),
]


@pytest.mark.parametrize("query, needle", BAD_LINKS, ids=lambda x: re.sub(r"\W+", "_", str(x))[:50])
def test_a_bad_link_gives_one_message_and_the_defaults(app_env, query, needle, monkeypatch):
    """Finding 3: only a link's paths were checked. size=2000 on 15 small images took memory from 0.95 to 2.5 GB;
    arch=vit_h_14 built a 3.5 GB model on every rerun before noticing the missing weights file; a torchvision model
    without 'arch' showed a KeyError traceback on every page."""
    from ogdash.models import weights

    monkeypatch.setattr(weights, "torchvision_model", lambda *a: pytest.fail("a model was built from a bad link"))
    at, errors = open_link(query)
    assert len(errors) == 1 and re.search(needle, errors[0]), errors
    assert "\n" not in errors[0] and "Traceback" not in errors[0]
    assert at.session_state["data_spec"].name == "digits" if "data" in query else True  # the defaults
    if "model" in query:
        assert at.session_state["model_config"]["kind"] == "cnn"
    for page in ANALYSIS_PAGES:  # every page opens, and the message is not repeated
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not any("link's" in seen(e.value) for e in at.error), page


def test_a_good_link_still_opens_what_it_names(app_env):
    link = {"data": {"source": "imagefolder", "path": "imgs", "size": 16, "test_share": 0.25, "seed": 0,
                     "noise_rate": 0.0, "noise_kind": "uniform", "test": None},
            "model": {"kind": "cnn", "seed": 3, "epochs": 2}}
    at, errors = open_link(link)
    assert not errors, errors
    assert at.session_state["data_spec"].path == str(app_env / "imgs")
    assert at.session_state["model_config"] == {"kind": "cnn", "seed": 3, "epochs": 2}
    assert next(m for m in at.metric if m.label == "Training samples").value == "12"


def test_weights_are_checked_before_a_model_is_built(tmp_path):
    """Finding 3: arch=vit_h_14 with someone else's weights built the 2.5 GB model before the mismatch was seen;
    the file's names and shapes are now compared with the architecture built on the meta device."""
    import resource

    import torch

    from ogdash.models.weights import load_torchvision

    path = tmp_path / "small.pt"
    torch.save({"fc.weight": torch.zeros(2, 4)}, path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(OgdashError, match=r"does not fit this architecture .*load weights saved from vit_h_14"):
        load_torchvision("vit_h_14", 2, path)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) < 1 << 20  # KiB: far below the 2.5 GB
    with pytest.raises(OgdashError, match="weights file not found"):
        load_torchvision("resnet18", 2, tmp_path / "nope.pt")


def test_the_process_memo_is_bounded():
    """Finding 3: every distinct link added a never-evicted entry to the process-wide memo (13 links: +300 MB)."""
    from dashboard.memo import Memo, sizeof

    memo = Memo(max_entries=3, max_bytes=10 << 20)
    for i in range(5):
        memo.get(f"k{i}", lambda: np.zeros(1 << 17))  # 1 MiB each
    assert len(memo) == 3 and "k0" not in memo and "k4" in memo
    memo.get("k2")  # used: now the most recent
    memo.get("k5", lambda: 1)
    assert "k2" in memo and "k3" not in memo
    memo.get("big", lambda: np.zeros(3 << 20))  # 24 MiB, over the cap alone: kept (it is the newest), others go
    assert list(memo._items) == ["big"]
    memo.get("small", lambda: "x")
    assert "big" not in memo and "small" in memo
    import torch

    model = torch.nn.Linear(1000, 100)
    assert sizeof(model) == 4 * (1000 * 100 + 100)
    a = np.zeros(1000)
    assert sizeof({"a": a, "view": a[:10], "again": a}) >= 8000 and sizeof({"a": a, "view": a[:10]}) < 9000


def test_many_links_do_not_grow_the_memo(app_env, monkeypatch):
    monkeypatch.setenv("OGDASH_MEMO_ENTRIES", "4")
    for seed in range(6):
        open_link({"data": {"source": "builtin", "name": "digits", "seed": seed, "noise_rate": 0.2,
                            "noise_kind": "uniform"}})
    from dashboard.state import _memo

    assert 1 <= len(_memo()) <= 4  # the app's own memo (st.cache_resource is process-wide)


def test_no_traceback_reaches_a_browser():
    """Finding 3: uncaught errors showed tracebacks; Streamlit shows a generic message with showErrorDetails 'none'.
    Finding 14: Streamlit refuses an upload over server.maxUploadSize before the app holds it."""
    import tomllib

    from streamlit import config

    from dashboard.nav import ROOT
    from dashboard.state import max_upload_mb

    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["client"]["showErrorDetails"] == config.ShowErrorDetailsConfigOptions.NONE.value
    assert settings["server"]["maxUploadSize"] == max_upload_mb() == 200


def test_every_link_the_app_writes_passes_the_schema(app_env):
    """The schema is strict (unknown keys refused): each data and model choice the pages make must pass it."""
    from dashboard.schema import model_from_link
    from dashboard.state import DEFAULT_DATA, DEFAULT_MODEL, PRESET_DATA, PRESET_MODEL

    _rows_csv(app_env / "t.csv", 20)
    (app_env / "texts.csv").write_text("text,label\n" + "".join(f"t {i},{i % 2}\n" for i in range(20)))
    datas = [DEFAULT_DATA.to_dict(), PRESET_DATA.to_dict(), {"source": "builtin", "name": "moons", "seed": 3, "flip_mode": "far"},
             {"source": "files", "train": "t.csv", "test": "t.csv", "val": "t.csv", "test_share": 0.2, "seed": 0},
             {"source": "imagefolder", "path": "imgs", "size": 32, "test": "imgs", "test_share": 0.2,
              "noise_rate": 0.1, "noise_kind": "uniform", "seed": 0},
             {"source": "text", "name": "rotten_tomatoes", "path": None, "noise": 0.2, "seed": 0, "n_train": 4000,
              "n_test": 1000, "encoder": "minilm"},
             {"source": "text", "name": None, "path": "texts.csv", "noise": 0.2, "seed": 0, "n_train": None,
              "n_test": None, "encoder": "hashing"},
             {"source": "cifar", "path": "imgs", "noisy_labels": "small.pt", "noise_key": "worse_label"}]
    for cfg in datas:
        assert DataSpec.from_dict(json.loads(json.dumps(cfg)), app_env).source == cfg["source"]
    for cfg in [DEFAULT_MODEL, PRESET_MODEL, {"kind": "mlp", "hidden": (16, 16), "epochs": None, "seed": 0},
                {"kind": "logreg", "seed": 0, "hidden": [128]}, {"kind": "paper_mlp", "seed": 1, "epochs": 5},
                {"kind": "torchvision", "arch": "resnet18", "weights": "small.pt"}]:
        assert model_from_link(json.loads(json.dumps(cfg)), app_env)["kind"] == cfg["kind"]


# ------------------------------------------------------------------ finding 6: a changed file is seen

def _rows_csv(path, n):
    rng = np.random.default_rng(n)
    path.write_text("f1,f2,label\n" + "".join(f"{a:.4f},{b:.4f},{i % 2}\n" for i, (a, b) in
                                               enumerate(rng.normal(size=(n, 2)))))

def test_a_rewritten_file_is_loaded_again(app_env):
    """Finding 6: the process memo keyed files by path, so a CSV rewritten from 100 to 400 rows still showed 90
    training samples in a new session, and decisions were recorded against the old data's fingerprint."""
    from streamlit.testing.v1 import AppTest

    from dashboard.nav import ROOT

    path = app_env / "rows.csv"
    _rows_csv(path, 100)
    cfg = {"source": "files", "train": str(path), "test": None, "test_share": 0.1, "seed": 0}

    def training_samples(at=None):
        if at is None:  # a new browser session in the same app process
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
            at.session_state["data_spec"] = DataSpec(**cfg)
            at.run()
            at.switch_page("views/data.py")
        at.run()
        assert not at.exception, at.exception
        return at, next(m for m in at.metric if m.label == "Training samples").value

    at, n = training_samples()
    assert n == "90"
    _rows_csv(path, 400)
    assert training_samples()[1] == "360"
    assert training_samples(at)[1] == "360"  # and the first session sees it on its next run


# ------------------------------------------------------------------ findings 2 and 11: uploads

def _texts_csv(n_rows: int, size: int, word: str) -> bytes:
    """A text CSV of ``n_rows`` rows padded to exactly ``size`` bytes."""
    rows = [f"{word} number {i} is {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n" for i in range(n_rows)]
    body = "text,label\n" + "".join(rows)
    pad = size - len(body.encode())
    assert pad >= 0
    return ("text,label\n" + rows[0].replace(",", " " * pad + ",", 1) + "".join(rows[1:])).encode()


def test_two_sessions_uploading_the_same_name_and_size_never_share(app_env, monkeypatch):
    """Finding 2: the text page memoised an upload by (file name, size), so two browser sessions uploading
    different files with the same name and size shared one experiment."""
    from streamlit.testing.v1 import AppTest

    from dashboard.nav import ROOT

    monkeypatch.setattr("views.text_selection_parts.ENCODER", "hashing")
    files = {"first": _texts_csv(30, 2400, "film"), "second": _texts_csv(60, 2400, "show")}
    assert len(files["first"]) == len(files["second"]) and files["first"] != files["second"]
    seen_paths = {}
    for who, data in files.items():
        at = AppTest.from_file(str(ROOT / "views/text_selection.py"), default_timeout=240).run()
        at.radio(key="ts_source").set_value("csv").run()
        at.file_uploader(key="ts_csv_upload").set_value(("reviews.csv", data, "text/csv")).run()
        at.multiselect(key="ts_methods").set_value(["og_l2", "random"])
        at.number_input(key="ts_epochs").set_value(1)
        at.number_input(key="ts_seeds").set_value(1)
        at.button(key="ts_run").click().run()
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        path = Path(at.session_state["ts_last"][0][0])
        assert path.read_bytes() == data  # this session's own file
        seen_paths[who] = path
        assert {m.label: m.value for m in at.metric}["Training texts"] == str(len(data.splitlines()) - 1 - (
            len(data.splitlines()) - 1) // 5)
    assert seen_paths["first"] != seen_paths["second"]


def test_an_upload_is_staged_once_and_removed_with_its_session(tmp_path, monkeypatch):
    """Finding 11: each press of "Use these files" staged the upload into a new temporary folder, and nothing
    removed them. Now a session stages each content once, keeps a few, and its folder goes with the session."""
    import gc

    from dashboard import uploads
    from dashboard.uploads import KEEP, Staging

    staging = Staging(tmp_path)
    first = staging.add("a.csv", b"1,2\n")
    assert staging.add("a.csv", b"1,2\n") == first and first.read_bytes() == b"1,2\n"
    in_use = staging.add("../../b.csv", b"in use")  # a name never leaves the session's folder
    assert in_use.parent.parent == staging.folder and in_use.name == "b.csv"
    for i in range(KEEP + 3):
        staging.add(f"{i}.csv", str(i).encode(), in_use=[in_use])
    kept = sorted(p.name for p in staging.folder.rglob("*.csv"))
    assert len(kept) == KEEP + 1 and "b.csv" in kept and "a.csv" not in kept  # the latest few and the one in use
    folder = staging.folder
    del staging
    gc.collect()
    assert not folder.exists()  # the session ended: its uploads are gone

    made = []
    real = uploads.tempfile.mkdtemp
    monkeypatch.setattr(uploads.tempfile, "mkdtemp", lambda *a, **k: made.append(1) or real(*a, **k))
    from streamlit.testing.v1 import AppTest

    from dashboard.nav import ROOT

    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page("views/data.py").run()
    import io

    buf = io.BytesIO()
    np.savez(buf, X=np.arange(80.0).reshape(40, 2), y=np.arange(40) % 2)
    at.file_uploader[0].set_value(("train.npz", buf.getvalue(), "application/octet-stream")).run()
    for _ in range(3):
        next(b for b in at.button if b.label == "Use these files").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
    staged = at.session_state["_uploads"]
    assert len(list(staged.folder.rglob("train.npz"))) == 1
    assert len(made) <= 2  # the process's staging root (once) and this session's folder: not one per press


# ------------------------------------------------------------------ finding 14: texts are encoded once, whatever the seed

def test_a_new_seed_does_not_encode_the_texts_again(tmp_path):
    """Finding 14 (confirmed): embeddings were cached under the hash of the seeded selection, so a link with a text
    source re-encoded up to 12.6k texts per distinct seed. They are now cached per text."""
    from ogdash.core.cache import DiskCache
    from ogdash.data.encoders import HashingEncoder
    from ogdash.experiments import textselect as ts

    encoded = []

    class Counting(HashingEncoder):
        def encode(self, texts, progress=None):
            encoded.append(len(texts))
            return super().encode(texts, progress)

    cache, enc = DiskCache(tmp_path / "cache"), Counting(16)
    first, _, seconds = ts.load_text_splits(ts.ROTTEN_TOMATOES, 0.2, 0, 300, 100, enc, cache)
    assert encoded == [400] and seconds > 0
    again, _, seconds = ts.load_text_splits(ts.ROTTEN_TOMATOES, 0.3, 0, 300, 100, enc, cache)
    assert encoded == [400] and seconds == 0.0  # the same texts, other noise: nothing encoded
    other, _, _ = ts.load_text_splits(ts.ROTTEN_TOMATOES, 0.2, 1, 300, 100, enc, cache)
    fresh = len(set(other.train.texts + other.test.texts) - set(first.train.texts + first.test.texts))
    assert encoded == [400, fresh] and fresh < 400  # another seed: only texts never seen before
    np.testing.assert_array_equal(again.train.X, first.train.X)
    direct = Counting(16).encode(list(other.train.texts))
    np.testing.assert_allclose(other.train.X, direct, rtol=1e-6)  # rows in the selection's order



def test_the_browser_refuses_an_upload_over_the_limit(tmp_path, monkeypatch):
    """Finding 14 (partly confirmed): the app checked its upload limit only after Streamlit held the whole upload.
    Streamlit's own server.maxUploadSize (200 MB, now set in config.toml) matched the app's default; a lower
    OGDASH_MAX_UPLOAD_MB is now also given to every uploader, so the browser refuses a larger file before sending."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard.nav import ROOT
    from dashboard.uploads import widget_limit_mb

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("OGDASH_MAX_UPLOAD_MB", "5")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page("views/data.py").run()
    assert [u.proto.max_upload_size_mb for u in at.file_uploader] == [5, 5]
    monkeypatch.setenv("OGDASH_MAX_UPLOAD_MB", "0.01")
    assert widget_limit_mb() == 1  # whole megabytes for the browser; the app refuses the rest itself


# ------------------------------------------------------------------ finding 9: user strings are shown literally

IMAGE_LINK = "![me](http://evil.invalid/pixel.png)"
PLOTLY_LINK = "<a href='http://evil.invalid'>dog</a>"


def test_markdown_and_html_escapers():
    from dashboard.escape import html, md

    for text in (IMAGE_LINK, "[x](http://evil.invalid)", "www.evil.invalid", "a\n# heading", ":red[x] $x$ <b>",
                 "x@evil.invalid", "&lt;b&gt;"):
        escaped = md(text)
        assert "\n" not in escaped
        assert not re.search(r"(?<!\\)[\[\]()<>#:$&@.]", escaped), escaped  # no syntax character left unescaped
        assert seen(escaped) == text.replace("\n", " ")  # and the reader sees the text as typed
    assert "<" not in html(PLOTLY_LINK) and "&lt;a href=&#x27;" in html(PLOTLY_LINK)


def _unescaped_link(text: str) -> bool:
    return bool(re.search(r"(?<!\\)!?(?<!\\)\[[^\]]*(?<!\\)\]\((?!\))", text))


def _markdown_shown(at) -> list[str]:
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "subheader", "title"):
        out += [e.value for e in getattr(at, kind)] + [e.value for e in getattr(at.sidebar, kind)]
    return out


def test_user_strings_are_escaped_on_every_page(app_env, monkeypatch):
    """Finding 9: reviewer names, class names and texts went into st.markdown unescaped: an image link in a
    reviewer name made the browser fetch an outside URL, and a class name became a link in the plot legend."""
    import tempfile

    from streamlit.testing.v1 import AppTest

    from dashboard.nav import ROOT

    scratch = app_env.parent / "tmp"  # finding 11: the review page's reruns and downloads leave nothing here
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    np.savez(app_env / "[evil](http:x).npz", X=rng.normal(size=(60, 2)) + 2.0 * y[:, None], y=y,
             classes=np.array([IMAGE_LINK, PLOTLY_LINK]))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["data_spec"] = DataSpec("files", train=str(app_env / "[evil](http:x).npz"))
    at.session_state["model_config"] = {"kind": "mlp", "seed": 0, "epochs": 5}
    at.run()
    at.switch_page("views/data.py").run()
    next(b for b in at.button if b.label == "Train model").click().run()
    at.switch_page("views/gradient_space.py").run()
    next(b for b in at.button if b.label == "Extract gradients").click().run()
    at.switch_page("views/review.py").run()
    at.text_input(key="_reviewer").set_value(IMAGE_LINK).run()
    next(b for b in at.button if b.key and b.key.startswith("remove_")).click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    shown = _markdown_shown(at)
    assert any("decided" in s and seen(s).endswith(f"({IMAGE_LINK})") for s in shown)  # shown, literally
    for page in ("views/review.py", "views/data.py", "views/gradient_space.py", "views/retrain.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        for text in _markdown_shown(at):
            assert not _unescaped_link(text), (page, text)
        for chart in at.get("plotly_chart"):
            assert "<a href" not in chart.proto.spec and "evil.invalid'>" not in chart.proto.spec, page
    at.switch_page("views/review.py").run()
    assert list(scratch.iterdir()) == []  # reruns made no export or staging folder (downloads are built in memory)



# ================================================================== issue 25: the second round of probes
# Each test below is one probe of issue 25, run as it was found; the item number is in the test's docstring.

def _fresh_modules(prefix: str):
    """Forget modules named ``prefix`` or under it (a test's own packages), so one test's import does not serve
    another's."""
    import sys

    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


def test_a_factory_is_one_plain_name_checked_before_anything_is_imported(monkeypatch):
    """Item 1: 'examples.frozen_backbone:torch.os.abort' passed the allow-list (only the module was checked) and
    killed the server; os.fork and os.setsid were reachable the same way."""
    import importlib

    from dashboard.schema import factory

    imported = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name) or real(name, *a))
    for probe in ["examples.frozen_backbone:torch.os.abort", "ogdash.examples.own_network:torch.os.abort",
                  "ogdash.examples.own_network:nn.functional.relu", "ogdash.examples.own_network:__class__",
                  "ogdash.examples.own_network:_private", "ogdash.examples.__main__:main", "os:fork", "os:setsid",
                  "ogdash.examples.own_network:"]:
        with pytest.raises(ValueError) as err:
            factory(probe)
        assert "\n" not in str(err.value)
    assert imported == []  # refused from the name (or the allow-list) alone: nothing was imported
    assert factory("ogdash.examples.own_network:backbone") == "ogdash.examples.own_network:backbone"
    with pytest.raises(ValueError, match="no callable 'nn'"):  # a module it imported is not a factory
        factory("ogdash.examples.own_network:nn")


def _package(root: Path, name: str, files: dict[str, str]) -> Path:
    pkg = root / name
    pkg.mkdir(parents=True)
    for rel, text in {"__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_an_allowed_factory_must_live_in_the_allowed_package(tmp_path, monkeypatch):
    """Item 1: the imported module's real file must lie inside the allowed package's real folder, and the factory
    must be written there (a function the module imported from os is not a factory of that package)."""
    from dashboard.schema import factory

    marker = tmp_path / "ran"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef net():\n    return None\n")
    pkg = _package(tmp_path / "site", "goodnets25", {
        "nets.py": "from os import getcwd\nfrom torch import nn\n\ndef net():\n    return nn.Linear(2, 2)\n"})
    os_link = pkg / "linked.py"
    os_link.symlink_to(outside / "evil.py")  # a file in the package that is really elsewhere
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("OGDASH_MODEL_MODULES", "goodnets25")
    try:
        assert factory("goodnets25.nets:net") == "goodnets25.nets:net"
        with pytest.raises(ValueError, match=r"defined outside the allowed packages \(in 'posix'\)"):
            factory("goodnets25.nets:getcwd")
        with pytest.raises(ValueError, match="goodnets25.linked does not lie inside the allowed package"):
            factory("goodnets25.linked:net")
        assert not marker.exists()  # the linked module was refused before it was imported
    finally:
        _fresh_modules("goodnets25")


def test_examples_come_from_the_install_never_from_the_current_folder(tmp_path, monkeypatch):
    """Item 2: 'examples' was a namespace package found from the current folder, always allowed, and the dashboard
    put the current folder on sys.path: examples/pwn.py under the data root ran when a link named examples.pwn:net."""
    import sys

    import ogdash
    from dashboard.nav import keep_cwd_off_path
    from dashboard.schema import allowed_modules, factory
    from ogdash.models.user import load_factory

    root = tmp_path / "root"
    (root / "examples").mkdir(parents=True)
    marker = tmp_path / "ran"
    (root / "examples" / "pwn.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef net():\n    pass\n")
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "path", [str(root), "", *sys.path])  # as `python -m streamlit` run from the data root
    _fresh_modules("examples")
    try:
        assert "examples" not in allowed_modules() and "ogdash.examples" in allowed_modules()
        with pytest.raises(ValueError, match=r"examples\.pwn is not an allowed package"):
            factory("examples.pwn:net")
        monkeypatch.setenv("OGDASH_MODEL_MODULES", "examples")  # even allowed by name, a namespace package is not
        with pytest.raises(ValueError, match="is a namespace package"):
            factory("examples.pwn:net")
        assert not marker.exists()
        # the shipped examples are a regular package inside the installed ogdash
        load_factory("ogdash.examples.own_network:backbone", allowed=allowed_modules())
        home = Path(ogdash.__file__).resolve().parent
        assert Path(sys.modules["ogdash.examples.own_network"].__file__).resolve().parent == home / "examples"
        # the dashboard takes the current folder off sys.path when it is not the app's own folder
        keep_cwd_off_path()
        assert str(root) not in sys.path and "" not in sys.path
        before = list(sys.path)
        load_factory("ogdash.examples.own_network:classifier")
        assert sys.path == before  # the library never adds the current folder
    finally:
        _fresh_modules("examples")


def test_the_cli_imports_your_code_from_the_current_folder(tmp_path, monkeypatch, capsys):
    """Item 2: the CLI may put the current folder on sys.path for the person's own code, and says so in --help."""
    import sys

    import torch

    from ogdash.cli.main import main
    from ogdash.models.weights import save_weights

    (tmp_path / "mynet25.py").write_text("from torch import nn\n\ndef net():\n    return nn.Linear(2, 2)\n")
    torch.manual_seed(0)
    save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    np.savez(tmp_path / "train.npz", X=rng.normal(size=(40, 2)) + 2 * y[:, None], y=y)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        code = main(["scan", "--train", "train.npz", "--model", "custom", "--arch", "mynet25:net", "--weights",
                     "w.safetensors", "--no-cache", "--json"])
        assert code == 0, capsys.readouterr()
        assert json.loads(capsys.readouterr().out)["n_train"] == 32
    finally:
        _fresh_modules("mynet25")
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    assert "the current folder is importable" in capsys.readouterr().out


def test_an_unverified_email_is_not_the_identity(monkeypatch):
    """Item 3: with email_verified false, an account whose email was Boss@Example.org signed in as the admin
    boss@example.org (identities compared case-insensitively)."""
    from dashboard import auth

    monkeypatch.setattr(auth, "sign_in_on", lambda: True)
    monkeypatch.setattr(auth, "_secrets_section", lambda name: {})
    monkeypatch.setenv("OGDASH_ADMINS", "boss@example.org")
    monkeypatch.delenv("OGDASH_REVIEWERS", raising=False)
    iss = "https://id.example.org"
    for verified in (False, None, "false"):
        claims = {"is_logged_in": True, "email": "Boss@Example.org", "sub": "eve-1", "iss": iss}
        monkeypatch.setattr(auth.st, "user", claims if verified is None else {**claims, "email_verified": verified})
        assert auth.identity() == f"{iss}#eve-1" and not auth.is_admin()
        assert auth.unverified_email() == "Boss@Example.org"
    monkeypatch.setattr(auth.st, "user", {"is_logged_in": True, "email": "Boss@Example.org", "email_verified": True,
                                          "sub": "boss-1", "iss": iss})
    assert auth.identity() == "Boss@Example.org" and not auth.is_admin()  # verified, but compared exactly
    monkeypatch.setenv("OGDASH_ADMINS", "Boss@Example.org")
    assert auth.is_admin()


def _decisions_file(path, rows):
    """A decisions export: rows of (sample_id, decision, new_label, reviewer, timestamp)."""
    path.write_text("dataset,sample_id,decision,new_label,reviewer,timestamp,note\n" + "".join(
        f"fp,{sid},{dec},{'' if new is None else new},{who},{stamp},\n" for sid, dec, new, who, stamp in rows))
    return path


def test_an_import_is_recorded_as_the_signed_in_importer(tmp_path):
    """Item 3: an admin's import stored its rows under whatever reviewer names the file gave; it now records the
    importer, and the file's names are kept in the notes."""
    store = DecisionStore(tmp_path / "d.sqlite")
    f = _decisions_file(tmp_path / "d.csv", [(1, "remove", None, "ann@example.org", "2020-01-01T00:00:00"),
                                             (2, "keep", None, "boss@example.org", "2020-01-01T00:00:00")])
    assert store.import_(f, importer="lead@example.org") == 2
    rows = store.history("fp")
    assert rows["reviewer"].tolist() == ["lead@example.org", "lead@example.org"]
    assert rows["note"].tolist() == ["file's reviewer: ann@example.org", "file's reviewer: boss@example.org"]
    assert store.import_(f, importer="lead@example.org") == 0  # the same file again adds nothing
    with pytest.raises(OgdashError, match="control character"):
        store.import_(f, importer="lead\r=1+1")


def test_the_review_page_records_the_signed_in_admin_on_an_import(app_env, monkeypatch):
    """Item 3, on the page: with sign-in on, the admin's import is stored under the admin's verified identity,
    whatever reviewer the file names, and an unverified account with the admin's email sees no import at all."""
    import os

    from streamlit.testing.v1 import AppTest

    from dashboard.nav import ROOT
    from ogdash.data.folders import load_folder_splits

    monkeypatch.setenv("OGDASH_ADMINS", "boss@example.org")
    monkeypatch.delenv("OGDASH_REVIEWERS", raising=False)
    auth = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "o",
            "client_secret": "s", "server_metadata_url": "http://localhost:1/.well-known/x"}
    iss = "https://id.example.org"

    def review_as(claims):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
        at.secrets["auth"] = auth
        at.user = {"is_logged_in": True, "iss": iss, **claims}
        at.session_state["data_spec"] = DataSpec("imagefolder", path=str(app_env / "imgs"), size=8, test_share=0.25)
        at.session_state["model_config"] = {"kind": "cnn", "seed": 0, "epochs": 2}
        at.run()
        for page, label in (("views/data.py", "Train model"), ("views/gradient_space.py", "Extract gradients")):
            at.switch_page(page).run()
            button = next(b for b in at.button if b.label == label)
            if not button.disabled:  # the second session finds the first one's model and gradients in the memo
                button.click().run()
        at.switch_page("views/review.py").run()
        assert not at.exception, at.exception
        return at

    impostor = review_as({"email": "boss@example.org", "email_verified": False, "sub": "eve-1"})
    assert not any(e.label == "Import decisions (admins)" for e in impostor.expander)
    boss = review_as({"email": "boss@example.org", "email_verified": True, "sub": "boss-1"})
    f = _decisions_file(app_env / "d.csv", [(0, "remove", None, "eve@example.org", "2020-01-01T00:00:00")])
    boss.file_uploader(key="import_decisions").set_value(("d.csv", f.read_bytes(), "text/csv")).run()
    next(b for b in boss.button if b.label == "Import").click().run()
    assert not boss.exception and not boss.error, [e.value for e in boss.error]
    dataset = load_folder_splits(app_env / "imgs", 8, test_share=0.25, seed=0).train.fingerprint()
    rows = DecisionStore(os.environ["OGDASH_DECISIONS"]).history(dataset)
    assert rows[["reviewer", "note"]].values.tolist() == [["boss@example.org", "file's reviewer: eve@example.org"]]


def test_a_label_studio_export_cannot_choose_who_decided(tmp_path):
    """Item 3: a Label Studio export file's completed_by {"email": ...} chose the reviewer: any name, by editing
    the file. Now an annotator is known by user id: --user ID=NAME or the server's list names it."""
    from ogdash.labelstudio import annotator

    claim = {"id": 3, "email": "boss@example.org", "username": "boss"}
    assert annotator(claim, {}) == "label studio user 3"
    assert annotator(claim, {3: "ann@example.org"}) == "ann@example.org"
    assert annotator(3, {3: "ann@example.org"}) == "ann@example.org"


def test_a_parquet_file_is_capped_from_its_footer(tmp_path, monkeypatch):
    """Item 4: a 49 KB Parquet file became 6 M values (1.34 GB peak) under OGDASH_MAX_ELEMENTS=1000000."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "many.parquet"
    n = 3_000_000
    pq.write_table(pa.table({"f": np.zeros(n, np.int8), "label": (np.arange(n) % 2).astype(np.int8)}), path)
    assert path.stat().st_size < 200_000
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "1000000")
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("read before the footer was checked"))
    with pytest.raises(OgdashError, match=r"3,000,000 rows and 2 columns would hold 6,000,000 values"):
        load_file(path)


def test_images_in_a_table_are_capped_from_their_headers(tmp_path, monkeypatch):
    """Item 4: a 1 KB Parquet file of eight 2500x2500 PNGs became 50 M values."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image, ImageFile

    cells = []
    for i in range(8):
        buf = io.BytesIO()
        Image.new("L", (2500, 2500), 30 * i).save(buf, "PNG")
        cells.append({"bytes": buf.getvalue(), "path": None})
    path = tmp_path / "big_images.parquet"
    pq.write_table(pa.table({"image": cells, "label": [i % 2 for i in range(8)]}), path)
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "1000000")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded before the cap was checked"))
    with pytest.raises(OgdashError, match=r"8 images of 1 channel\(s\) at 2500x2500 would hold 50,000,000 values"):
        load_file(path)


def test_a_dataset_folder_is_capped_by_its_rows(tmp_path, monkeypatch):
    """Item 4: a 3 M-row dataset folder loaded whatever the cap; its rows are counted from its Arrow files first."""
    datasets = pytest.importorskip("datasets")
    n = 600_000
    datasets.Dataset.from_dict({"f": np.zeros(n, np.int8), "label": (np.arange(n) % 2).astype(np.int8)}
                               ).save_to_disk(str(tmp_path / "rows"))
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "1000000")
    monkeypatch.setattr(datasets, "load_from_disk", lambda *a, **k: pytest.fail("read before the cap was checked"))
    with pytest.raises(OgdashError, match=r"600,000 rows and 2 columns would hold 1,200,000 values"):
        load_file(tmp_path / "rows")


def _declared_cifar(root: Path, rows: int = 10_000) -> Path:
    """A CIFAR-10 folder whose ~100-byte batches each declare numpy.ndarray((rows, 3072)): memory from a shape."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    batch = (b"(dp0\nS'data'\np1\ncnumpy\nndarray\np2\n((I" + str(rows).encode() + b"\nI3072\nttp3\nRp4\n"
             b"sS'labels'\np5\n(lp6\ns.")  # pickle protocol 0: {'data': numpy.ndarray((rows, 3072)), 'labels': []}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (base / name).write_bytes(batch)
    return root


def test_a_cifar_batch_is_capped_by_the_shape_its_pickle_declares(tmp_path, monkeypatch):
    """Item 4: six ~20 KB CIFAR batches pickling ndarray((10000, 3072)) became 153 M values (1.7 GB)."""
    from ogdash.data.folders import load_cifar

    root = _declared_cifar(tmp_path)
    assert (root / "cifar-10-batches-py" / "data_batch_1").stat().st_size < 200
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "1000000")
    with pytest.raises(OgdashError, match=r"data_batch_1: an array of shape \(10000, 3072\) would hold 30,720,000"):
        load_cifar(root)
    monkeypatch.delenv("OGDASH_MAX_ELEMENTS")  # under the cap, a declared array without its data is no CIFAR batch
    small = _declared_cifar(tmp_path / "small", rows=2)
    with pytest.raises(OgdashError, match=r"'labels' is not one label per image"):
        load_cifar(small)


def test_a_csv_with_carriage_returns_only_is_counted(tmp_path, monkeypatch):
    """Item 4: the line count knew only \\n, so a CSV ending its lines with \\r alone passed the cap (1.2 M values
    under a 1 M cap)."""
    from ogdash.data.limits import count_lines

    path = tmp_path / "cr.csv"
    path.write_bytes(b"f,label\r" + b"".join(b"%d,%d\r" % (i, i % 2) for i in range(600)))
    assert count_lines(path) == 601
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(b"a\r\nb\rc\nd")
    assert count_lines(mixed) == 3 and count_lines(mixed, block=2) == 3  # \r\n across a block boundary: one
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "1000")
    _refuse_to_parse(monkeypatch)
    with pytest.raises(OgdashError, match=r"a table of 2 columns would hold 1,200 values"):
        load_file(path)


def _upload_app(manager, runtime):
    """Streamlit's own upload route (the server's code), on a test client."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    from streamlit.web.server.starlette.starlette_routes import create_upload_routes

    return TestClient(Starlette(routes=create_upload_routes(runtime, manager, None)))


def test_signed_out_sessions_cannot_upload_and_each_session_is_capped(monkeypatch):
    """Item 5: a signed-out visitor's session took 6 x 25 MB PUTs to /_stcore/upload_file (+150 MB)."""
    from streamlit import config
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

    from dashboard import upload_guard

    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    upload_guard.guard(manager)
    upload_guard.guard(manager)  # once is enough: a second call does not wrap it again

    class Runtime:
        def is_active_session(self, session_id):
            return session_id in ("signed_out", "signed_in", "never_ran")

    monkeypatch.setitem(upload_guard._MAY_UPLOAD, "signed_out", False)
    monkeypatch.setitem(upload_guard._MAY_UPLOAD, "signed_in", True)
    monkeypatch.setenv("OGDASH_MAX_SESSION_UPLOAD_MB", "1")
    before = config.get_option("server.enableXsrfProtection")
    config.set_option("server.enableXsrfProtection", False)  # the browser's token is not what is tested here
    try:
        client = _upload_app(manager, Runtime())
        put = lambda sid, fid, size: client.put(f"/_stcore/upload_file/{sid}/{fid}",  # noqa: E731
                                                files={"file": ("x.npz", b"\0" * size)}).status_code
        assert put("signed_out", "a", 1000) == 403
        assert put("never_ran", "a", 1000) == 403  # a websocket opened by hand that never ran the app
        assert put("signed_in", "a", 600_000) == 204
        assert put("signed_in", "a", 700_000) == 204  # the same file id replaced: its old bytes do not count
        assert put("signed_in", "b", 600_000) == 413  # 0.7 + 0.6 MB over the session's 1 MB
        assert manager.file_storage.get("signed_out") is None
        assert sum(len(f.data) for f in manager.file_storage["signed_in"].values()) == 700_000
    finally:
        config.set_option("server.enableXsrfProtection", before)


def test_each_run_notes_whether_its_session_may_upload(tmp_path, monkeypatch):
    """Item 5: app.py tells the guard, on every run, whether its session is signed in (with sign-in on)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard import upload_guard
    from dashboard.nav import ROOT

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    auth = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "o",
            "client_secret": "s", "server_metadata_url": "http://localhost:1/.well-known/x"}
    noted = []
    monkeypatch.setattr(upload_guard, "_MAY_UPLOAD", type("Notes", (dict,), {
        "__setitem__": lambda self, k, v: noted.append(v) or dict.__setitem__(self, k, v)})())
    for user, expect in (({"is_logged_in": False}, False), ({"is_logged_in": True, "email": "a@x",
                                                              "email_verified": True}, True)):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
        at.secrets["auth"] = auth
        at.user = user
        at.run()
        assert not at.exception and noted[-1] is expect


def test_a_symlink_loop_does_not_hang_a_folders_stamp(tmp_path):
    """Item 6: file_stamp walked with followlinks=True: a link to a folder above it went round forever (438 k
    folders in 10 s, never returned), on every request naming that folder."""
    import subprocess
    import sys

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.png").write_bytes(b"x")
    for name in ("up", "again"):  # two links back up: every level of the walk doubles, it never ends
        (tmp_path / "a" / "b" / name).symlink_to(tmp_path / "a")
    code = ("import sys; from dashboard.memo import stamp; from ogdash.core.cache import file_stamp;"
            "print(stamp(sys.argv[1]) == file_stamp(sys.argv[1]) is not None)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=20,
                         cwd=Path(__file__).resolve().parents[1])  # a hang is a TimeoutExpired: the test fails
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def test_a_folders_stamp_is_bounded(tmp_path, monkeypatch):
    """Item 6: the walk stops after MAX_STAMP_ENTRIES files and folders, and says so in the stamp."""
    from ogdash.core import cache

    for i in range(30):
        (tmp_path / f"{i}.txt").write_text("x")
    monkeypatch.setattr(cache, "MAX_STAMP_ENTRIES", 10)
    stamp = cache.file_stamp(tmp_path)
    assert stamp[-1] == "first 10 entries"
    (tmp_path / "0.txt").write_text("changed")  # a change among the files it listed is still seen
    assert cache.file_stamp(tmp_path) != stamp


def test_an_import_relabel_beyond_the_classes_is_refused(tmp_path):
    """Item 7: an imported relabel to "999" (10 classes) or 10**18 was stored, then broke the Review page with an
    IndexError box and took the export section with it."""
    store = DecisionStore(tmp_path / "d.sqlite")
    for target in (999, 10**18, 10):
        f = _decisions_file(tmp_path / "d.csv", [(1, "keep", None, "ann", "2020-01-01T00:00:00"),
                                                 (2, "relabel", target, "ann", "2020-01-01T00:00:00")])
        with pytest.raises(OgdashError, match=rf"Row 2 of d.csv: new_label {target} is not a class of this data "
                                              r"\(0\.\.9\)"):
            store.import_(f, n_classes=10)
    assert store.history("fp").empty  # refused whole
    assert store.import_(_decisions_file(tmp_path / "ok.csv", [(2, "relabel", 9, "ann", "2020-01-01")]),
                         n_classes=10) == 1
    with pytest.raises(OgdashError, match="not a class of this data"):
        store.record("fp", 3, "relabel", "ann", new_label=10, n_classes=10)


def test_a_card_with_a_bad_stored_label_says_so(app_env):
    """Item 7: a decision stored before imports were checked (a relabel to class 999 of 2) shows as bad on its card;
    the page and its export section stay."""
    import os

    from streamlit.testing.v1 import AppTest

    from dashboard.nav import ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["data_spec"] = DataSpec("imagefolder", path=str(app_env / "imgs"), size=8, test_share=0.25)
    at.session_state["model_config"] = {"kind": "cnn", "seed": 0, "epochs": 2}
    at.run()
    at.switch_page("views/data.py").run()
    next(b for b in at.button if b.label == "Train model").click().run()
    at.switch_page("views/gradient_space.py").run()
    next(b for b in at.button if b.label == "Extract gradients").click().run()
    at.switch_page("views/review.py").run()
    sid = int(next(b for b in at.button if b.key and b.key.startswith("remove_")).key.split("_")[1])
    from ogdash.data.folders import load_folder_splits

    dataset = load_folder_splits(app_env / "imgs", 8, test_share=0.25, seed=0).train.fingerprint()  # as the page's
    DecisionStore(os.environ["OGDASH_DECISIONS"]).record(dataset, sid, "relabel", "old import", new_label=999)
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    assert any("not a class of this data" in m.value and "999" in m.value for m in at.markdown)
    assert any(s.value == "Export" for s in at.subheader)
    assert [b.label for b in at.get("download_button")][:3] == ["Decisions (.csv)", "Decisions (.json)",
                                                                "Folder changes (.csv)"]


def test_the_csv_guard_covers_every_line_of_every_text_cell():
    """Item 8: a carriage return or newline inside a cell bypassed the formula guard (a reviewer name
    "ann\\r=cmd|' /C calc'!A0" from the URL's reviewer=); every text cell is now quoted, and every line checked."""
    import pandas as pd

    from ogdash.exports import csv_bytes

    frame = pd.DataFrame({"reviewer": ["ann\r=cmd|' /C calc'!A0", "bob\n+1", "eve\r\n@SUM(1)", "\t=1", "ok",
                                       "＝1"], "sample_id": [1, 2, 3, 4, 5, 6]})
    import io

    text = csv_bytes(frame).decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))  # quoted line breaks come back inside their cell
    cells = [r[0] for r in rows[1:]]
    assert cells == ["ann\r'=cmd|' /C calc'!A0", "bob\n'+1", "eve\r\n'@SUM(1)", "'\t=1", "ok", "'＝1"]
    for cell in cells:
        for line in re.split(r"\r\n|\r|\n", cell):
            assert not re.match(r"[=+\-@\t＝＋－＠]", line), cell
    assert text.startswith('"reviewer","sample_id"')  # the header row is quoted too
    assert re.search(r'^"ok",5$', text, re.M)  # text quoted, numbers as they are


def test_reviewer_names_with_control_characters_are_refused(tmp_path):
    """Item 8: the reviewer name came from the URL's reviewer= unchecked; a control character is refused by the
    store and the address falls back to no name."""
    from dashboard.state import _view_fields

    store = DecisionStore(tmp_path / "d.sqlite")
    for name in ("ann\r=cmd|' /C calc'!A0", "ann\n", "a\tb", "a\x00b", "a\u202eb", "a\u2028b"):
        with pytest.raises(OgdashError, match="control character"):
            store.record("fp", 1, "keep", name)
    assert store.history("fp").empty
    parse = _view_fields()["reviewer"][1]
    assert parse("  ann  ") == "ann"
    with pytest.raises(ValueError):
        parse("ann\r=cmd|' /C calc'!A0")


def _hf_folder(path: Path, n: int = 6) -> Path:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"f": list(range(n)), "label": [i % 2 for i in range(n)]}).save_to_disk(str(path))
    return path


def test_a_dataset_folder_cannot_name_data_files_outside_it(tmp_path, monkeypatch):
    """Item 9: state.json's _data_files named ../ paths, and values were read from an Arrow file outside the data
    root; every data file must now lie inside the dataset's folder."""
    import datasets

    secret = _hf_folder(tmp_path / "outside" / "secret", 6)
    folder = _hf_folder(tmp_path / "root" / "ds", 6)
    state = json.loads((folder / "state.json").read_text())
    target = next(secret.glob("*.arrow"))
    for name in (f"../../outside/secret/{target.name}", str(target)):
        state["_data_files"] = [{"filename": name}]
        (folder / "state.json").write_text(json.dumps(state))
        monkeypatch.setattr(datasets, "load_from_disk", lambda *a, **k: pytest.fail("read before it was checked"))
        with pytest.raises(OgdashError, match="data file 1 of state.json is not an .arrow file inside the dataset "
                                              "folder"):
            load_file(folder)
    (folder / "link.arrow").symlink_to(target)  # a link inside that leads out
    state["_data_files"] = [{"filename": "link.arrow"}]
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(OgdashError, match="not an .arrow file inside"):
        load_file(folder)


def test_a_dataset_folder_may_name_known_dtypes_only(tmp_path, monkeypatch):
    """Item 9: Value(dtype=NAME) in dataset_info.json called pyarrow.NAME(), whatever NAME was."""
    import pyarrow as pa

    folder = _hf_folder(tmp_path / "ds")
    info = json.loads((folder / "dataset_info.json").read_text())
    called = []
    monkeypatch.setattr(pa, "show_versions", lambda *a: called.append(1), raising=False)
    for dtype in ("show_versions", "jemalloc_memory_pool", "__class__"):
        info["features"]["f"] = {"dtype": dtype, "_type": "Value"}
        (folder / "dataset_info.json").write_text(json.dumps(info))
        with pytest.raises(OgdashError, match="names an unknown dtype"):
            load_file(folder)
    assert called == []
    info["features"]["label"] = {"names_file": "/etc/passwd", "_type": "ClassLabel"}
    info["features"]["f"] = {"dtype": "int64", "_type": "Value"}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(OgdashError, match="ClassLabel names a file"):
        load_file(folder)
    info["features"]["label"] = {"dtype": "int64", "_type": "Value"}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    assert load_file(folder).n == 6  # a well-formed folder still loads


def test_a_deeply_nested_link_is_refused_before_parsing(app_env):
    """Item 10: a link holding 3,000 nested [ raised RecursionError on every run of that session."""
    from dashboard.schema import link_json

    with pytest.raises(OgdashError, match="they nest 3,000 levels deep, over 8"):
        link_json("[" * 3000)
    with pytest.raises(OgdashError, match="over 4,000"):
        link_json("[" + "1," * 3000 + "1]")
    assert link_json('{"a": "[[[[[[[[[[", "b": [1, {"c": "\\\\\\""}]}') == {"a": "[[[[[[[[[[", "b": [1, {"c": '\\"'}]}
    at, errors = open_link({"data": "[" * 3000, "model": "{" * 3000})
    assert len(errors) == 2 and all("levels deep" in e for e in errors), errors
    for page in ANALYSIS_PAGES:  # every page of that session opens
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)


def test_csv_errors_name_positions_never_contents(tmp_path):
    """Item 11: a non-integer label and the names of non-numeric columns were echoed in the error; a file that is
    not what it should be may hold anything, so the message says where, not what."""
    path = tmp_path / "leak.csv"
    path.write_text(f"f1,label\n1,0\n2,{SECRET}\n3,1\n")
    with pytest.raises(OgdashError) as err:
        load_file(path)
    assert "AKIA" not in str(err.value) and "1 of 3 are not (the first at line 3)" in str(err.value)
    path.write_text(f"f1,{SECRET},label\n1,a,0\n2,b,1\n")
    with pytest.raises(OgdashError) as err:
        load_file(path)
    assert "AKIA" not in str(err.value) and "1 are not (column 2, counting from 1)" in str(err.value)


def test_an_import_dated_ahead_does_not_outrank_a_later_decision(tmp_path):
    """Item 11: an import dated up to 5 minutes ahead (within the clock skew allowed) outranked a decision made
    after it. Decisions now rank by when the store received them; the claimed time is kept as data."""
    from datetime import datetime, timedelta, timezone

    store = DecisionStore(tmp_path / "d.sqlite")
    ahead = (datetime.now(timezone.utc) + timedelta(minutes=4)).isoformat(timespec="microseconds")
    assert store.import_(_decisions_file(tmp_path / "ahead.csv", [(1, "remove", None, "eve", ahead)])) == 1
    store.record("fp", 1, "keep", "ann")  # decided after the import was received
    assert store.current("fp")[["decision", "reviewer"]].values.tolist() == [["keep", "ann"]]
    assert ahead in store.history("fp")["timestamp"].tolist()  # the claimed time is kept
    assert store.history("fp")["reviewer"].tolist() == ["eve", "ann"]  # and history is in ranking order
    # an old import still never outranks the decisions made before it arrived
    store.import_(_decisions_file(tmp_path / "old.csv", [(1, "relabel", 0, "bob", "2020-01-01T00:00:00")]))
    assert store.current("fp")["decision"].tolist() == ["keep"]


def test_a_store_from_before_received_times_still_opens(tmp_path):
    """Item 11: a decision store written before the ``received`` column gets it; its old rows rank by their time."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript("""CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL,
            sample_id INTEGER NOT NULL, decision TEXT NOT NULL, new_label INTEGER, reviewer TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '', timestamp TEXT NOT NULL);
            INSERT INTO decisions (dataset, sample_id, decision, reviewer, timestamp)
            VALUES ('fp', 1, 'remove', 'ann', '2020-01-01T00:00:00.000000+00:00');""")
    store = DecisionStore(path)
    assert store.current("fp")["decision"].tolist() == ["remove"]
    store.record("fp", 1, "keep", "bob")
    assert store.current("fp")["decision"].tolist() == ["keep"]

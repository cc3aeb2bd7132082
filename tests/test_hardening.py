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
    ({"model": {"kind": "mlp", "hidden": [10**9]}}, r"hidden: 1000000000 is not a whole number from 1 to 4,096"),
    ({"model": {"kind": "mlp", "epochs": 10**12}}, r"epochs: 1000000000000 is not a whole number"),
]


@pytest.mark.parametrize("query, needle", BAD_LINKS, ids=lambda x: re.sub(r"\W+", "_", str(x))[:50])
def test_a_bad_link_gives_one_message_and_the_defaults(app_env, query, needle, monkeypatch):
    """Finding 3: only a link's paths were checked. size=2000 on 15 small images took memory from 0.95 to 2.5 GB;
    arch=vit_h_14 built a 3.5 GB model on every rerun before noticing the missing weights file; a torchvision model
    without 'arch' showed a KeyError traceback on every page."""
    from ogdash.models import zoo

    monkeypatch.setattr(zoo, "torchvision_model", lambda *a: pytest.fail("a model was built from a bad link"))
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

    from ogdash.models.train import load_torchvision

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

    monkeypatch.setattr("dashboard.text.ENCODER", "hashing")
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


"""Probes from the security review (issue 20), each reproduced: what a user, a file or a link can give."""
import csv
import json

import numpy as np
import pytest

from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data.files import load_file
from ogdash.data.folders import safe_unpickle
from ogdash.experiments.text_data import load_text_csv
from ogdash.review import DecisionStore

SECRET = "aws_secret_access_key=AKIAEXAMPLESECRET"


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

"""What a reviewer sees beside a flag, in the library: neighbours from the given and the suggested class, the
class pairs of the flags, z-scores against the given class, search by id, file name, row or text, and the
scan stages that keep them."""
import numpy as np
import pytest

from ogdash.data.dataset import Splits, make_dataset
from ogdash.data.search import SearchIndex, find_samples
from ogdash.explain import class_stats, flag_pairs, nearest_in_classes, top_pairs, unusual_features
from ogdash.explain.zscores import zscores
from ogdash.pipeline import Scan, ScanSettings


def brute(rows, labels, q, c, k):
    """The k most similar rows of class c to row q (never q itself), by a plain loop."""
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit[q]
    cand = [i for i in range(len(rows)) if labels[i] == c and i != q]
    return sorted(cand, key=lambda i: -sims[i])[:k], sims


@pytest.mark.parametrize("chunk", [7, 64, 8192])
def test_neighbours_match_a_plain_search_in_every_chunking(chunk):
    rng = np.random.default_rng(0)
    rows, labels = rng.normal(size=(300, 6)).astype(np.float32), rng.integers(0, 4, 300)
    queries = np.array([0, 5, 17, 299])
    classes = np.stack([labels[queries], (labels[queries] + 1) % 4], 1)
    classes[1, 1] = -1  # no second class for this query
    found, sims = nearest_in_classes(rows, labels, queries, classes, k=5, chunk=chunk)
    assert found.shape == sims.shape == (4, 2, 5)
    for i, q in enumerate(queries):
        for j in range(2):
            if classes[i, j] < 0:
                assert (found[i, j] == -1).all() and np.isnan(sims[i, j]).all()
                continue
            want, all_sims = brute(rows, labels, q, classes[i, j], 5)
            assert found[i, j].tolist() == want
            np.testing.assert_allclose(sims[i, j], all_sims[want], rtol=1e-4, atol=1e-5)
            assert q not in found[i, j]  # never its own neighbour


def test_a_class_with_fewer_rows_than_k_pads_and_zero_rows_are_harmless():
    rows = np.array([[1, 0], [0, 0], [1, 1], [2, 0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0])
    found, sims = nearest_in_classes(rows, labels, [0], [[1, 0]], k=3)
    assert found[0, 0].tolist() == [2, 1, -1] and sims[0, 0][1] == 0  # the zero row: similarity 0, not nan
    assert found[0, 1].tolist() == [3, -1, -1]  # class 0 holds only itself and one other
    found, _ = nearest_in_classes(rows, labels, [], np.zeros((0, 2)), k=3)
    assert found.shape == (0, 2, 3)


def test_neighbours_at_50000_rows_read_in_chunks():
    rng = np.random.default_rng(1)
    rows, labels = rng.normal(size=(50_000, 32)).astype(np.float32), rng.integers(0, 100, 50_000)
    queries = rng.choice(50_000, 12, replace=False)
    found, _ = nearest_in_classes(rows, labels, queries, np.stack([labels[queries]] * 2, 1), k=3)
    for i, q in enumerate(queries[:3]):
        assert found[i, 0].tolist() == brute(rows, labels, q, labels[q], 3)[0]
    assert (labels[found[found >= 0]] == np.repeat(labels[queries], 6)[(found >= 0).reshape(-1)]).all()


def test_flag_pairs_count_given_against_suggested():
    given = np.array([0, 0, 1, 2, 2, 2])
    suggested = np.array([1, 1, 1, 0, 0, 1])
    flags = np.array([True, True, True, True, False, True])
    m = flag_pairs(given, suggested, flags, 3)
    assert m.tolist() == [[0, 2, 0], [0, 1, 0], [1, 1, 0]] and m.sum() == flags.sum()
    assert top_pairs(m) == [(0, 1, 2), (1, 1, 1), (2, 0, 1), (2, 1, 1)]
    assert top_pairs(m, 1) == [(0, 1, 2)]


def test_zscores_against_the_given_class():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 4))
    y = rng.integers(0, 3, 500)
    X[:, 3] = y  # constant within each class
    stats = class_stats(X, y, 3, chunk=37)
    for c in range(3):
        np.testing.assert_allclose(stats.mean[c], X[y == c].mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats.std[c], X[y == c].std(0), rtol=1e-4, atol=1e-6)
    assert stats.count.tolist() == np.bincount(y, minlength=3).tolist()
    row = X[0].copy()
    row[1] = stats.mean[y[0], 1] + 5 * stats.std[y[0], 1]
    top = unusual_features(row, y[0], stats, top=2)
    assert top[0]["feature"] == 1 and top[0]["z"] == pytest.approx(5, rel=1e-3)
    row[3] = y[0] + 1  # off a value the class never varies from
    assert zscores(row, y[0], stats)[3] == np.inf and unusual_features(row, y[0], stats, 1)[0]["feature"] == 3


def test_search_by_id_source_and_text():
    ds = make_dataset("t", np.zeros((5, 2)), [0, 1, 0, 1, 0], ids=[10, 11, 12, 70, 7],
                      sources=["a/cat_7.png", "line 7", "line 70", "b/Dog.PNG", "row 3"],
                      texts=["A fine film", "dull", "Fine acting, poor plot", "x", "seven 7"])
    find = lambda q: find_samples(ds, q).tolist()  # noqa: E731
    assert find("") == [] and find("   ") == []
    assert find("id 7") == [4] and find("line 7") == [1] and find("row 3") == [4]
    assert find("7") == [0, 1, 4]  # id 7, line 7, and the names and texts holding a 7 (not "line 70")
    assert find("dog.png") == [3] and find("FINE") == [0, 2] and find("poor plot") == [2]
    assert find("99999999999999999999") == [] and find("nothing like it") == []
    assert find("png\x00line") == [] and find("9999999999999999999") == []  # never across entries; past int64
    index = SearchIndex.of(ds)
    assert find_samples(ds, "fine", index).tolist() == [0, 2]


@pytest.fixture(scope="module")
def small_scan():
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 3, (3, 5))
    y = rng.integers(0, 3, 240)
    X = centres[y] + rng.normal(size=(240, 5))
    noisy = y.copy()
    noisy[:24] = (y[:24] + 1) % 3
    train = make_dataset("blobs", X, noisy, classes=("a", "b", "c"), y_true=y,
                         sources=[f"line {i + 2}" for i in range(240)], feature_names=list("vwxyz"))
    return Scan(Splits(train, None), "logreg", ScanSettings(budget=0.1))


def test_the_scan_keeps_neighbours_pairs_and_zscores_as_stages(small_scan, monkeypatch):
    scan = small_scan
    flags, suggested, y = scan.flags(), scan.suggested(), scan.train.y
    assert (suggested == scan.probabilities().argmax(1)).all()
    pos = np.flatnonzero(flags)[:6].tolist()
    near = scan.neighbours(pos)
    for p in pos:
        given_pos, sims = near[p]["given"]
        assert len(given_pos) == 3 and (y[given_pos] == y[p]).all() and p not in given_pos
        assert (np.diff(sims) <= 1e-6).all()  # most similar first
        if suggested[p] == y[p]:
            assert near[p]["suggested"] is None
        else:
            assert (y[near[p]["suggested"][0]] == suggested[p]).all()
    import ogdash.pipeline as pipeline

    calls = []
    monkeypatch.setattr(pipeline, "nearest_in_classes", lambda *a, **k: calls.append(1))
    assert scan.neighbours(pos[::-1]).keys() == set(pos)  # asked before: from the stage, nothing computed
    assert calls == []

    pairs = scan.class_pairs()
    assert pairs.sum() == flags.sum() and pairs.shape == (3, 3)
    assert pairs[0].sum() == (flags & (y == 0)).sum()
    assert scan.class_pairs() is pairs  # a stage
    unusual = scan.unusual_features(pos[:2], top=3)
    assert all(len(u) == 3 and abs(u[0]["z"]) >= abs(u[-1]["z"]) for u in unusual.values())
    assert scan.find("line 2").tolist() == [0] and scan.find("line 2").tolist() == [0]


def test_image_scans_have_no_feature_zscores():
    X = np.random.default_rng(4).random((40, 1, 6, 6)).astype(np.float32)
    train = make_dataset("imgs", X, np.arange(40) % 2)
    scan = Scan(Splits(train, None), "cnn", ScanSettings(budget=0.1))
    assert scan.feature_stats() is None and scan.unusual_features([0, 1]) == {0: [], 1: []}

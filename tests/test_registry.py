"""The method registry is the one source of methods; every detector follows one protocol; the layers import one way."""
import argparse
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ogdash.core.errors import OgdashError
from ogdash.detect import baselines, classwise, ensemble, forest, heldout, norms, projected, registry, svm
from ogdash.detect.registry import DETECTORS, ENSEMBLES, METHODS, InfluenceInputs, make_detector, method
from ogdash.detect.scoring import score
from ogdash.engine.gradients import GradientSet
from ogdash.influence.quality import LABEL_QUALITY_METHODS

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {"outlier gradient", "class-conditional", "held-out", "ensemble", "label quality", "influence", "floor"}
DETECTOR_MODULES = (norms, forest, svm, classwise, heldout, baselines, ensemble, projected)


def planted(n=150, K=3, H=6, n_wrong=15, seed=0):
    """Closed-form last-layer gradients of a model that learnt the true classes; ``n_wrong`` given labels are wrong.

    Returns (gradients, given labels, which are wrong, clean validation gradients).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(K, H))

    def gradients(y_true, y_given, offset):
        m = len(y_true)
        h = (centres[y_true] + 0.4 * rng.normal(size=(m, H))).astype(np.float32)
        P = np.full((m, K), 0.05)
        P[np.arange(m), y_true] = 0.9
        e = P.copy()
        e[np.arange(m), y_given] -= 1
        return GradientSet(np.arange(m) + offset, P, -np.log(P[np.arange(m), y_given]), "head",
                           errors=e.astype(np.float32), acts=h, bias=True)

    y_true = np.repeat(np.arange(K), n // K)
    y = y_true.copy()
    wrong = np.zeros(n, bool)
    wrong[rng.choice(n, n_wrong, replace=False)] = True
    y[wrong] = (y[wrong] + rng.integers(1, K, wrong.sum())) % K
    val_true = np.repeat(np.arange(K), 20)
    return gradients(y_true, y, 0), y, wrong, gradients(val_true, val_true, 10**6)


def test_every_entry_resolves_and_is_described():
    assert len({m.key for m in METHODS}) == len(METHODS)
    for m in METHODS:
        assert method(m.key) is m
        assert m.label and m.description and m.family in FAMILIES, m.key
        assert (m.build, m.compute, m.matrix) != (None, None, None), f"{m.key} says how to compute it"
    assert list(DETECTORS) == [m.key for m in METHODS if m.is_detector]
    assert registry.RECOMMENDED in DETECTORS
    assert [m.key for m in registry.family("label quality")] == list(LABEL_QUALITY_METHODS)
    for name, (members, _, _) in ENSEMBLES.items():
        assert all(method(k).build is not None for k in members), name
    with pytest.raises(OgdashError, match="unknown method"):
        method("nope")


@pytest.mark.parametrize("key", [m.key for m in METHODS if m.build is not None and m.family != "floor"])
def test_every_buildable_entry_scores_the_wrong_labels_higher(key):
    gs, y, wrong, val = planted()
    s = score(gs, key, val if method(key).needs_validation else None, seed=0, labels=y)
    assert s.shape == (gs.n,) and s.dtype == np.float64 and np.all(np.isfinite(s))
    # higher = more detrimental (class-mean alignment is built for confusable pairs, not these scattered flips)
    assert roc_auc_score(wrong, s) > (0.65 if key == "pc_align" else 0.8), key


def test_the_floor_and_the_influence_entries_score_every_sample():
    gs, y, wrong, _ = planted()
    s = score(gs, "random", seed=3)
    assert sorted(s) == list(range(gs.n)) and np.array_equal(s, score(gs, "random", seed=3))
    G = gs.matrix().astype(np.float64)
    p = G.shape[1]
    inputs = InfluenceInputs(hessian=G.T @ G + np.eye(p), damping=0.0, iterations=200)
    for m in registry.family("influence"):
        s = m.compute(G, inputs)
        assert s.shape == (gs.n,) and np.all(np.isfinite(s)), m.key
    for m in (method("self_lissa"), method("self_datainf")):  # self-influence: the wrong labels' gradients are large
        assert roc_auc_score(wrong, m.compute(G, inputs)) > 0.8, m.key
    for key in ("oga", "tracin", "datainf"):
        M, _ = method(key).matrix(G, G[:5], y, 3, None, 0)
        assert M.shape == (5, gs.n), key


def detector_classes():
    found = {}
    for module in DETECTOR_MODULES:
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and hasattr(obj, "score_samples"):
                found[name] = obj
    return found


def unfitted():
    return {
        "NormDetector": norms.NormDetector(),
        "SklearnDetector": forest.isolation_forest(0),
        "KernelOneClassSVM": svm.KernelOneClassSVM(),
        "PerClass": classwise.PerClass(classwise.KnnDistance),
        "KnnDistance": classwise.KnnDistance(),
        "MeanAlignment": classwise.MeanAlignment(),
        "HeldOutMargin": heldout.HeldOutMargin(),
        "LabelQuality": baselines.LabelQuality(),
        "RandomScores": baselines.RandomScores(),
        "Ensemble": ensemble.Ensemble([norms.NormDetector()]),
        "Projected": projected.Projected(classwise.KnnDistance()),
    }


def test_scoring_before_fit_raises_for_every_detector_class():
    classes, instances = detector_classes(), unfitted()
    assert set(classes) == set(instances)  # a new detector class must be listed here
    gs, y, _, _ = planted(n=30, n_wrong=3)
    for name, det in instances.items():
        with pytest.raises(OgdashError, match="call fit first"):
            det.score_samples(gs, y)
        assert det.fit(gs, y) is det, name  # fit returns the detector
        assert det.score_samples(gs, y).shape == (gs.n,), name


def test_every_detector_class_follows_the_protocol():
    for name, cls in detector_classes().items():
        init = cls.__init__
        params = [] if init is object.__init__ else list(inspect.signature(init).parameters.values())[1:]
        # keyword-only parameters; meta-detectors take the detector(s) they wrap first, as scikit-learn's do
        positional = [p.name for p in params if p.kind != p.KEYWORD_ONLY]
        assert positional in ([], ["estimator"], ["factory"], ["members"], ["detector"]), (name, positional)
        for fn in ("fit", "score_samples"):
            assert list(inspect.signature(getattr(cls, fn)).parameters)[:3] == ["self", "G", "y"], (name, fn)
            doc = getattr(cls, fn).__doc__ or ""
            assert "Parameters" in doc and "Returns" in doc, (name, fn)
        assert cls.__doc__ and "Attributes" in cls.__doc__, name


def test_fitted_attributes_end_in_underscore():
    gs, y, _, val = planted(n=60, n_wrong=6)
    det = svm.KernelOneClassSVM().fit(val)
    assert {"gamma_", "support_vectors_", "support_sq_norms_", "dual_coef_", "intercept_"} <= set(vars(det))
    for name, det in unfitted().items():
        before = set(vars(det))
        added = set(vars(det.fit(gs, y))) - before
        assert added and all(a.endswith("_") for a in added if not a.startswith("_")), (name, added)


def test_projection_is_the_registry_entry_s_choice(rng):
    n, K, H = 200, 4, 600  # 4 * 601 coordinates: wider than MAX_DENSE_DIM
    y = rng.integers(0, K, n)
    P = rng.dirichlet(np.ones(K), n)
    e = P.copy()
    e[np.arange(n), y] -= 1
    gs = GradientSet(np.arange(n), P, np.zeros(n), "head", errors=e.astype(np.float32),
                     acts=np.abs(rng.normal(size=(n, H))).astype(np.float32), bias=True)
    assert gs.dim > projected.MAX_DENSE_DIM
    for key, wrapped in (("iforest", True), ("pc_iforest", True), ("pc_knn", True), ("pc_align", False),
                         ("l2", False), ("heldout_margin", False)):
        det = make_detector(key, seed=0)
        assert isinstance(det, projected.Projected) == wrapped, key
        if wrapped:
            assert det.fit(gs, y).projects_ and det.detector_.fit  # fitted on the projection
    # pc_align keeps its exact path at any width: the factors give what the dense matrix gives
    exact = classwise.PerClass(classwise.MeanAlignment).fit(gs.matrix(), y).score_samples(gs.matrix(), y)
    np.testing.assert_allclose(score(gs, "pc_align", labels=y), exact, rtol=1e-4, atol=1e-6)


def test_the_cli_and_the_studies_read_the_registry():
    from ogdash.cli.llm import add_llm_parser
    from ogdash.cli.main import build_parser
    from ogdash.experiments import llm_files, llm_prompts, synthetic, synthetic_scores, textselect

    scan = next(a for a in build_parser()._subparsers._group_actions[0].choices["scan"]._actions
                if a.dest == "detector")
    assert list(scan.choices) == list(DETECTORS) and scan.default == registry.RECOMMENDED
    llm = add_llm_parser(argparse.ArgumentParser().add_subparsers())
    methods = next(a for a in llm._actions if a.dest == "methods")
    # "all": the built-in tasks' methods, then your files' (which add the LESS-style baseline)
    assert methods.type("all") == tuple(dict.fromkeys([*llm_prompts.METHODS, *llm_files.METHODS]))
    assert tuple(llm_prompts.METHODS) == ("oga", "tracin", "datainf") == methods.default
    assert llm_prompts.METHODS == {k: method(k).name for k in ("oga", "tracin", "datainf")}
    # the study's keys and labels: registry entries, the detectors under their og_ keys
    for m in synthetic_scores.METHODS:
        entry = method(m.key[3:] if m.key.startswith("og_") else m.key)
        assert (m.label, m.family) == (entry.label, entry.family)
    assert synthetic.METHOD_KEYS == synthetic_scores.METHOD_KEYS
    assert set(textselect.METHOD_KEYS) <= set(synthetic_scores.METHOD_KEYS) | {"random"}
    assert textselect.METHOD_LABELS["random"] == method("random").label


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_layers_import_one_way():
    loaded = run_python("import sys, ogdash.influence.quality, ogdash.influence.hessian, ogdash.influence.lissa, "
                        "ogdash.influence.datainf, ogdash.influence.matrices; "
                        "print(sorted(m for m in sys.modules if m.startswith('ogdash.')))")
    assert "ogdash.detect" not in loaded and "ogdash.experiments" not in loaded, loaded
    loaded = run_python("import sys, ogdash.detect.registry, ogdash.detect.scoring; "
                        "print(sorted(m for m in sys.modules if m.startswith(('ogdash.', 'streamlit'))))")
    for above in ("ogdash.experiments", "ogdash.pipeline", "ogdash.cli", "streamlit"):
        assert above not in loaded, (above, loaded)
    assert run_python("import sys, ogdash; ogdash.score, ogdash.scan; print('streamlit' in sys.modules)") == "False"


def test_scan_reads_the_registry_before_training(monkeypatch):
    from ogdash import pipeline
    from ogdash.data import blobs
    from ogdash.data.dataset import Splits
    from ogdash.models import ModelSpec

    monkeypatch.setattr(pipeline, "train_model", lambda *a, **k: pytest.fail("trained before checking the detector"))
    s = blobs(seed=0)
    with pytest.raises(OgdashError, match="unknown detector 'nope'"):
        pipeline.scan(s, ModelSpec("logreg"), pipeline.ScanSettings(detector="nope"))
    monkeypatch.undo()
    # without validation data, OneClassSVM's inliers are the training gradients (every sample scored), said in a note
    res = pipeline.scan(Splits(s.train, s.test, None), ModelSpec("logreg", epochs=2),
                        pipeline.ScanSettings(detector="ocsvm"))
    assert len(res.scores) == s.train.n and "training gradients themselves" in res.notes[0]

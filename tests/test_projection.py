"""Factored gradients: exact norms, inner products and OneClassSVM kernels; a sketch with stated distortion."""
import numpy as np
import pytest
from sklearn.svm import OneClassSVM

from ogdash.detect.scoring import score
from ogdash.detect.svm import KernelOneClassSVM
from ogdash.engine.gradients import GradientSet
from ogdash.engine.projection import SparseProjector, TensorSketch


def factored(rng, n=300, K=10, H=64, bias=True):
    e = rng.normal(size=(n, K)).astype(np.float32)
    h = np.abs(rng.normal(size=(n, H))).astype(np.float32)
    return GradientSet(np.arange(n), np.full((n, K), 1 / K), np.zeros(n), "head", errors=e, acts=h, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
def test_norms_and_gram_from_factors_equal_dense(rng, bias):
    g, o = factored(rng, bias=bias), factored(rng, n=40, bias=bias)
    M, N = g.matrix().astype(np.float64), o.matrix().astype(np.float64)
    np.testing.assert_allclose(g.norms(2), np.linalg.norm(M, axis=1), rtol=1e-5)
    np.testing.assert_allclose(g.norms(1), np.abs(M).sum(1), rtol=1e-5)
    np.testing.assert_allclose(g.gram(o, chunk_size=64), M @ N.T, rtol=1e-4, atol=1e-4)  # M is float32


def test_kernel_ocsvm_equals_sklearn_on_dense(rng):
    val, train = factored(rng, n=120), factored(rng, n=200)
    ours = KernelOneClassSVM(nu=0.1, chunk_size=50).fit(val).score_samples(train)
    ref = -OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(val.matrix()).decision_function(train.matrix())
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)
    assert np.allclose(score(train, "ocsvm", val), ours)


def test_sketch_is_linear_and_its_distortion_is_as_stated(rng):
    g = factored(rng, n=2000, K=10, H=65, bias=False)
    M = g.matrix().astype(np.float64)
    d = 256
    ts = TensorSketch(10, 65, d, seed=1)
    S = ts.transform_factors(g.errors, g.acts)
    np.testing.assert_allclose(S, M @ ts.as_matrix(), rtol=1e-4, atol=1e-4)  # never formed, same result
    dense = SparseProjector(M.shape[1], d, seed=1).transform(M.astype(np.float32))
    rel_ts = (S ** 2).sum(1) / (M ** 2).sum(1) - 1
    rel_dense = (dense.astype(np.float64) ** 2).sum(1) / (M ** 2).sum(1) - 1
    # unbiased over sketches: the mean error across seeds vanishes (one fixed sketch errs on every row alike)
    means = [((TensorSketch(10, 65, d, seed=k).transform_factors(g.errors, g.acts).astype(np.float64) ** 2).sum(1)
              / (M ** 2).sum(1) - 1).mean() for k in range(20)]
    assert abs(np.mean(means)) < 0.03
    assert rel_ts.std() < 1.5 * np.sqrt(3 / d)  # the docstring's sqrt(3/d)
    assert rel_ts.std() < 2.0 * rel_dense.std()  # within 2x of a dense sparse random projection
    i, j = rng.integers(0, 2000, 3000), rng.integers(0, 2000, 3000)
    scale = np.linalg.norm(M[i], axis=1) * np.linalg.norm(M[j], axis=1)
    err = ((S[i] * S[j]).sum(1) - (M[i] * M[j]).sum(1)) / scale
    assert np.std(err) < 0.15  # inner products kept to within a few % of the norms' product


def test_iforest_on_a_sketch_finds_the_same_outliers(rng):
    g = factored(rng, n=600, K=10, H=300)
    g.errors[:12] *= 8  # planted outliers: large errors
    assert g.dim > 2048  # forces the sketch path
    top = set(np.argsort(-score(g, "iforest", seed=0))[:12])
    assert len(top & set(range(12))) >= 11

"""Tests for ogdash.influence (the baselines): cleanlab equality, LiSSA/DataInf maths, and the influence sign.

The sign of every influence score is pinned physically by a leave-one-out retrain:
higher score = removing the sample lowers the reference loss = detrimental.
"""
import numpy as np
import pytest
import torch

from ogdash.core.errors import OgdashError
from ogdash.detect import registry
from ogdash.detect.registry import INFLUENCE, InfluenceInputs, family
from ogdash.influence import chunks, quality
from ogdash.influence.datainf import datainf, self_datainf
from ogdash.influence.hessian import exact_hessian, exact_influence, gradient_tracing
from ogdash.influence.lissa import lissa, lissa_inverse_hvp, self_lissa, self_lissa_gauss_newton
from ogdash.influence.quality import label_quality_scores
from ogdash.models.losses import per_sample_loss

# --------------------------------------------------------------------------- label quality


def _random_probs(rng, n, C):
    probs = rng.dirichlet(np.full(C, 0.3), size=n)
    # Edge rows: exactly one-hot, a zero column, and near-certain rows that hit cleanlab's clipping.
    probs[:4] = 0.0
    probs[np.arange(4), rng.integers(0, C, 4)] = 1.0
    probs[4:8, 0] = 0.0
    probs[4:8] /= probs[4:8].sum(axis=1, keepdims=True)
    probs[8, :] = 1e-9 / (C - 1)
    probs[8, 1] = 1 - 1e-9
    return probs


@pytest.mark.parametrize("C", [2, 3, 5, 10])
def test_label_quality_equals_cleanlab(C):
    rank = pytest.importorskip("cleanlab.rank")
    rng = np.random.default_rng(C)
    probs = _random_probs(rng, 400, C)
    labels = rng.integers(0, C, 400)
    labels[8] = 1  # the near-certain row with its own label: entropy/self-confidence below the clip
    pairs = [
        (quality.self_confidence_quality, rank.get_self_confidence_for_each_label, "self_confidence"),
        (quality.normalized_margin_quality, rank.get_normalized_margin_for_each_label, "normalized_margin"),
        (quality.confidence_weighted_entropy_quality, rank.get_confidence_weighted_entropy_for_each_label,
         "confidence_weighted_entropy"),
    ]
    for ours, theirs, method in pairs:
        expected = theirs(labels, probs)
        got = ours(probs, labels)
        assert got.dtype == np.float64 and got.shape == (400,)
        # Tighter than 1e-10 on purpose: the formulas are the same, so only rounding may differ.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=method)
        np.testing.assert_allclose(label_quality_scores(probs, labels, method), 1.0 - expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", quality.LABEL_QUALITY_METHODS)
def test_label_quality_score_is_flipped(method):
    rng = np.random.default_rng(0)
    n, C = 50, 4
    labels = rng.integers(0, C, n)
    probs = np.full((n, C), 0.02)
    probs[np.arange(n), labels] = 0.94  # confident and agreeing with the label
    bad = 17
    probs[bad] = 0.02
    probs[bad, (labels[bad] + 1) % C] = 0.94  # confident in another class: clearly mislabeled
    scores = label_quality_scores(probs, labels, method)
    assert scores.shape == (n,)
    assert np.argmax(scores) == bad
    assert scores[bad] > scores[np.arange(n) != bad].max()
    # Fed the model's own predictions instead, the sample is no longer suspicious.
    assert label_quality_scores(probs, probs.argmax(1), method)[bad] == pytest.approx(scores[0])


def test_label_quality_validation():
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    with pytest.raises(OgdashError, match="method"):
        label_quality_scores(probs, [0, 1], "entropy")
    with pytest.raises(OgdashError, match="0..1"):
        label_quality_scores(probs, [0, 2])
    with pytest.raises(OgdashError, match="one entry per row"):
        label_quality_scores(probs, [0, 1, 1])
    with pytest.raises(OgdashError, match="2-D"):
        label_quality_scores(np.array([0.3, 0.8]), [0, 1])  # cleanlab's (labels, pred_probs) order, swapped
    with pytest.raises(OgdashError, match="sum to 1"):
        label_quality_scores(np.array([[0.7, 0.7], [0.2, 0.8]]), [0, 1])


# --------------------------------------------------------------------------- LiSSA


def _spd(rng, p, low=1.0, high=10.0):
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    return (Q * np.linspace(low, high, p)) @ Q.T


def test_lissa_converges_to_exact_inverse_hvp():
    rng = np.random.default_rng(1)
    p = 8
    H = _spd(rng, p)
    v = rng.standard_normal(p)
    exact = np.linalg.solve(H, v)
    approx = lissa_inverse_hvp(v, hessian=H, iterations=600)
    assert np.linalg.norm(approx - exact) / np.linalg.norm(exact) < 1e-3
    # Too few iterations is visibly off, so the check above measures convergence.
    rough = lissa_inverse_hvp(v, hessian=H, iterations=3)
    assert np.linalg.norm(rough - exact) / np.linalg.norm(exact) > 1e-2
    # Damping is added to H itself.
    damped = lissa_inverse_hvp(v, hessian=H, damping=0.5, iterations=600)
    np.testing.assert_allclose(damped, np.linalg.solve(H + 0.5 * np.eye(p), v), rtol=1e-4, atol=1e-8)
    # A 1-D callable (returning torch) gives the same answer as the matrix.
    calls = []

    def hvp(x):
        calls.append(x.shape)
        return torch.from_numpy(H @ x)

    np.testing.assert_allclose(lissa_inverse_hvp(v, hvp, scale=12.0, iterations=600), exact, rtol=1e-4, atol=1e-8)
    assert calls and all(shape == (p,) for shape in calls)


def test_lissa_scores_match_exact_influence():
    rng = np.random.default_rng(2)
    p = 6
    H = _spd(rng, p, 2.0, 8.0)
    G_train = rng.standard_normal((30, p))
    G_ref = rng.standard_normal((10, p))
    exact = exact_influence(G_train, G_ref, H)
    approx = lissa(G_train, G_ref, hessian=H, iterations=500)
    np.testing.assert_allclose(approx, exact, rtol=1e-3, atol=1e-6 * np.abs(exact).max())
    # Self-influence against the explicit diagonal of G H^-1 G^T.
    self_exact = np.einsum("ij,ji->i", G_train, np.linalg.solve(H, G_train.T))
    np.testing.assert_allclose(self_lissa(G_train, hessian=H, iterations=500), self_exact, rtol=1e-3)
    np.testing.assert_allclose(self_lissa(G_train[:3], lambda x: H @ x, iterations=500), self_exact[:3], rtol=1e-3)
    assert np.all(self_exact > 0)


def test_lissa_divergence_is_reported():
    rng = np.random.default_rng(3)
    H = _spd(rng, 5)
    with pytest.raises(OgdashError, match="diverged"):
        lissa_inverse_hvp(rng.standard_normal(5), hessian=H, scale=2.0, iterations=2000)
    with pytest.raises(OgdashError, match="hvp"):
        lissa(rng.standard_normal((4, 5)))


# --------------------------------------------------------------------------- DataInf


def _datainf_naive(G_train, G_ref, blocks, lambdas):
    """DataInf's formula with explicit p x p matrices per block."""
    n = len(G_train)
    v = G_ref.sum(axis=0)
    infl = np.zeros(n)
    self_infl = np.zeros(n)
    for block, lam in zip(blocks, lambdas):
        G = G_train[:, block]
        d = G.shape[1]
        inv = sum(np.eye(d) - np.outer(g, g) / (lam + g @ g) for g in G) / (n * lam)
        infl -= G @ inv @ v[block]
        self_infl += np.einsum("ij,jk,ik->i", G, inv, G)
    return infl, self_infl


def test_datainf_matches_naive_formula(monkeypatch):
    rng = np.random.default_rng(4)
    n, p = 7, 9
    G_train = rng.standard_normal((n, p)) * np.linspace(0.5, 2.0, p)
    G_ref = rng.standard_normal((3, p))
    blocks = [slice(0, 3), slice(3, 9)]  # the second block is wider than n: Gram path for self_datainf
    default_lams = [0.1 * np.mean(np.sum(G_train[:, b] ** 2, axis=1) / G_train[:, b].shape[1]) for b in blocks]
    infl, self_infl = _datainf_naive(G_train, G_ref, blocks, default_lams)
    np.testing.assert_allclose(datainf(G_train, G_ref, layer_slices=blocks), infl, rtol=1e-10)
    np.testing.assert_allclose(self_datainf(G_train, layer_slices=blocks), self_infl, rtol=1e-10)
    # Same with (start, stop) pairs and explicit per-block damping.
    infl2, self2 = _datainf_naive(G_train, G_ref, blocks, [0.3, 0.05])
    np.testing.assert_allclose(datainf(G_train, G_ref, [(0, 3), (3, 9)], damping=[0.3, 0.05]), infl2, rtol=1e-10)
    np.testing.assert_allclose(self_datainf(G_train, [(0, 3), (3, 9)], damping=[0.3, 0.05]), self2, rtol=1e-10)
    # One block over all columns, G_ref=None means the training set.
    lam_all = [0.1 * np.mean(np.sum(G_train ** 2, axis=1) / p)]
    infl3, self3 = _datainf_naive(G_train, G_train, [slice(0, p)], lam_all)
    np.testing.assert_allclose(datainf(G_train), infl3, rtol=1e-10)
    np.testing.assert_allclose(self_datainf(G_train), self3, rtol=1e-10)
    # Row chunking (tiny chunks) must not change anything, numpy float32 or torch input alike.
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 8 * p * 2)
    np.testing.assert_allclose(datainf(G_train, G_ref, layer_slices=blocks), infl, rtol=1e-10)
    np.testing.assert_allclose(self_datainf(G_train, layer_slices=blocks), self_infl, rtol=1e-10)
    np.testing.assert_allclose(self_datainf(torch.from_numpy(G_train), layer_slices=blocks), self_infl, rtol=1e-10)
    G32 = G_train.astype(np.float32)
    infl32, _ = _datainf_naive(G32.astype(np.float64), G_ref, blocks, [0.3, 0.05])
    np.testing.assert_allclose(datainf(G32, G_ref, blocks, damping=[0.3, 0.05]), infl32, rtol=1e-10)


def test_datainf_is_exact_for_one_sample():
    # With n = 1 the swapped inverse is Sherman-Morrison: exact for H = g g^T + lam I.
    rng = np.random.default_rng(5)
    g = rng.standard_normal((1, 4))
    G_ref = rng.standard_normal((2, 4))
    lam = 0.7
    H = g.T @ g + lam * np.eye(4)
    np.testing.assert_allclose(datainf(g, G_ref, damping=lam), exact_influence(g, G_ref, H), rtol=1e-10)


def test_datainf_validation():
    G = np.ones((4, 5))
    with pytest.raises(OgdashError, match="overlap"):
        datainf(G, layer_slices=[slice(0, 3), slice(2, 5)])
    with pytest.raises(OgdashError, match="no gradient columns"):
        datainf(G, layer_slices=[slice(3, 3)])
    with pytest.raises(OgdashError, match="damping"):
        datainf(np.zeros((4, 5)))


# --------------------------------------------------------------------------- exact influence, TracIn, the registry


def test_tracin_sign_and_the_registry_computes_each_influence_method():
    rng = np.random.default_rng(6)
    G_ref = rng.standard_normal((5, 3))
    v = G_ref.sum(axis=0)
    G_train = np.stack([v, -v, np.cross(v, [1.0, 0.0, 0.0])])
    scores = gradient_tracing(G_train, G_ref)
    assert scores[0] < 0 < scores[1]  # aligned with the reference gradient = beneficial
    assert scores[2] == pytest.approx(0.0, abs=1e-12)
    H = _spd(rng, 3)
    np.testing.assert_allclose(exact_influence(G_train, G_ref, np.eye(3)), scores)
    # the registry's influence entries: the training set as the reference set, one shared set of inputs
    expected = {"exact": exact_influence(G_train, None, H), "tracin": gradient_tracing(G_train),
                "lissa": lissa(G_train, hessian=H, iterations=50),
                "datainf": datainf(G_train), "self_lissa": self_lissa(G_train, hessian=H, iterations=50),
                "self_datainf": self_datainf(G_train)}
    inputs = InfluenceInputs(hessian=H, iterations=50)
    assert [m.key for m in family(INFLUENCE)] == ["exact", "tracin", "lissa", "datainf", "self_lissa", "self_datainf"]
    for m in family(INFLUENCE):
        np.testing.assert_allclose(m.compute(G_train, inputs), expected[m.key], err_msg=m.key)
        assert m.needs_hessian == (m.key in ("exact", "lissa", "self_lissa"))
    with pytest.raises(OgdashError, match="unknown method"):
        registry.method("trak")
    with pytest.raises(OgdashError, match="needs the Hessian"):
        registry.method("exact").compute(G_train, InfluenceInputs())


def test_influence_input_validation_chunking_and_damping(monkeypatch):
    rng = np.random.default_rng(7)
    G = rng.standard_normal((6, 4))
    with pytest.raises(OgdashError, match="gradient columns"):
        gradient_tracing(G, rng.standard_normal((3, 5)))
    with pytest.raises(OgdashError, match="2-D"):
        gradient_tracing(G[0])
    with pytest.raises(OgdashError, match=r"\(4, 4\)"):
        exact_influence(G, None, np.eye(3))
    with pytest.raises(OgdashError, match="symmetric"):
        exact_influence(G, None, np.triu(np.ones((4, 4))))
    bad = G.copy()
    bad[2, 1] = np.nan
    with pytest.raises(OgdashError, match="NaN"):
        gradient_tracing(bad)
    # An indefinite Hessian is shifted to positive definite, with a warning that says so.
    indefinite = np.diag([2.0, 1.0, -0.5, 3.0])
    with pytest.warns(RuntimeWarning, match="not positive definite"):
        scores = exact_influence(G, None, indefinite)
    assert np.all(np.isfinite(scores))
    # Row chunking (one row at a time) changes nothing.
    H = _spd(rng, 4)
    G_ref = rng.standard_normal((3, 4))
    unchunked = [exact_influence(G, G_ref, H), gradient_tracing(G, G_ref), self_lissa(G, hessian=H, iterations=300)]
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 8)
    chunked = [exact_influence(G, G_ref, H), gradient_tracing(G, G_ref), self_lissa(G, hessian=H, iterations=300)]
    for a, b in zip(unchunked, chunked):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    # Torch float32 input gives the float64 numpy answer.
    np.testing.assert_allclose(exact_influence(torch.from_numpy(G).float(), None, torch.from_numpy(H)),
                               exact_influence(G.astype(np.float32).astype(np.float64), None, H), rtol=1e-12)


# --------------------------------------------------------------------------- torch: Hessian and leave-one-out


def test_exact_hessian_matches_closed_forms():
    torch.manual_seed(0)
    X = torch.randn(12, 3)
    y = (torch.rand(12) > 0.5).long()
    wd = 0.3
    # Binary logistic regression, float32 module: X^T diag(p (1 - p)) X + wd I, computed in float64.
    model = torch.nn.Linear(3, 1, bias=False)
    H = exact_hessian(model, X, y, weight_decay=wd)
    X64 = X.double().numpy()
    prob = 1 / (1 + np.exp(-X64 @ model.weight.detach().double().numpy().ravel()))
    expected = X64.T @ (X64 * (prob * (1 - prob))[:, None]) + wd * np.eye(3)
    assert H.dtype == np.float64
    np.testing.assert_allclose(H, expected, rtol=1e-10, atol=1e-12)
    # Softmax regression, Hessian over the weight only (bias held fixed, no weight decay):
    # sum_i kron(diag(p_i) - p_i p_i^T, x_i x_i^T) for row-major weight (C, d).
    soft = torch.nn.Linear(3, 4)
    y4 = torch.randint(0, 4, (12,))
    H_w = exact_hessian(soft, X, y4, param_names=["weight"])
    logits = X64 @ soft.weight.detach().double().numpy().T + soft.bias.detach().double().numpy()
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    expected_w = sum(np.kron(np.diag(p) - np.outer(p, p), np.outer(x, x)) for p, x in zip(P, X64))
    np.testing.assert_allclose(H_w, expected_w, rtol=1e-10, atol=1e-12)
    assert exact_hessian(soft, X, y4).shape == (16, 16)
    assert soft.training  # the train/eval flag is restored
    with pytest.raises(OgdashError, match="Unknown parameter"):
        exact_hessian(soft, X, y4, param_names=["kernel"])
    with pytest.raises(OgdashError, match="max_params"):
        exact_hessian(soft, X, y4, max_params=10)


def _fit_logistic(X, y, wd, init=None):
    model = torch.nn.Linear(2, 1).double()
    if init is not None:
        model.load_state_dict(init)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-13,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = per_sample_loss(model(X), y).sum() + 0.5 * wd * sum((p * p).sum() for p in model.parameters())
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return model


def _per_sample_grads(model, X, y):
    rows = []
    for i in range(len(X)):
        model.zero_grad()
        per_sample_loss(model(X[i:i + 1]), y[i:i + 1]).sum().backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
    return torch.stack(rows)


def test_exact_influence_sign_matches_leave_one_out_retrain():
    """score_j > 0 exactly when retraining without j lowers the held-out reference loss."""
    rng = np.random.default_rng(3)

    def blobs(n):
        labels = np.arange(n) % 2
        return rng.normal(size=(n, 2)) * 0.8 + np.where(labels[:, None] == 1, 1.2, -1.2), labels

    X, y = blobs(16)
    flipped = [0, 5]
    y[flipped] = 1 - y[flipped]
    X_ref, y_ref = blobs(60)  # clean held-out reference set: G_ref and the measured loss both use it
    X, y, X_ref, y_ref = (torch.tensor(a) for a in (X, y, X_ref, y_ref))
    wd = 0.5  # L2 on weight and intercept alike, matching exact_hessian's weight-decay term

    full = _fit_logistic(X, y, wd)
    G_train = _per_sample_grads(full, X, y)
    G_ref = _per_sample_grads(full, X_ref, y_ref)
    scores = exact_influence(G_train, G_ref, exact_hessian(full, X, y, weight_decay=wd))

    with torch.no_grad():
        base = per_sample_loss(full(X_ref), y_ref).sum().item()
    change = np.empty(len(X))
    for j in range(len(X)):
        keep = torch.arange(len(X)) != j
        model = _fit_logistic(X[keep], y[keep], wd, init=full.state_dict())
        with torch.no_grad():
            change[j] = per_sample_loss(model(X_ref), y_ref).sum().item() - base

    clear = np.abs(change) > 1e-3 * np.abs(change).max()
    assert clear.sum() >= len(X) - 2
    assert np.all(np.sign(scores[clear]) == np.sign(-change[clear]))
    assert np.corrcoef(scores, -change)[0, 1] > 0.85
    # The flipped samples are the detrimental ones, and rank first.
    assert set(np.argsort(-scores)[:2]) == set(flipped)
    assert np.all(change[flipped] < 0)


def test_self_lissa_gauss_newton_equals_the_recursion_and_converges_to_the_exact_inverse():
    rng = np.random.default_rng(0)
    G = rng.normal(size=(40, 120))
    ridge = 0.5
    scale = 1.25 * (np.linalg.eigvalsh(G @ G.T).max() + ridge)
    closed = self_lissa_gauss_newton(G, ridge, scale, iterations=200)
    recursion = self_lissa(G, hvp=lambda v: G.T @ (G @ v), damping=ridge, scale=scale, iterations=200)
    assert np.allclose(closed, recursion, rtol=1e-10, atol=1e-12)
    exact = np.einsum("ij,ji->i", G, np.linalg.solve(G.T @ G + ridge * np.eye(120), G.T))
    assert np.allclose(self_lissa_gauss_newton(G, ridge, iterations=100_000), exact, rtol=1e-8)
    with pytest.raises(OgdashError, match="damping"):
        self_lissa_gauss_newton(G, 0.0)

"""Both gradient paths equal a per-sample autograd loop."""
import numpy as np
import pytest
import torch

from ogdash.data import make_dataset
from ogdash.engine.gradients import extract_gradients, project
from ogdash.engine.projection import SparseProjector
from ogdash.models import ModelSpec, build_model, per_sample_loss


def autograd_loop(model, ds, names):
    params = dict(model.named_parameters())
    rows = []
    for i in range(ds.n):
        model.zero_grad()
        x = torch.as_tensor(ds.X[i:i + 1])
        loss = per_sample_loss(model(x), torch.as_tensor(ds.y[i:i + 1]))[0]
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        rows.append(torch.cat([g.reshape(-1) for g in grads]).numpy())
    return np.stack(rows)


def small_data(rng, n=40, shape=(5,), classes=3):
    X = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n)
    y[:classes] = np.arange(classes)
    return make_dataset("t", X, y, tuple(str(c) for c in range(classes)))


@pytest.mark.parametrize("classes", [2, 3])  # 2 classes -> one sigmoid unit (BCE), 3 -> softmax CE
@pytest.mark.parametrize("bias", [True, False])
def test_closed_form_equals_autograd(rng, classes, bias):
    ds = small_data(rng, classes=classes)
    model = build_model(ModelSpec("mlp", hidden=(7,), bias=bias), (5,), classes, seed=1)
    gs = extract_gradients(model, ds, layer="last", chunk_size=16, device="cpu")
    names = ["head.weight"] + (["head.bias"] if bias else [])
    ref = autograd_loop(model, ds, names)
    assert gs.factored and gs.dim == ref.shape[1]
    np.testing.assert_allclose(gs.matrix(), ref, atol=1e-5)
    np.testing.assert_allclose(gs.norms(2), np.linalg.norm(ref, axis=1), rtol=1e-5)
    np.testing.assert_allclose(gs.norms(1), np.abs(ref).sum(1), rtol=1e-5)
    losses = [per_sample_loss(model(torch.as_tensor(ds.X[i:i + 1])), torch.as_tensor(ds.y[i:i + 1]))[0].item()
              for i in range(ds.n)]
    np.testing.assert_allclose(gs.loss, losses, rtol=1e-5)


def test_paper_mlp_last_layer_gradient_is_2d(rng):
    ds = small_data(rng, n=20, shape=(2,), classes=2)
    model = build_model(ModelSpec("paper_mlp"), (2,), 2, seed=0)
    gs = extract_gradients(model, ds, device="cpu")
    assert gs.dim == 2
    np.testing.assert_allclose(gs.matrix(), autograd_loop(model, ds, ["head.weight"]), atol=1e-6)


@pytest.mark.parametrize("layer", ["all", "body.3", "head"])
def test_generic_path_equals_autograd(rng, layer):
    ds = small_data(rng, n=24, shape=(1, 8, 8), classes=3)
    model = build_model(ModelSpec("cnn"), (1, 8, 8), 3, seed=0)
    gs = extract_gradients(model, ds, layer=layer, chunk_size=10, device="cpu")
    names = [n for n, _ in model.named_parameters() if layer == "all" or n.startswith(layer + ".")]
    np.testing.assert_allclose(gs.dense, autograd_loop(model, ds, names), atol=1e-5)


def test_generic_head_equals_closed_form(rng):
    ds = small_data(rng, n=30, shape=(1, 8, 8), classes=4)
    model = build_model(ModelSpec("cnn"), (1, 8, 8), 4, seed=0)
    closed = extract_gradients(model, ds, device="cpu")
    generic = extract_gradients(model, ds, layer="head", device="cpu")
    np.testing.assert_allclose(closed.matrix(), generic.dense, atol=1e-6)


def test_dense_projection_is_chunk_invariant_and_seeded(rng):
    ds = small_data(rng, n=50, shape=(6,), classes=5)
    model = build_model(ModelSpec("mlp", hidden=(40,)), (6,), 5, seed=0)
    dense = extract_gradients(model, ds, layer="head", device="cpu")  # generic path: dense rows
    full = SparseProjector(dense.dim, 32, seed=3).transform(dense.dense)
    np.testing.assert_allclose(project(dense, 32, seed=3, chunk_size=7).dense, full, rtol=1e-5, atol=1e-6)
    streamed = extract_gradients(model, ds, layer="head", projection_dim=32, seed=3, chunk_size=9, device="cpu")
    np.testing.assert_allclose(streamed.dense, full, rtol=1e-4, atol=1e-5)
    assert not np.allclose(project(dense, 32, seed=4).dense, full)
    ratio = np.linalg.norm(full, axis=1) / np.linalg.norm(dense.dense, axis=1)
    assert 0.6 < np.median(ratio) < 1.4  # Johnson-Lindenstrauss: norms roughly kept


def test_factored_projection_is_the_sketch_of_the_materialised_gradients(rng):
    from ogdash.engine.projection import TensorSketch

    ds = small_data(rng, n=50, shape=(6,), classes=5)
    model = build_model(ModelSpec("mlp", hidden=(40,)), (6,), 5, seed=0)
    gs = extract_gradients(model, ds, device="cpu")
    sketched = project(gs, 32, seed=3).dense
    ts = TensorSketch(5, 41, 32, seed=3)
    # the sketch's matrix is in vec(e ⊗ [h, 1]) order; materialise in that order too
    materialised = (gs.errors[:, :, None] * gs.augmented_acts()[:, None, :]).reshape(gs.n, -1)
    np.testing.assert_allclose(sketched, materialised @ ts.as_matrix(), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not (torch.cuda.is_available() or torch.backends.mps.is_available()), reason="no GPU here")
def test_gpu_gives_the_cpu_result(rng):
    from ogdash.models.devices import default_device

    ds = small_data(rng, n=64, shape=(1, 8, 8), classes=4)
    model = build_model(ModelSpec("cnn"), (1, 8, 8), 4, seed=0)
    cpu = extract_gradients(model, ds, device="cpu")
    gpu = extract_gradients(model, ds, device=default_device())
    np.testing.assert_allclose(gpu.matrix(), cpu.matrix(), rtol=1e-3, atol=1e-5)
    cpu_all = extract_gradients(model.cpu(), ds, layer="all", device="cpu")
    gpu_all = extract_gradients(model, ds, layer="all", device=default_device())
    np.testing.assert_allclose(gpu_all.dense, cpu_all.dense, rtol=1e-3, atol=1e-5)

import os
import pickle

import numpy as np
import pytest
import torch

from ogdash.core.errors import OgdashError
from ogdash.data import moons
from ogdash.models import ModelSpec, accuracy, build_model, fit, load_weights, save_weights, weights_key
from ogdash.models.train import predict_proba
from ogdash.models.weights import torchvision_model


def test_seeded_build_and_fit_are_reproducible():
    s = moons(0)
    a = fit(ModelSpec("mlp", epochs=30), s.train.X, s.train.y, 2, seed=3)
    b = fit(ModelSpec("mlp", epochs=30), s.train.X, s.train.y, 2, seed=3)
    c = fit(ModelSpec("mlp", epochs=30), s.train.X, s.train.y, 2, seed=4)
    assert weights_key(a) == weights_key(b) != weights_key(c)
    assert accuracy(a, s.test.X, s.test.y) > 0.7


def test_training_that_diverges_says_so():
    s = moons(0)
    X = s.train.X * 1e30
    with pytest.raises(OgdashError, match="diverged"):
        fit(ModelSpec("mlp", epochs=5, lr=1e6, scale=False), X, s.train.y, 2)  # scaling would tame these inputs


def test_feature_rows_are_scaled_with_the_training_statistics_stored_with_the_model():
    from ogdash.models.zoo import scaling_of

    s = moons(0)
    raw = s.train.X * np.array([1000.0, 0.01]) + np.array([5.0, -3.0])  # columns on very different scales
    z = (raw - raw.mean(0)) / raw.std(0)
    spec = ModelSpec("mlp", epochs=40)
    a, b = fit(spec, raw, s.train.y, 2, seed=0), fit(spec, z, s.train.y, 2, seed=0)
    test_raw = s.test.X * np.array([1000.0, 0.01]) + np.array([5.0, -3.0])
    test_z = (test_raw - raw.mean(0)) / raw.std(0)
    # raw and z-scored copies of a table train the same model (up to rounding)
    np.testing.assert_allclose(predict_proba(a, test_raw), predict_proba(b, test_z), atol=1e-4)
    np.testing.assert_allclose(scaling_of(a).mean.numpy(), raw.mean(0), rtol=1e-5)
    assert "body.0.scale" in a.state_dict()  # the statistics are part of the weights (and of their cache key)
    off = fit(ModelSpec("mlp", epochs=40, scale=False), raw, s.train.y, 2, seed=0)
    assert scaling_of(off) is None and ModelSpec("mlp", scale=False).key() != ModelSpec("mlp").key()
    assert ModelSpec("cnn", scale=False).key() == ModelSpec("cnn").key()  # images are never scaled
    assert scaling_of(build_model(ModelSpec("cnn"), (1, 8, 8), 10)) is None
    assert scaling_of(build_model(ModelSpec("mlp"), (1, 8, 8), 10)) is None  # images into an MLP: pixels as they are


def test_weights_roundtrip_and_refusals(tmp_path):
    m = build_model(ModelSpec("cnn"), (1, 8, 8), 10, seed=0)
    save_weights(m, tmp_path / "w.safetensors")
    torch.save(m.state_dict(), tmp_path / "w.pt")
    for path in ("w.safetensors", "w.pt"):
        other = load_weights(build_model(ModelSpec("cnn"), (1, 8, 8), 10, seed=1), tmp_path / path)
        assert weights_key(other) == weights_key(m)
    with pytest.raises(OgdashError, match="does not fit"):
        load_weights(build_model(ModelSpec("cnn"), (1, 8, 8), 3, seed=0), tmp_path / "w.pt")  # other head
    state = m.state_dict()
    state.pop("head.bias")
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(OgdashError, match="does not fit"):
        load_weights(build_model(ModelSpec("cnn"), (1, 8, 8), 10), tmp_path / "missing.pt")


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_checkpoint_with_code_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"head.weight": Payload()}, tmp_path / "evil.pt")
    (tmp_path / "evil2.pt").write_bytes(pickle.dumps(Payload()))
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(OgdashError, match="cannot be loaded"):
            load_weights(build_model(ModelSpec("mlp"), (2,), 2), tmp_path / name)
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_torchvision_architecture_with_own_weights(tmp_path):
    net = torchvision_model("resnet18", 10)
    save_weights(net, tmp_path / "r18.safetensors")
    loaded = load_weights(torchvision_model("resnet18", 10), tmp_path / "r18.safetensors")
    assert weights_key(loaded) == weights_key(net)
    with pytest.raises(OgdashError, match="unknown torchvision"):
        torchvision_model("resnet9000", 10)
    from ogdash.data import make_dataset
    from ogdash.engine.gradients import extract_gradients

    ds = make_dataset("x", np.random.default_rng(0).random((4, 3, 32, 32)), [0, 1, 2, 3], tuple(map(str, range(10))))
    g = extract_gradients(loaded, ds, device="cpu")
    assert g.layer == "fc" and g.dim == 10 * 513

import numpy as np

from ogdash.core.cache import DiskCache, cache_key
from ogdash.data import moons
from ogdash.engine.settings import GradientSettings
from ogdash.models import ModelSpec
from ogdash.pipeline import gradients, train_model


def test_roundtrip_and_corruption_recompute(tmp_path):
    cache = DiskCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(10.0), "name": "x"}

    first = cache.get_or_compute("s", "k", compute)
    again = cache.get_or_compute("s", "k", compute)
    assert len(calls) == 1 and np.array_equal(again["a"], first["a"]) and again["name"] == "x"
    path = cache.entry("s", "k") / "a.npy"
    path.write_bytes(path.read_bytes()[:-8])  # truncated
    assert cache.load("s", "k") is None
    cache.get_or_compute("s", "k", compute)
    assert len(calls) == 2
    (cache.entry("s", "k") / "meta.json").unlink()  # interrupted write
    assert cache.load("s", "k") is None


def test_keys_change_with_weights_data_layer_and_seed(tmp_path):
    cache = DiskCache(tmp_path)
    s = moons(0)
    spec = ModelSpec("mlp", epochs=20)
    m0 = train_model(spec, s.train, seed=0, cache=cache)
    m0_again = train_model(spec, s.train, seed=0, cache=cache)
    assert all(np.array_equal(a, b) for a, b in zip(m0.state_dict().values(), m0_again.state_dict().values()))
    gradients(m0, s.train, cache=cache)
    gradients(m0, s.train, cache=cache)
    assert len(list((tmp_path / "gradients").iterdir())) == 1  # second call was a hit
    m1 = train_model(spec, s.train, seed=1, cache=cache)  # other weights
    gradients(m1, s.train, cache=cache)
    gradients(m0, moons(1).train, cache=cache)  # other data
    gradients(m0, s.train, GradientSettings("all"), cache=cache)  # other layer
    gradients(m0, s.train, GradientSettings("all", 8, 0), cache=cache)
    gradients(m0, s.train, GradientSettings("all", 8, 1), cache=cache)  # other projection seed
    assert len(list((tmp_path / "gradients").iterdir())) == 6
    assert cache_key("a", 1) != cache_key("a", 2)


def test_streamed_gradients_are_memory_mapped_and_reloaded(tmp_path):
    from ogdash.engine.gradients import extract_gradients

    cache = DiskCache(tmp_path)
    s = moons(0)
    model = train_model(ModelSpec("mlp", epochs=20), s.train, seed=0)
    for layer, dim in (("all", None), ("all", 16), ("last", 8)):
        g = gradients(model, s.train, GradientSettings(layer, dim), cache=cache)
        assert isinstance(g.matrix(), np.memmap) or g.factored
        again = gradients(model, s.train, GradientSettings(layer, dim), cache=cache)
        ref = extract_gradients(model, s.train, layer=layer, projection_dim=dim, device="cpu")
        np.testing.assert_allclose(np.asarray(again.matrix()), ref.matrix(), rtol=1e-5, atol=1e-6)

"""Your own network, end to end: a torchvision architecture or your nn.Module factory, with your weights,
scanned as it is and retrained from those weights (last layer or all layers), through the library, the CLI
and the pages; and a frozen backbone whose new head is trained here on cached features."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT
from ogdash.cli.main import main as cli_main
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Splits, make_dataset
from ogdash.detect.heldout import suggestions
from ogdash.models.weights import save_weights
from ogdash.models.user import last_linear
from ogdash.models.zoo import ModelSpec, build_model
from ogdash.models.weights import torchvision_model
from ogdash.pipeline import ScanSettings, scan, train_model
from ogdash.retrain import NONE, RANDOM, compare, fixes_from_flags

ARCH = "shufflenet_v2_x0_5"  # a small torchvision architecture (1.4 M parameters)


def images(n, seed, channels=3, side=32, classes=3, noise=0.0):
    """Images whose class sets their mean colour (learnable), with a share of labels flipped."""
    rng = np.random.default_rng(seed)
    y_true = np.arange(n) % classes
    X = rng.random((n, channels, side, side), dtype=np.float32) * 0.5 + (y_true / classes)[:, None, None, None] * 0.5
    y = y_true.copy()
    flip = rng.random(n) < noise
    y[flip] = (y[flip] + 1) % classes
    return X, y, y_true


def splits_of(n_train=60, n_test=30, **kw):
    X, y, y_true = images(n_train, 0, noise=0.2, **kw)
    Xt, yt, _ = images(n_test, 1, **kw)
    names = tuple(f"c{k}" for k in range(kw.get("classes", 3)))
    return Splits(make_dataset("train", X, y, names, y_true=y_true), make_dataset("test", Xt, yt, names))


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def yours(tmp_path):
    """A torchvision network with random weights, saved to a file as a user would have it."""
    torch.manual_seed(0)
    net = torchvision_model(ARCH, 3)
    path = tmp_path / "mine.safetensors"
    save_weights(net, path)
    return ModelSpec("torchvision", arch=ARCH, weights=str(path), epochs=2), state(net)


def test_torchvision_network_scanned_as_it_is_and_retrained_from_its_weights(yours, tmp_path):
    spec, saved = yours
    splits, cache = splits_of(), DiskCache(tmp_path / "cache")
    model = build_model(spec, splits.train.X.shape[1:], 3)  # your network, as the file has it
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    res = scan(splits, spec, ScanSettings(budget=6), cache, model=model)
    assert res.flags.sum() == 6 and np.isfinite(res.scores).all()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())  # scanning never trains it

    # a last-layer fine-tune: the backbone stays as your file has it, the last layer moves
    tuned = train_model(spec, splits.train, 0, cache)
    head = {f"{last_linear(tuned)[0]}.{k}" for k in ("weight", "bias")}
    after = tuned.state_dict()
    assert all(torch.equal(after[k], v) for k, v in saved.items() if k not in head)
    assert not torch.equal(after[sorted(head)[1]], saved[sorted(head)[1]])

    P = suggestions(res.grads, splits.train.y)
    fix = fixes_from_flags(splits.train, res.flags, P.argmax(1), P.max(1), actions=("remove",))
    c = compare(splits, spec, fix, seeds=[0, 1], cache=cache)
    assert [r.name for r in c.rows] == [NONE, "remove", RANDOM]
    assert all(0 <= a <= 1 for r in c.rows for a in r.accuracy) and c.row("remove").n_removed == 6
    # every arm fine-tuned the last layer for the unchanged data's step budget (2 epochs of 60 at batch 128)
    assert c.steps == spec.head_spec().total_steps(60)

    # all layers: the backbone moves too, from the same starting weights
    everything = replace(spec, tune="all", epochs=1)
    moved = train_model(everything, splits.train, 0, cache).state_dict()
    assert any(not torch.equal(moved[k], v) for k, v in saved.items() if k not in head and v.is_floating_point())
    c_all = compare(splits, everything, fix, seeds=[0], cache=cache)
    assert len(c_all.rows) == 3 and c_all.steps == everything.total_steps(60)


def test_frozen_backbone_head_trained_on_cached_features(tmp_path, monkeypatch):
    """ogdash.examples.own_network:backbone has no linear layer: ogdash puts a head on it, trains it on the backbone's
    features, and computes those features once per data set (retrains reuse them)."""
    from ogdash.examples.own_network import backbone
    from ogdash.models import user

    torch.manual_seed(0)
    path = tmp_path / "backbone.safetensors"
    save_weights(backbone(), path)
    splits = splits_of(channels=1, side=28, classes=3)
    spec = ModelSpec("custom", arch="ogdash.examples.own_network:backbone", weights=str(path), new_head=True)
    cache = DiskCache(tmp_path / "cache")
    res = scan(splits, spec, ScanSettings(budget=0.1), cache)
    assert res.grads.acts.shape == (60, 128)  # the head's inputs: the backbone's 128 features
    assert res.accuracy_before > 0.5  # three classes told apart by colour: the head learned

    calls = []
    real = user.backbone_features
    monkeypatch.setattr(user, "backbone_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    P = suggestions(res.grads, splits.train.y)
    fixes = fixes_from_flags(splits.train, res.flags, P.argmax(1), P.max(1), actions=("remove", "relabel"))
    c = compare(splits, spec, fixes, seeds=[0, 1, 2], cache=cache)
    assert calls == [1]  # the test set's features; the training set's were cached by the scan
    assert [r.name for r in c.rows] == [NONE, "remove", "relabel", RANDOM, f"{RANDOM}_2"]  # a control of each kind
    assert "random removals" in c.verdict("remove") and "suggested label on" in c.verdict("relabel")
    assert c.stacked == 15  # the heads on cached features all trained at once


def test_factory_errors_are_one_line(tmp_path):
    with pytest.raises(OgdashError, match="is not a model factory"):
        build_model(ModelSpec("custom", arch="no colon:"), (3,), 2)
    with pytest.raises(OgdashError, match="cannot import 'no_such_module'"):
        build_model(ModelSpec("custom", arch="no_such_module:net"), (3,), 2)
    with pytest.raises(OgdashError, match="has no callable 'nope'"):
        build_model(ModelSpec("custom", arch="ogdash.examples.own_network:nope"), (3,), 2)
    with pytest.raises(OgdashError, match="needs its architecture"):
        ModelSpec("torchvision")


def write_files(root, splits) -> None:
    """train.npz and test.npz under ``root``, as a user would have them."""
    for name, ds in (("train", splits.train), ("test", splits.test)):
        np.savez(root / f"{name}.npz", X=ds.X, y=ds.y)


def data_page(root, monkeypatch, splits) -> AppTest:
    """The Data & model page of a fresh app whose data root holds ``splits`` as train.npz / test.npz (opened by link)."""
    import streamlit as st

    st.cache_resource.clear()
    for name, value in (("OGDASH_DECISIONS", root / "decisions.sqlite"), ("OGDASH_DATA_ROOT", root),
                        ("OGDASH_CACHE", root / "cache")):
        monkeypatch.setenv(name, str(value))
    write_files(root, splits)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["data"] = json.dumps({"source": "files", "train": "train.npz", "test": "test.npz"})
    at.run()
    return at.switch_page("views/data.py").run()


def test_cli_scans_and_retrains_your_network(yours, tmp_path, capsys):
    spec, _ = yours
    write_files(tmp_path, splits_of())
    args = ["scan", "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"), "--model",
            "torchvision", "--arch", ARCH, "--weights", spec.weights, "--epochs", "2", "--budget", "6",
            "--retrain", "--seeds", "1", "--json", "--cache", str(tmp_path / "cache")]
    assert cli_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_flagged"] == 6 and [r["action"] for r in out["retrain"]["rows"]] == [NONE, "remove", RANDOM]
    assert cli_main(args[:5] + ["--model", "custom", "--arch", ARCH, "--weights", spec.weights]) == 2
    assert "--model custom takes --arch package.module:factory" in capsys.readouterr().err


def test_pages_scan_and_retrain_your_torchvision_network(yours, tmp_path, monkeypatch):
    """Data & model loads the network from its weights; Trim & retrain fine-tunes it, beside the random control."""
    spec, _ = yours
    at = data_page(tmp_path, monkeypatch, splits_of())
    next(w for w in at.selectbox if w.label == "Architecture").set_value("torchvision").run()
    next(w for w in at.text_input if w.label == "Architecture name").set_value(ARCH)
    next(w for w in at.text_input if w.label.startswith("Weights file")).set_value("mine.safetensors")
    next(b for b in at.button if b.label == "Load model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(m.label == "Test accuracy" for m in at.metric)

    at.switch_page("views/gradient_space.py").run()
    next(b for b in at.button if b.label == "Extract gradients").click().run()
    assert not at.exception and not at.error

    at.switch_page("views/retrain.py").run()
    assert not at.warning or all("zoo" not in w.value for w in at.warning)
    assert at.radio[0].value == "last"
    at.slider[-1].set_value(1)  # seeds: one, to keep the test short
    next(b for b in at.button if b.label == "Retrain").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("started from your weights" in c.value for c in at.caption)
    assert len(at.dataframe) >= 1


def test_page_trains_a_new_head_on_your_backbone(tmp_path, monkeypatch):
    """Your own network (a factory in an allowed package) as a frozen backbone: the Data page trains a new head; a
    factory outside the allowed packages is refused in one line and the previous model stays."""
    from ogdash.examples.own_network import backbone

    torch.manual_seed(0)
    save_weights(backbone(), tmp_path / "backbone.safetensors")
    at = data_page(tmp_path, monkeypatch, splits_of(channels=1, side=28))
    next(w for w in at.selectbox if w.label == "Architecture").set_value("custom").run()
    next(w for w in at.text_input if w.label.startswith("Weights file")).set_value("backbone.safetensors")
    next(w for w in at.radio if w.label == "Use it").set_value("frozen backbone + new head").run()
    next(w for w in at.text_input if w.label.startswith("Factory")).set_value("os:getcwd")
    next(b for b in at.button if b.label == "Train model").click().run()
    assert len(at.error) == 1 and "os is not an allowed package" in at.error[0].value and not at.exception
    next(w for w in at.text_input if w.label.startswith("Factory")).set_value("ogdash.examples.own_network:backbone")
    next(b for b in at.button if b.label == "Train model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["model_config"]["new_head"] is True
    assert any(m.label == "Test accuracy" for m in at.metric)

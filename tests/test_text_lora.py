"""LoRA fine-tuning of a sentence encoder under a head (the text page's --finetune lora), on a tiny in-code BERT."""
import argparse

import numpy as np
import pytest
import torch

from ogdash.cli import text as text_cli
from ogdash.core.errors import OgdashError
from ogdash.data import text as text_data
from ogdash.experiments import textselect as ts
from ogdash.data.encoders import HashingEncoder, TinyBertEncoder
from ogdash.experiments.text_lora import TextLoraSettings, TextLoraTuner, lora_modules
from ogdash.models.losses import per_sample_loss
from ogdash.models.zoo import ModelSpec
from tests.test_textselect import tiny_corpus


@pytest.fixture(scope="module")
def encoder():
    return TinyBertEncoder(device="cpu")


@pytest.fixture(scope="module")
def splits(encoder):
    texts, y, classes = tiny_corpus(96)
    sp, _ = text_data.split_texts("tiny", texts, y, classes, noise=0.2, seed=0, n_train=64, n_test=32)
    return text_data.encode_splits(sp, encoder)[0]


def tuner_for(encoder, splits, **kw):
    tok, base = encoder.transformer()
    texts = list(splits.train.texts) + list(splits.test.texts)
    return TextLoraTuner(base, tok, texts, TextLoraSettings(batch_size=8, **kw), device="cpu")


@pytest.mark.parametrize("head, layers", [("logreg", "last"), ("mlp", "all")])
def test_gradients_equal_a_per_sample_autograd_loop(encoder, splits, head, layers):
    tuner = tuner_for(encoder, splits, grad_layers=layers)
    model = tuner.build(ts.head_spec(head), 2, seed=0)
    y = splits.train.y
    tuner.train_curve(model, np.arange(32), y[:32], np.arange(64, 70), splits.test.y[:6], 1, 0, 1e-2)
    pos = np.random.default_rng(1).permutation(64)[:20]  # any positions, in any order
    gs, blocks = tuner.gradients(model, pos, y[pos])
    modules = [[m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]]
    modules += [m for _, m in lora_modules(model, layers)]
    params = [p for m in modules for p in (m.weight, m.bias) if p is not None]
    model.eval()
    loop = []
    for i in pos:
        loss = per_sample_loss(model(*tuner._batch([i])), torch.tensor([y[i]])).sum()
        loop.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).numpy())
    loop = np.stack(loop)
    assert gs.dense.shape == loop.shape and blocks[-1][2] == loop.shape[1]
    assert np.allclose(gs.dense, loop, atol=1e-6, rtol=1e-4)
    n_layers = len({n.split(".layer.")[1].split(".")[0] for n, _ in lora_modules(model, layers)})
    assert n_layers == (2 if layers == "all" else 1)
    # every parameter trains again afterwards
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n or n.startswith("head"))


def test_same_seed_same_start_and_the_pretrained_encoder_is_never_changed(encoder, splits):
    tuner = tuner_for(encoder, splits)
    before = {k: v.clone() for k, v in tuner.base.state_dict().items()}
    a, b = tuner.build(ModelSpec("logreg"), 2, seed=3), tuner.build(ModelSpec("logreg"), 2, seed=3)
    c = tuner.build(ModelSpec("logreg"), 2, seed=4)
    lora = lambda m: torch.cat([p.reshape(-1) for n, p in m.named_parameters() if "lora_A" in n])  # noqa: E731
    assert torch.equal(lora(a), lora(b)) and not torch.equal(lora(a), lora(c))
    curve = tuner.train_curve(a, np.arange(64), splits.train.y, np.arange(64, 96), splits.test.y, 2, 3, 1e-2)
    assert len(curve) == 2 and all(0 <= v <= 1 for v in curve)
    assert not torch.equal(lora(a), lora(b))  # training moved the adapter (B starts at zero, A then moves)
    assert all(torch.equal(before[k], v) for k, v in tuner.base.state_dict().items())


def test_selection_with_lora_runs_every_method(encoder, splits):
    r = ts.run_selection(splits, epochs=2, seeds=[0], finetune="lora", encoder=encoder, lissa_iterations=20,
                         lora=TextLoraSettings(batch_size=16))
    summary = r.summary()
    assert r.info["finetune"] == "lora"
    assert summary["method"].tolist() == [ts.ALL_ROW, ts.CLEAN_ROW, *ts.METHOD_KEYS]
    assert len(r.curves) == (2 + len(ts.METHOD_KEYS)) * 2
    assert all(np.isfinite(v).all() and len(v) == 64 for v in r.scores.values())
    assert (summary.loc[summary["method"].isin(ts.METHOD_KEYS), "kept"] == round(0.7 * 64)).all()


def test_lora_needs_a_transformer_encoder(splits):
    with pytest.raises(OgdashError, match="transformer encoder"):
        ts.run_selection(splits, methods=["og_l2"], epochs=1, seeds=[0], finetune="lora", encoder=HashingEncoder(32))
    with pytest.raises(OgdashError, match="finetune"):
        ts.run_selection(splits, methods=["og_l2"], epochs=1, seeds=[0], finetune="full")
    with pytest.raises(OgdashError, match="lr"):
        TextLoraSettings(lr=-1)


def test_cli_flag(tmp_path):
    import pandas as pd

    texts, y, _ = tiny_corpus(80)
    pd.DataFrame({"text": texts, "label": y}).to_csv(tmp_path / "t.csv", index=False)
    p = argparse.ArgumentParser()
    text_cli.add_textselect_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["textselect", "--data", str(tmp_path / "t.csv"), "--encoder", "tiny-bert", "--finetune",
                         "lora", "--epochs", "1", "--seeds", "1", "--methods", "og_l2,datainf", "--quiet",
                         "--cache", str(tmp_path / "c")])
    out = text_cli.run_textselect(args)
    assert out["finetune"] == "lora" and [r["method"] for r in out["rows"]][-2:] == ["og_l2", "datainf"]
    assert "LoRA-tuned encoder" in text_cli.format_textselect(out)

"""LLM prompt influence on the tiny model: batched LoRA gradients, the methods, the metrics, the pipeline, the CLI."""
import argparse
import json

import numpy as np
import pytest
import torch

from ogdash.cli.llm import add_llm_parser, format_llm, run_llm
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data.prompts import make_prompts
from ogdash.detect.forest import oga_matrix
from ogdash.engine.projection import SparseProjector
from ogdash.experiments.llm_gradients import lora_gradients, lora_gradients_loop
from ogdash.experiments.llm_prompts import analyze, class_detection, class_view, finetuned_model
from ogdash.influence.datainf import datainf
from ogdash.influence.hessian import gradient_tracing
from ogdash.influence.matrices import datainf_matrix, tracin_matrix
from ogdash.models import llm, prompt_lm


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model's matrices are too small to share out: one thread is several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bench():
    return make_prompts("math_reason", per_class=2, test_per_class=1)


def _runner(bench, lora_layers, loss_on="all"):
    lm = llm.load_language_model("tiny", "cpu")
    peft_model = llm.add_lora(lm, llm.LoraSettings(layers=lora_layers))
    enc = prompt_lm.encode(lm.tokenizer, bench.train.prompts, bench.train.completions, 256, loss_on)
    runner = prompt_lm.PromptLM(peft_model, lm.tokenizer, enc, groups=bench.train.labels)
    # a few steps at a high rate, so that LoRA's B is no longer zero and A's gradient is not trivially zero
    prompt_lm.finetune(runner, np.arange(len(enc)), llm.FinetuneSettings(epochs=2, batch_size=5, lr=3e-2))
    return runner


# LoRA everywhere with the loss on every token; LoRA on top of one frozen, cached layer with the loss on the answer
@pytest.mark.parametrize("lora_layers, loss_on", [(None, "all"), (1, "completion")])
def test_batched_gradients_equal_a_per_prompt_autograd_loop(bench, lora_layers, loss_on):
    runner = _runner(bench, lora_layers, loss_on)
    assert runner.fast and runner.start == (0 if lora_layers is None else 1)
    idx = np.arange(runner.lengths.size)
    for layers in ("last", "all"):
        g = lora_gradients(runner, idx, layers, batch_size=7)
        # the reference runs the model's own full forward, one prompt per backward
        ref = lora_gradients_loop(runner, idx, layers, fast=False)
        assert g.matrix.shape == ref.shape
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(g.matrix, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
        assert g.blocks[-1][2] == g.dim and all("lora_" in name for name, _, _ in g.blocks)
        names = [n for n, _ in llm.lora_parameters(runner.model)]
        assert [b[0] for b in g.blocks] == (names if layers == "all" else names[-4:])
    assert g.loss.shape == (len(idx),) and np.all(g.loss > 0)
    proj = lora_gradients(runner, idx, "last", projector=SparseProjector(1792, 64, seed=0))
    assert proj.projected and proj.matrix.shape == (len(idx), 64) and proj.blocks == [("projection", 0, 64)]


def test_finetuning_lowers_the_loss_and_the_completion_is_text(bench):
    runner = _runner(bench, None)
    info = prompt_lm.finetune(runner, np.arange(runner.lengths.size), llm.FinetuneSettings(epochs=3, batch_size=5, lr=3e-2))
    assert info["epoch_loss"][-1] < info["epoch_loss"][0]
    assert isinstance(prompt_lm.complete(runner.model, runner.tokenizer, bench.test.prompts[0], max_new_tokens=5), str)


def test_encode_keeps_the_completion():
    lm = llm.load_language_model("tiny", "cpu")
    enc = prompt_lm.encode(lm.tokenizer, ["x" * 100], [" answer"], max_length=20, loss_on="completion")
    assert len(enc.ids[0]) == 20 and enc.n_prompt[0] == enc.loss_start[0] == 20 - len(" answer") - 1
    assert prompt_lm.encode(lm.tokenizer, ["x" * 100], [" answer"], max_length=20).loss_start == (1,)
    assert lm.tokenizer.decode(enc.ids[0][enc.n_prompt[0]:], skip_special_tokens=True) == " answer"
    with pytest.raises(OgdashError, match="max_length"):
        prompt_lm.encode(lm.tokenizer, ["x"], ["y" * 50], max_length=20)
    a, b = llm.tiny_model(0)[0], llm.tiny_model(0)[0]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_tracin_and_datainf_rows_equal_the_baselines(rng):
    G, T = rng.normal(size=(30, 12)), rng.normal(size=(4, 12))
    blocks = [("a", 0, 5), ("b", 5, 12)]
    M = datainf_matrix(G, T, blocks)
    R = tracin_matrix(G, T)
    for t in range(4):
        # baselines say "higher = more detrimental" for the summed reference; one test prompt is the reference
        np.testing.assert_allclose(M[t], -datainf(G, T[t:t + 1], layer_slices=[slice(0, 5), slice(5, 12)]),
                                   rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(R[t], -gradient_tracing(G, T[t:t + 1]), rtol=1e-12)


def test_outlier_gradient_per_class_forests_detect_the_class(rng):
    centres = rng.normal(scale=6.0, size=(3, 8))
    y = np.repeat(np.arange(3), 20)
    G = centres[y] + rng.normal(size=(60, 8))
    yt = np.repeat(np.arange(3), 4)
    T = centres[yt] + rng.normal(size=(12, 8))
    M, V = oga_matrix(G, y, T, 3, seed=0)
    assert M.shape == (12, 60) and V.shape == (12, 3)
    np.testing.assert_array_equal(M, V[:, y])  # constant within each class block
    assert np.array_equal(V.argmax(1), yt)
    m = class_detection(M, y, yt)
    assert m["auc_mean"] == 1.0 and m["recall_mean"] == 1.0
    np.testing.assert_allclose(class_view(M, y, 3), V)


def test_class_detection_metrics():
    y = np.array([0, 0, 1, 1])
    M = np.array([[4.0, 3.0, 2.0, 1.0],   # perfect for class 0
                  [4.0, 1.0, 3.0, 2.0]])  # class 1: one of its two top-2 is right; AUC 0.5 (1 of 4 pairs + 0)
    m = class_detection(M, y, np.array([0, 1]))
    np.testing.assert_allclose(m["auc"], [1.0, 0.5])
    np.testing.assert_allclose(m["recall"], [1.0, 0.5])
    assert m["auc_mean"] == 0.75 and m["recall_std"] == 0.25
    with pytest.raises(OgdashError, match="test, train"):
        class_detection(M.T, y, np.array([0, 1]))


def test_pipeline_on_tiny_is_cached(tmp_path):
    cache = DiskCache(tmp_path / "c")
    kw = dict(model="tiny", per_class=3, test_per_class=1, cache=cache, lora=llm.LoraSettings(layers=1),
              settings=llm.FinetuneSettings(epochs=1, batch_size=8, loss_on="completion"))
    seen = []
    first = analyze("sentence_transformations", progress=lambda f, m: seen.append(m), **kw)
    assert set(first.metrics) == {"oga", "tracin", "datainf"}
    assert first.matrices["oga"].shape == (10, 30) and first.by_class["tracin"].shape == (10, 10)
    assert {"load_model", "frozen_prefix", "finetune", "gradients", "oga"} <= set(first.seconds)
    assert any(m.startswith("Fine-tuning") for m in seen) and any(m.startswith("Gradients") for m in seen)
    assert not any(first.cached.values())
    for d in first.metrics.values():
        assert 0 <= d["auc_mean"] <= 1 and 0 <= d["recall_mean"] <= 1
    again = analyze("sentence_transformations", **kw)
    assert all(again.cached.values()) and "load_model" not in again.seconds  # no model needed
    for m in first.matrices:
        np.testing.assert_array_equal(first.matrices[m], again.matrices[m])
    assert again.finetune["epoch_loss"] == first.finetune["epoch_loss"]
    # a different layer choice reuses the adapter but not the gradients
    other = analyze("sentence_transformations", layers="all", methods=["tracin"], **kw)
    assert other.cached == {"tracin": False, "gradients": False, "finetune": True}
    model, tok = finetuned_model(first, cache)
    assert isinstance(prompt_lm.complete(model, tok, first.benchmark.test.prompts[0], max_new_tokens=3), str)
    json.dumps(first.summary())


def test_bad_choices():
    with pytest.raises(OgdashError, match="methods"):
        analyze("math_reason", model="tiny", methods=["lissa"])
    with pytest.raises(OgdashError, match="layer choice"):
        analyze("math_reason", model="tiny", layers="middle")
    with pytest.raises(OgdashError, match="not a Hugging Face model folder"):
        analyze("math_reason", model="/nonexistent/model")


def test_cli_prints_metrics(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_llm_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["llm", "--task", "math_no_reason", "--model", "tiny", "--methods", "oga,tracin",
                              "--per-class", "3", "--test-per-class", "1", "--lora-layers", "all",
                              "--cache", str(tmp_path), "--json", "--quiet"])
    out = run_llm(args)
    assert set(out["metrics"]) == {"oga", "tracin"} and out["n_train"] == 30
    assert out["lora"]["layers"] is None and out["seconds"]["total"] > 0
    assert json.loads(json.dumps(out))["task"] == "math_no_reason"
    text = format_llm(out)
    assert "Outlier Gradient" in text and "Llama-2-13B" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["llm", "--task", "math_reason", "--methods", "oga,lissa"])

"""Your own fine-tuning files on the tiny model: stored gradients, influence, detrimental scores and the budget,
typed queries, the re-fine-tune, review decisions and the cleaned file, existing adapters, and the CLI contract."""
import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

from ogdash.cli.llm import add_llm_parser, format_llm, run_llm
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data.prompt_files import load_prompt_file, write_jsonl
from ogdash.data.prompts import make_instruction_set
from ogdash.experiments import llm_files as lf
from ogdash.experiments.llm_budget import suggest_prompt_budget
from ogdash.experiments.llm_query import QueryEngine
from ogdash.experiments.llm_refinetune import refinetune
from ogdash.experiments.llm_review import applied, cleaned_jsonl, current, record, record_many, review_table
from ogdash.influence.matrices import datainf_matrix, tracin_matrix
from ogdash.influence.streaming import RowStore, cosine_rows, datainf_rows, datainf_stats, tracin_rows
from ogdash.models import llm, prompt_lm
from ogdash.review import DecisionStore

SETTINGS = lf.FileSettings(model="tiny", proj_dim=256, lora=llm.LoraSettings(layers=1),
                           finetune=llm.FinetuneSettings(epochs=2, batch_size=8, lr=3e-2, max_length=256,
                                                         loss_on="completion"))


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model runs several times faster on one thread
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm_files")
    s = make_instruction_set(per_task=8, test_per_task=2, wrong_rate=0.25, seed=0)
    return (write_jsonl(list(s.train), root / "train.jsonl"), write_jsonl(list(s.test), root / "test.jsonl"),
            s.wrong, root)


@pytest.fixture(scope="module")
def run(files):
    torch.set_num_threads(1)
    train, test, _, root = files
    return lf.extract(train, test, SETTINGS, DiskCache(root / "cache"))


def test_extract_stores_float16_unit_rows_and_reads_them_back_from_the_cache(run, files):
    train, test, _, root = files
    assert (run.train.n, run.test.n) == (40, 10) and run.grad_dim == 256 and run.full_dim == 1792
    assert run.G.unit.dtype == np.float16 and isinstance(run.G.unit, np.memmap)
    np.testing.assert_allclose(np.linalg.norm(run.G.rows(0, 40, unit=True), axis=1), 1.0, atol=2e-3)
    assert np.all(run.G.norm > 0) and np.all(run.loss > 0) and run.loss_test.shape == (10,)
    assert {"load_model", "finetune", "gradients"} <= set(run.seconds) and not run.cached["gradients"]
    assert len(run.finetune_info["epoch_loss"]) == 2
    again = lf.extract(train, test, SETTINGS, DiskCache(root / "cache"))
    assert again.cached["gradients"] and "load_model" not in again.seconds  # no model needed
    np.testing.assert_array_equal(again.G.norm, run.G.norm)
    json.dumps(run.summary())


def test_streaming_influence_equals_the_dense_matrices(rng):
    G, B = rng.normal(size=(300, 24)) * 1e-4, rng.normal(size=(5, 24)) * 1e-4  # small gradients: no underflow
    store = RowStore.from_dense(G)
    dense = store.rows(0, 300)  # what float16 unit rows hold
    np.testing.assert_allclose(dense, G, rtol=2e-3, atol=1e-7)
    want = tracin_matrix(dense, B)  # float32 products against float64: equal to float32's precision
    np.testing.assert_allclose(tracin_rows(store, B), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    blocks = [("a", 0, 10), ("b", 10, 24)]
    want = datainf_matrix(dense, B, blocks)
    tol = dict(rtol=1e-4, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(datainf_rows(store, B, datainf_stats(store, blocks)), want, **tol)
    cos = cosine_rows(store, B)
    unit = (B / np.linalg.norm(B, axis=1, keepdims=True)) @ (G / np.linalg.norm(G, axis=1, keepdims=True)).T
    np.testing.assert_allclose(cos, unit, atol=2e-3)
    held = RowStore(store.unit, store.norm)
    assert not held.keep_in_memory(100) and held.keep_in_memory(10**8)  # too big for 100 bytes; fits in 100 MB
    np.testing.assert_array_equal(tracin_rows(held, B), tracin_rows(store, B))
    from ogdash.influence import streaming

    before = streaming.CHUNK_BYTES
    streaming.CHUNK_BYTES = 24 * 4 * 7  # chunks of 7 rows give the same numbers
    try:
        np.testing.assert_allclose(datainf_rows(store, B, datainf_stats(store, blocks)), want, **tol)
    finally:
        streaming.CHUNK_BYTES = before


def test_groups_from_a_column_or_gradient_clusters(run):
    g = lf.grouping(run, "task")
    assert g.names == ("add", "capitalize", "multiply", "remove_vowels", "reverse") and g.source == "column 'task'"
    assert np.bincount(g.labels).tolist() == [8] * 5 and np.bincount(g.test_labels).tolist() == [2] * 5
    c = lf.grouping(run, None, 3)
    assert c.n_groups == 3 and set(c.labels) == {0, 1, 2} and c.test_labels.shape == (10,)
    assert np.bincount(c.labels)[0] == np.bincount(c.labels).max()  # cluster 1 is the largest
    assert lf.default_clusters(40) == 2 and lf.default_clusters(10_000) == 10


def test_detrimental_scores_and_influence(run):
    groups = lf.grouping(run, "task")
    np.testing.assert_array_equal(lf.detrimental(run, "l2"), run.G.norm.astype(np.float64))
    for det in lf.DETECTORS:
        s = lf.detrimental(run, det, groups)
        assert s.shape == (40,) and np.all(np.isfinite(s))
    for m in lf.METHODS:
        M = lf.influence(run, m, groups)
        assert M.shape == (10, 40) and np.all(np.isfinite(M))
    M = lf.influence(run, "oga", groups)
    np.testing.assert_array_equal(M, lf.og_forests(run, groups).by_group(
        np.concatenate([b for _, b in run.G_test.chunks()]))[:, groups.labels])  # constant within a group
    order = lf.ranking(run, "oga", M[0], groups)
    within = lf.og_forests(run, groups).within
    best = groups.labels[order[0]]
    first = order[:8]
    assert (groups.labels[first] == best).all() and np.all(np.diff(within[first]) <= 0)  # most typical first
    share = lf.own_group_share(run, "tracin", groups, k=5)
    assert share.shape == (10,) and np.all((share >= 0) & (share <= 1))
    long = lf.influence_long(run, ["oga", "tracin"], k=10, groups=groups)
    assert list(long.columns) == ["test_id", "train_id", "method", "score", "rank"]
    assert len(long) == 2 * 10 * 10 and long.groupby(["test_id", "method"])["rank"].apply(list).map(
        lambda r: r == list(range(1, 11))).all()
    tracin = long[long.method == "tracin"]
    assert (tracin.groupby("test_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    table = lf.top_table(run, "datainf", lf.influence(run, "datainf")[3], 5, groups)
    assert list(table.columns) == ["rank", "id", "source", "influence", "group", "prompt", "completion"]


def test_typed_query_scores_the_same_gradient_as_the_stored_test_prompt(run, files):
    engine = QueryEngine(run, DiskCache(files[3] / "cache"))
    t = 4
    g, loss = engine.gradient(run.test.prompts[t], run.test.completions[t])
    stored = run.G_test.rows(t, t + 1)[0]
    np.testing.assert_allclose(g, stored, rtol=5e-3, atol=5e-3 * np.abs(stored).max())
    assert loss == pytest.approx(float(run.loss_test[t]), rel=1e-4)
    res = engine.query(run.test.prompts[t], run.test.completions[t], methods=["tracin", "datainf"], k=7)
    want = lf.influence(run, "tracin")[t]
    assert res.tables["tracin"]["id"].tolist() == [run.train.ids[j] for j in np.argsort(-want, kind="stable")[:7]]
    assert isinstance(engine.complete("2+3 ->"), str)  # the random tiny model's greedy text: often blanks
    engine.complete = lambda prompt: " 5"
    own = engine.query("2+3 ->", None, methods=["less"], k=3)
    assert own.generated and own.completion == " 5" and len(own.tables["less"]) == 3
    engine.complete = lambda prompt: "  "
    with pytest.raises(OgdashError, match="completion of this prompt is empty"):
        engine.query("2+3 ->")
    with pytest.raises(OgdashError, match="type a prompt"):
        engine.query("  ")


def test_budget_from_a_score_mixture():
    rng = np.random.default_rng(0)
    two = np.exp(np.concatenate([rng.normal(0, 0.3, 900), rng.normal(3, 0.3, 100)]))
    b = suggest_prompt_budget(two)
    assert b.reliable and b.warning == "" and abs(b.fraction - 0.1) < 0.02 and b.low <= 0.1 <= b.high
    assert b.count == round(b.fraction * 1000) and "separate high group" in b.describe()
    one = rng.normal(0, 1, 1000)  # no second group: the split is not trusted
    u = suggest_prompt_budget(one)
    assert not u.reliable and u.low == 0.0 and u.warning.startswith("Unreliable:")
    assert set(u.to_dict()) >= {"fraction", "low", "high", "reliable", "warning", "separation", "bic_gain"}
    with pytest.raises(OgdashError, match="at least 10"):
        suggest_prompt_budget([1.0, 2.0])
    # per group: one group with a clear high group, one without; the estimate counts the first, names the second
    labels = np.repeat([0, 1], 500)
    z = np.concatenate([rng.normal(0, 1, 450), rng.normal(6, 1, 50), rng.normal(0, 1, 500)])
    g = suggest_prompt_budget(z, labels, ["clear", "flat"])
    assert not g.reliable and "in flat the scores show no separate high group" in g.warning
    assert abs(g.count - 50) <= 10 and g.high * 1000 > 100 and [p["group"] for p in g.groups] == ["clear", "flat"]
    assert "in each group" in g.describe()


def test_refinetune_compares_the_cleaning_with_random_removals(run, files):
    cache = DiskCache(files[3] / "cache")
    r = refinetune(run, removed=[0, 1, 2, 3], edits={5: " fixed"}, seeds=(0,), cache=cache)
    assert [a.name for a in r.arms] == ["unchanged", "cleaned", "random"]
    assert [a.n_train for a in r.arms] == [40, 36, 36] and r.arm("random").n_removed == 4
    assert r.steps == 2 * 5 and all(np.isfinite(a.loss).all() for a in r.arms)
    assert r.arm("cleaned").exact is None and "exact match not measured" in r.exact_note  # char tokens: long
    assert r.verdict().startswith("Too few seeds")
    again = refinetune(run, removed=[0, 1, 2, 3], edits={5: " fixed"}, seeds=(0,), cache=cache)
    np.testing.assert_array_equal(again.arm("cleaned").loss, r.arm("cleaned").loss)  # from the cache
    assert again.seconds < r.seconds
    json.dumps(r.summary())
    with pytest.raises(OgdashError, match="every training example"):
        refinetune(run, removed=range(40), seeds=(0,), cache=cache)


def test_review_decisions_give_the_cleaned_file(run, tmp_path):
    store = DecisionStore(tmp_path / "d.sqlite")
    data = run.train
    scores = lf.detrimental(run)
    flags = scores >= np.sort(scores)[-5]
    cards = review_table(data, scores, flags, lf.grouping(run, "task"))
    assert cards["flagged"].tolist()[:5] == [True] * 5 and list(cards.columns)[:3] == ["sample_id", "id", "source"]
    sid = [int(s) for s in cards["sample_id"][:3]]
    record(store, data, sid[0], "remove", "ann")
    record(store, data, sid[1], "edit", "ann", new_completion=" corrected")
    record_many(store, data, [sid[2]], "keep", "ann")
    with pytest.raises(OgdashError, match="Unknown decision 'relabel'"):
        record(store, data, sid[0], "relabel", "ann")
    with pytest.raises(OgdashError, match="no example with sample id 999"):
        record(store, data, 999, "keep", "ann")
    cur = current(store, data)
    assert cur["source"].tolist() == [data.sources[data.position(s)] for s in sorted(sid)]
    removed, edits = applied(store, data)
    assert removed == [data.position(sid[0])] and edits == {data.position(sid[1]): " corrected"}
    lines = [json.loads(x) for x in cleaned_jsonl(data, store).decode().splitlines()]
    assert len(lines) == 39 and data.ids[removed[0]] not in {r["id"] for r in lines}
    assert next(r for r in lines if r["id"] == data.ids[data.position(sid[1])])["completion"] == " corrected"
    assert set(lines[0]) == {"id", "task", "prompt", "completion"}  # the input's own record format


def test_an_existing_adapter_is_used_as_it_is(run, files, tmp_path):
    train, test, _, root = files
    cache = DiskCache(root / "cache")
    loaded = lf.load_model(SETTINGS, "cpu", cache)
    assert prompt_lm.load_adapter(cache, run.adapter_key, loaded.model) is not None  # the adapter extract trained
    loaded.model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    mine = lf.extract(train, test, lf.with_settings(SETTINGS, adapter=str(tmp_path / "adapter")), cache)
    assert "finetune" not in mine.seconds and not mine.finetune_info
    np.testing.assert_allclose(mine.G.norm, run.G.norm, rtol=1e-4)  # the same weights: the same gradients


def test_adapter_and_model_folders_that_do_not_fit(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    lm = llm.load_language_model("tiny", "cpu")
    cfg = LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    other = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(OgdashError, match="the adapter does not match the model tiny"):
        llm.load_adapter_folder(lm, tmp_path / "other")
    lm = llm.load_language_model("tiny", "cpu")
    (tmp_path / "other" / "adapter_config.json").write_text(json.dumps(
        {**json.loads((tmp_path / "other" / "adapter_config.json").read_text()), "target_modules": ["w_nope"]}))
    with pytest.raises(OgdashError, match="does not match the model"):
        llm.load_adapter_folder(lm, tmp_path / "other")
    with pytest.raises(OgdashError, match="not a LoRA adapter folder"):
        llm.load_adapter_folder(lm, tmp_path)
    model, tok = llm.tiny_model(0)
    model.save_pretrained(tmp_path / "model")
    with pytest.raises(OgdashError, match="has no tokenizer"):
        llm.load_language_model(str(tmp_path / "model"), "cpu")
    tok.save_pretrained(tmp_path / "model")
    assert llm.load_language_model(str(tmp_path / "model"), "cpu").n_layers == 2


def test_a_pickled_adapter_is_read_as_tensors_only(tmp_path):
    import os

    lm = llm.load_language_model("tiny", "cpu")
    peft_model = llm.add_lora(lm, llm.LoraSettings(layers=1))
    peft_model.save_pretrained(tmp_path / "a", safe_serialization=False)
    assert (tmp_path / "a" / "adapter_model.bin").is_file()
    assert llm.load_adapter_folder(llm.load_language_model("tiny", "cpu"), tmp_path / "a") is not None

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"x": Payload()}, tmp_path / "a" / "adapter_model.bin")
    with pytest.raises(OgdashError, match="cannot be loaded safely as adapter weights"):
        llm.load_adapter_folder(llm.load_language_model("tiny", "cpu"), tmp_path / "a")
    assert not (tmp_path / "pwned").exists()


def _cli(*argv):
    parser = argparse.ArgumentParser()
    add_llm_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["llm", *argv])


def test_cli_contract_on_your_files(files, tmp_path):
    train, test, wrong, root = files
    out = run_llm(_cli("--train", str(train), "--test", str(test), "--model", "tiny", "--out", str(tmp_path / "s.csv"),
                       "--influence-out", str(tmp_path / "i.csv"), "--cache", str(root / "cache"), "--proj-dim", "256",
                       "--lora-layers", "1", "--epochs", "2", "--batch-size", "8", "--lr", "0.03",
                       "--max-length", "256", "--group-by", "task", "--budget", "0.25",
                       "--cleaned-out", str(tmp_path / "c.jsonl"), "--json", "--quiet"))
    assert out["cached"]["gradients"]  # the same files and settings as the fixture: read from the cache
    scores = pd.read_csv(tmp_path / "s.csv")
    assert list(scores.columns) == ["id", "source", "score", "flagged", "group", "prompt", "completion"]
    assert len(scores) == 40 and scores["flagged"].sum() == 10 == out["n_flagged"]
    assert scores["score"].is_monotonic_decreasing
    infl = pd.read_csv(tmp_path / "i.csv")
    assert list(infl.columns) == ["test_id", "train_id", "method", "score", "rank"]
    assert (infl[infl.method == "oga"].groupby("test_id").size() >= 10).all() and set(infl.method) == {
        "oga", "tracin", "datainf"}
    assert len(load_prompt_file(tmp_path / "c.jsonl").ids) == 30
    assert set(out["own_group_share"]) == {"oga", "tracin", "datainf"}
    assert "describe" in out["suggested_budget"]
    text = format_llm(out)
    assert "flagged 10 examples" in text and "wrote scores" in text
    json.dumps(out)


def test_cli_refuses_mixed_modes(files):
    train, test, _, root = files
    with pytest.raises(OgdashError, match="--test goes with --train"):
        run_llm(_cli("--task", "math_reason", "--test", str(test), "--model", "tiny"))
    with pytest.raises(OgdashError, match="need --test"):
        run_llm(_cli("--train", str(train), "--model", "tiny", "--refinetune"))
    with pytest.raises(SystemExit):
        _cli("--task", "math_reason", "--train", str(train))


def test_misalignment_finds_the_gradient_that_points_away_from_its_group(rng):
    centres = rng.normal(size=(3, 40))
    labels = np.repeat(np.arange(3), 30)
    G = centres[labels] * rng.uniform(0.5, 3, (90, 1)) + 0.3 * rng.normal(size=(90, 40))  # norms vary widely
    G[[5, 40, 70]] = centres[[1, 2, 0]] * 0.5  # three examples that follow another group's direction, small norms
    groups = lf.Grouping(labels, ("a", "b", "c"), "test")
    s = lf._misalignment(RowStore.from_dense(G), groups)
    assert set(np.argsort(-s)[:3]) == {5, 40, 70}
    assert np.allclose([np.median(s[labels == g]) for g in range(3)], 0.0)  # a robust z-score per group
    f = lf.OGForests.fit(RowStore.from_dense(G), groups, seed=0)
    assert (f.by_group(centres + 0.1 * rng.normal(size=(3, 40))).argmax(1) == [0, 1, 2]).all()

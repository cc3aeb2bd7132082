
import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty ogdash cache."""
    monkeypatch.setenv("OGDASH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)



@pytest.fixture
def prompt_files_app(tmp_path, monkeypatch):
    """The app on a fine-tuning set of its own: data root, cache and decision store under ``tmp_path``, the process
    memo cleared, no role lists, the generated instruction set as data/train.jsonl and data/test.jsonl, torch on
    one thread (the tiny model's runs are then the same on any machine). Yields the data root."""
    import streamlit as st

    from ogdash.data.prompt_files import write_jsonl
    from ogdash.data.prompts import make_instruction_set

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("OGDASH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    for name in ("OGDASH_ADMINS", "OGDASH_REVIEWERS"):
        monkeypatch.delenv(name, raising=False)
    s = make_instruction_set(per_task=6, test_per_task=2, wrong_rate=0.2, seed=0)
    write_jsonl(list(s.train), tmp_path / "data" / "train.jsonl")
    write_jsonl(list(s.test), tmp_path / "data" / "test.jsonl")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)

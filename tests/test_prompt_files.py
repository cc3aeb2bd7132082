"""Your own prompt files: every format and record shape, ids and sources, bad records in one line, the size caps,
the cleaned copy in the input's own format, and the generated five-task instruction set."""
import json

import numpy as np
import pandas as pd
import pytest

from ogdash.core.errors import OgdashError
from ogdash.data.prompt_files import (cleaned_records, jsonl_bytes, load_prompt_file, render_chat, write_jsonl)
from ogdash.data.prompts import INSTRUCTION_TASKS, make_instruction_set
from ogdash.models.llm import tiny_tokenizer

RECORDS = [{"id": "a1", "task": "math", "prompt": "2+2 ->", "completion": " 4", "meta": {"by": "ann"}},
           {"id": "a2", "task": "words", "prompt": "Reverse: a b ->", "completion": " b a"},
           {"id": "a3", "task": "math", "prompt": "3+3 ->", "completion": " 6", "score": 0.5}]
CHAT = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}], "source": "web"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                      {"role": "user", "content": "thanks"}], "source": "chat"}]


def _jsonl(path, records, blank=False):
    lines = [json.dumps(r) for r in records]
    if blank:
        lines.insert(1, "")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_prompt_completion_keeps_ids_sources_and_columns(tmp_path):
    d = load_prompt_file(_jsonl(tmp_path / "t.jsonl", RECORDS, blank=True))
    assert (d.n, d.kind, d.format) == (3, "completion", "jsonl")
    assert d.ids == ("a1", "a2", "a3") and d.sources == ("line 1", "line 3", "line 4")  # the blank line 2 counts
    assert d.sample_ids.tolist() == [0, 1, 2]  # text ids: positions are the stable integer ids
    assert d.completions == (" 4", " b a", " 6") and d.prompts[1] == "Reverse: a b ->"
    assert list(d.columns.columns) == ["score", "task"]  # scalars only; the nested 'meta' stays in the record
    assert d.column("task").tolist() == ["math", "words", "math"] and d.column("score").tolist() == ["", "", "0.5"]
    assert d.position(2) == 2 and d.records[0]["meta"] == {"by": "ann"}
    assert d.fingerprint() == load_prompt_file(tmp_path / "t.jsonl").fingerprint()
    with pytest.raises(OgdashError, match="no column 'nope'"):
        d.column("nope")


def test_integer_ids_are_the_sample_ids(tmp_path):
    d = load_prompt_file(_jsonl(tmp_path / "t.jsonl", [{**r, "id": 10 * i + 7} for i, r in enumerate(RECORDS)]))
    assert d.sample_ids.tolist() == [7, 17, 27] and d.ids == ("7", "17", "27") and d.position(17) == 1


@pytest.mark.parametrize("fmt", ["csv", "parquet", "hf", "json"])
def test_other_formats_read_the_same_examples(tmp_path, fmt):
    flat = [{k: v for k, v in r.items() if k != "meta"} for r in RECORDS]
    df = pd.DataFrame(flat)
    if fmt == "csv":
        path = tmp_path / "t.csv"
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        path = tmp_path / "t.parquet"
        df.to_parquet(path)
    elif fmt == "json":  # a .json file holding one array
        path = tmp_path / "t.json"
        path.write_text(json.dumps(flat))
    else:
        from datasets import Dataset

        path = tmp_path / "ds"
        Dataset.from_pandas(df).save_to_disk(str(path))
    d = load_prompt_file(path)
    assert d.ids == ("a1", "a2", "a3") and d.completions == (" 4", " b a", " 6")
    assert d.column("task").tolist() == ["math", "words", "math"]
    assert d.sources[0] == {"csv": "line 2", "parquet": "row 0", "hf": "row 0", "json": "record 0"}[fmt]


def test_chat_messages_last_assistant_turn_is_the_completion(tmp_path):
    d = load_prompt_file(_jsonl(tmp_path / "c.jsonl", CHAT))
    assert d.kind == "chat" and d.completions == ("4", "Hello!")
    assert d.messages[0] == CHAT[0]["messages"][:2] and d.messages[1] == [{"role": "user", "content": "Hi"}]
    assert d.prompts[0] == "system: Be brief.\nuser: 2+2?"
    assert any("after the last assistant turn were ignored" in n for n in d.notes)
    tok = tiny_tokenizer()  # no chat template: role lines and an 'assistant:' cue
    prompts, completions = d.render(tok)
    assert prompts[1] == "user: Hi\nassistant:" and completions == ["4", "Hello!"]
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    assert d.render(tok)[0][0] == "<system>Be brief.<user>2+2?<assistant>"
    assert render_chat(tok, [{"role": "user", "content": "x"}]) == "<user>x<assistant>"


@pytest.mark.parametrize("content, needle", [
    ('{"prompt": "a", "completion": " b"}\n{"prompt": "c", "completion": \n', r"line 2 is not valid JSON"),
    ('{"prompt": "a", "completion": " b"}\n{"prompt": "c"}\n', r"line 2 has no 'completion' field"),
    ('{"question": "a", "answer": " b"}\n',
     r"line 1 has no 'prompt' and 'completion' fields \(found: answer, question"),
    ('{"prompt": "a", "completion": " b"}\n{"prompt": "c", "completion": "  "}\n', r"1 example\(s\) have an empty "
                                                                                  r"completion \(first: line 2\)"),
    ('{"prompt": "a", "completion": 5}\n', r"line 1: the 'completion' field is int, not text"),
    ('{"id": 1, "prompt": "a", "completion": " b"}\n{"id": 1, "prompt": "c", "completion": " d"}\n',
     r"line 2 repeats the id '1' of line 1"),
    ('[1, 2]\n', r"record 0 is a JSON int, not an object"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', r"line 1: 'messages' has no assistant turn"),
    ('{"messages": [{"role": "user"}]}\n', r"line 1: turn 1 of 'messages' needs a text 'role' and 'content'"),
    ('\n\n', r"holds no examples"),
])
def test_bad_records_are_one_line_naming_the_line(tmp_path, content, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(OgdashError, match=needle) as e:
        load_prompt_file(path)
    assert "\n" not in str(e.value)


def test_other_bad_files(tmp_path):
    with pytest.raises(OgdashError, match="file not found"):
        load_prompt_file(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(OgdashError, match="is not a prompt file"):
        load_prompt_file(tmp_path / "x.txt")
    (tmp_path / "latin.jsonl").write_bytes('{"prompt": "caf\xe9", "completion": " x"}\n'.encode("latin-1"))
    with pytest.raises(OgdashError, match="not UTF-8"):
        load_prompt_file(tmp_path / "latin.jsonl")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(OgdashError, match="not a dataset saved with datasets' save_to_disk"):
        load_prompt_file(tmp_path / "empty_dir")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(OgdashError, match="not a readable Parquet file"):
        load_prompt_file(tmp_path / "bad.parquet")


def test_size_caps_are_checked_before_reading(tmp_path, monkeypatch):
    path = _jsonl(tmp_path / "t.jsonl", RECORDS * 4)
    monkeypatch.setenv("OGDASH_MAX_PROMPTS", "5")
    with pytest.raises(OgdashError, match=r"holds 12 examples, over the limit of 5 \(OGDASH_MAX_PROMPTS\)"):
        load_prompt_file(path)
    pd.DataFrame(RECORDS * 4).drop(columns=["meta"]).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(OgdashError, match="OGDASH_MAX_PROMPTS"):
        load_prompt_file(tmp_path / "t.parquet")
    monkeypatch.setenv("OGDASH_MAX_PROMPTS", "100")
    path.write_bytes(b" " * (2 * 2**20))  # 2 MB of nothing
    monkeypatch.setenv("OGDASH_MAX_TEXT_MB", "1")
    with pytest.raises(OgdashError, match=r"weighs 2 MB, over the limit of 1 MB \(OGDASH_MAX_TEXT_MB\)"):
        load_prompt_file(path)


def test_cleaned_copy_keeps_the_records_format(tmp_path):
    d = load_prompt_file(_jsonl(tmp_path / "t.jsonl", RECORDS))
    out = cleaned_records(d, removed=[1], edits={2: " 7"})
    assert [r["id"] for r in out] == ["a1", "a3"] and out[1]["completion"] == " 7" and out[1]["score"] == 0.5
    assert out[0] == RECORDS[0] and d.records[2]["completion"] == " 6"  # the original is untouched
    written = write_jsonl(out, tmp_path / "clean" / "c.jsonl")
    again = load_prompt_file(written)
    assert again.completions == (" 4", " 7") and again.records[0]["meta"] == {"by": "ann"}
    c = load_prompt_file(_jsonl(tmp_path / "c.jsonl", CHAT))
    out = cleaned_records(c, edits={1: "Hey."})
    assert out[1]["messages"][1]["content"] == "Hey." and out[1]["messages"][2]["content"] == "thanks"
    assert out[0] == CHAT[0]
    with pytest.raises(OgdashError, match="non-empty"):
        cleaned_records(c, edits={0: " "})
    text = jsonl_bytes([{"a": "café", "b": float("nan"), "c": np.int64(3)}]).decode()
    assert json.loads(text) == {"a": "café", "b": None, "c": 3}


def test_instruction_set_has_five_tasks_and_planted_mistakes():
    s = make_instruction_set(per_task=20, test_per_task=3, wrong_rate=0.1, seed=1)
    assert len(s.train) == 100 and len(s.test) == 15 and len(s.wrong) == 10
    assert {r["task"] for r in s.train} == set(INSTRUCTION_TASKS)
    assert len({r["task"] for r in s.train[:20]}) > 1  # shuffled: tasks interleave
    by_id = {r["id"]: r for r in s.train}
    for rid, right in s.wrong.items():
        assert by_id[rid]["completion"] != right and by_id[rid]["completion"].strip()
    assert not {r["prompt"] for r in s.train} & {r["prompt"] for r in s.test}
    again = make_instruction_set(per_task=20, test_per_task=3, wrong_rate=0.1, seed=1)
    assert again.train == s.train and again.wrong == s.wrong
    with pytest.raises(OgdashError):
        make_instruction_set(per_task=1)

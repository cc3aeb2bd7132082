"""Your own fine-tuning data: prompt + completion pairs, or chat ``messages``, from JSONL, CSV, Parquet or a
Hugging Face dataset folder; and the cleaned copy written back in the same record format.

Two record shapes are read (the first record decides; every other must match):

- ``prompt`` + ``completion`` (strings): the model reads the prompt and learns to write the completion;
- ``messages``: a list of ``{"role", "content"}`` turns; the **last assistant turn** is the completion and the
  turns before it are the prompt (turns after it are ignored, with a note). The prompt is rendered with the
  model's chat template where the tokenizer has one (:meth:`PromptData.render`).

Optional ``id`` (unique; kept as text) and any other scalar field (``task``, ``source``...) are kept as
``columns`` for grouping and filtering. Each example keeps where it came from (``line 7`` of a JSONL or CSV file,
as an editor numbers lines; ``row 7`` of a Parquet file or a dataset, ``ds[7]``) and a stable integer
``sample_id``: the ``id`` itself when every id is a whole number, else the example's 0-based position. That is
the id review decisions are stored under (``ogdash.review.DecisionStore``).

Sizes are checked before a file is read (``OGDASH_MAX_PROMPTS`` examples, default 1,000,000, from a line count or
the Parquet / Arrow metadata; ``OGDASH_MAX_TEXT_MB`` megabytes on disk, default 1,024). Bad records are refused in
one line that names the line or row: malformed JSON, a missing field, an empty completion, a repeated id.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ogdash.core.env import env_int
from ogdash.core.errors import OgdashError
from ogdash.data.limits import check_csv, count_lines

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
KINDS = ("completion", "chat")
RESERVED = ("id", "prompt", "completion", "messages")
DEFAULT_MAX_PROMPTS = 1_000_000
DEFAULT_MAX_TEXT_MB = 1024


def max_prompts() -> int:
    """Examples one prompt file may hold ($OGDASH_MAX_PROMPTS, default 1,000,000)."""
    return env_int("OGDASH_MAX_PROMPTS", DEFAULT_MAX_PROMPTS)


def max_text_mb() -> int:
    """Megabytes one prompt file may weigh on disk ($OGDASH_MAX_TEXT_MB, default 1,024)."""
    return env_int("OGDASH_MAX_TEXT_MB", DEFAULT_MAX_TEXT_MB)


@dataclass(frozen=True, eq=False)
class PromptData:
    """One file of examples (see the module docstring), in file order.

    ids: the ``id`` field as text, else the source ("line 7"). sample_ids: int64 (n,), the stable integer id.
    prompts: the prompt text (for chat, the turns before the completion as ``role: content`` lines, for
    display; the model reads :meth:`render`). completions: the completion (the last assistant turn).
    messages: for chat, each example's turns before the completion, else None. columns: the other scalar
    fields (one row per example). records: the records as read, for writing the cleaned copy back.
    """

    name: str
    path: str
    format: str
    kind: str
    ids: tuple[str, ...]
    sample_ids: np.ndarray
    sources: tuple[str, ...]
    prompts: tuple[str, ...]
    completions: tuple[str, ...]
    messages: tuple | None
    columns: pd.DataFrame
    records: tuple[dict, ...] = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.completions)

    def text(self, i: int) -> str:
        """Prompt and completion of example ``i`` for people to read."""
        return f"{self.prompts[i]} → {self.completions[i]}"

    def fingerprint(self) -> str:
        """SHA-256 of every example's id, prompt (or turns) and completion, in order: the dataset key."""
        h = hashlib.sha256(f"{self.kind}\x1d".encode())
        turns = self.messages or [None] * self.n
        for i, p, c, m in zip(self.ids, self.prompts, self.completions, turns):
            h.update(f"{i}\x1f{p if m is None else json.dumps(m, sort_keys=True)}\x1f{c}\x1e".encode())
        return h.hexdigest()

    def position(self, sample_id: int) -> int:
        """The 0-based position of the example whose stable id is ``sample_id``."""
        hits = np.flatnonzero(self.sample_ids == int(sample_id))
        if not len(hits):
            raise OgdashError(f"{self.name}: has no example with sample id {sample_id}.")
        return int(hits[0])

    def render(self, tokenizer) -> tuple[list[str], list[str]]:
        """(prompts, completions) as the model reads them: chat turns through the tokenizer's chat template
        (with the generation prompt) where it has one, else ``role: content`` lines and ``assistant:``."""
        if self.kind != "chat":
            return list(self.prompts), list(self.completions)
        return [render_chat(tokenizer, turns) for turns in self.messages], list(self.completions)

    def column(self, name: str) -> pd.Series:
        """One extra column as text (missing values as ''), for grouping."""
        if name not in self.columns.columns:
            raise OgdashError(f"{self.name}: has no column {name!r}; choose one of {', '.join(self.columns.columns)}"
                              if len(self.columns.columns) else f"{self.name}: has no extra columns to group by.")
        return self.columns[name].map(lambda v: "" if _missing(v) else str(v))


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer, turns: list[dict]) -> str:
    """The prompt of one chat example: its turns before the completion, ready for the assistant's answer."""
    if has_chat_template(tokenizer):
        try:
            return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # a template that rejects these roles (e.g. no system turn allowed)
            raise OgdashError(f"the model's chat template could not render a conversation ({_first_line(e)}); "
                              "check the roles in 'messages'.") from None
    return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"


def chat_turns(prompt: str) -> list[dict]:
    """A typed prompt as a one-turn chat (the user's)."""
    return [{"role": "user", "content": prompt}]


# ---------------------------------------------------------------- reading


def load_prompt_file(path, name: str | None = None) -> PromptData:
    """Read a prompt file or dataset folder (see the module docstring); raises OgdashError on bad input."""
    path = Path(path)
    fmt = "hf" if path.is_dir() else FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OgdashError(f"{path}: is not a prompt file; give .jsonl, .json (JSON lines), .csv, .parquet or a "
                          "folder written by datasets' save_to_disk.")
    if fmt != "hf" and not path.is_file():
        raise OgdashError(f"file not found: {path}; check the path (relative paths start at the data root).")
    _check_size(path)
    if fmt == "jsonl":
        rows, sources = _read_jsonl(path)
    elif fmt == "csv":
        rows, sources = _read_csv(path)
    else:
        rows, sources = _read_arrow(path, fmt)
    if not rows:
        raise OgdashError(f"{path}: holds no examples; give at least one record with a prompt and a completion.")
    return _build(rows, sources, path, fmt, name or path.stem)


def _check_size(path: Path) -> None:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    size = sum(p.stat().st_size for p in files)
    cap = max_text_mb()
    if size > cap * 2**20:
        raise OgdashError(f"{path}: weighs {size / 2**20:,.0f} MB, over the limit of {cap:,} MB (OGDASH_MAX_TEXT_MB); "
                          "use a smaller file or raise OGDASH_MAX_TEXT_MB.")


def _check_rows(n: int, path: Path) -> None:
    cap = max_prompts()
    if n > cap:
        raise OgdashError(f"{path}: holds {n:,} examples, over the limit of {cap:,} (OGDASH_MAX_PROMPTS); "
                          "use fewer examples or raise OGDASH_MAX_PROMPTS.")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


def _read_jsonl(path: Path) -> tuple[list, list]:
    _check_rows(count_lines(path), path)
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if head.startswith(b"["):  # a .json file holding one array of records
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise OgdashError(f"{path}: is not UTF-8 text; save it with UTF-8 encoding.") from None
        except json.JSONDecodeError as e:
            raise OgdashError(f"{path}: line {e.lineno} is not valid JSON ({e.msg}); fix it.") from None
        if not isinstance(data, list):
            raise OgdashError(f"{path}: is not a list of records; write one JSON object per line.")
        _check_rows(len(data), path)
        return data, [f"record {i}" for i in range(len(data))]
    rows, sources = [], []
    with open(path, encoding="utf-8") as f:
        try:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise OgdashError(f"{path}: line {number} is not valid JSON ({e.msg} at column {e.colno}); "
                                      "fix or remove that line.") from None
                sources.append(f"line {number}")
        except UnicodeDecodeError:
            raise OgdashError(f"{path}: is not UTF-8 text (near line {len(sources) + 1}); save it with UTF-8 "
                              "encoding.") from None
    return rows, sources


def _read_csv(path: Path) -> tuple[list, list]:
    check_csv(path)
    _check_rows(max(0, count_lines(path) - 1), path)
    try:
        df = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        raise OgdashError(f"{path}: is not UTF-8 text; re-save the CSV with UTF-8 encoding.") from None
    except Exception as e:
        raise OgdashError(f"{path}: cannot be read as CSV ({_first_line(e)}); save it as comma-separated text with "
                          "a header row.") from None
    if "messages" in df.columns:  # chat turns stored as JSON text in a cell
        df["messages"] = [_json_cell(v, path, i) for i, v in enumerate(df["messages"])]
    return df.to_dict("records"), [f"line {i + 2}" for i in range(len(df))]  # the header is line 1


def _json_cell(value: str, path: Path, i: int):
    try:
        return json.loads(value) if value.strip() else None
    except json.JSONDecodeError as e:
        raise OgdashError(f"{path}: line {i + 2}: the messages cell is not valid JSON ({e.msg}); write the turns "
                          "as a JSON list.") from None


def _read_arrow(path: Path, fmt: str) -> tuple[list, list]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
            _check_rows(pf.metadata.num_rows, path)
            table = pf.read()
        except OgdashError:
            raise
        except Exception as e:
            raise OgdashError(f"{path}: is not a readable Parquet file ({type(e).__name__}); write it with "
                              "pandas.DataFrame.to_parquet or datasets' to_parquet.") from None
        return table.to_pylist(), [f"row {i}" for i in range(table.num_rows)]
    if (path / "dataset_dict.json").is_file():
        raise OgdashError(f"{path}: holds a DatasetDict; give one split's folder, e.g. {path / 'train'}.")
    if not (path / "state.json").is_file():
        raise OgdashError(f"{path}: is a folder but not a dataset saved with datasets' save_to_disk (no state.json).")
    try:
        import datasets
    except ModuleNotFoundError:
        raise OgdashError("reading a Hugging Face dataset folder needs the 'datasets' package; install it with "
                          "pip install 'ogdash[tables]'.") from None
    try:
        ds = datasets.load_from_disk(str(path))  # memory-mapped Arrow: its length is known before any row is read
    except Exception as e:
        raise OgdashError(f"{path}: is not a readable saved dataset ({type(e).__name__}); save it again with "
                          "Dataset.save_to_disk.") from None
    if not isinstance(ds, datasets.Dataset):
        raise OgdashError(f"{path}: holds a {type(ds).__name__}; give the folder of one split.")
    _check_rows(len(ds), path)
    return ds.with_format("arrow")[:].to_pylist(), [f"row {i}" for i in range(len(ds))]


# ---------------------------------------------------------------- checking and building


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text(value, what: str, where: str, path: Path) -> str:
    if _missing(value):
        raise OgdashError(f"{path}: {where} has no {what}; add it, or remove the record.")
    if not isinstance(value, str):
        raise OgdashError(f"{path}: {where}: the {what} is {type(value).__name__}, not text; write it as a string.")
    return value


def _chat(messages, where: str, path: Path) -> tuple[list[dict], str, int]:
    """(turns before the completion, the completion, turns after it) of one chat record."""
    if not isinstance(messages, list) or not messages:
        raise OgdashError(f"{path}: {where}: 'messages' must be a non-empty list of {{role, content}} turns.")
    turns = []
    for k, t in enumerate(messages):
        if not isinstance(t, dict) or not isinstance(t.get("role"), str) or not isinstance(t.get("content"), str):
            raise OgdashError(f"{path}: {where}: turn {k + 1} of 'messages' needs a text 'role' and 'content'.")
        turns.append({"role": t["role"], "content": t["content"]})
    last = max((k for k, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        raise OgdashError(f"{path}: {where}: 'messages' has no assistant turn, so there is no completion; add the "
                          "assistant's answer.")
    return turns[:last], turns[last]["content"], len(turns) - last - 1


def _build(rows: list, sources: list, path: Path, fmt: str, name: str) -> PromptData:
    for row, src in zip(rows, sources):
        if not isinstance(row, dict):
            raise OgdashError(f"{path}: {src} is a JSON {type(row).__name__}, not an object; write one "
                              '{"prompt": ..., "completion": ...} object per line.')
    first = rows[0]
    kind = "chat" if "messages" in first else "completion"
    if kind == "completion" and not {"prompt", "completion"} <= set(first):
        found = ", ".join(sorted(map(str, first))[:6]) or "none"
        raise OgdashError(f"{path}: {sources[0]} has no 'prompt' and 'completion' fields (found: {found}); rename "
                          "them, or give chat 'messages'.")
    prompts, completions, messages, after = [], [], [], 0
    for row, src in zip(rows, sources):
        if kind == "chat":
            if "messages" not in row:
                raise OgdashError(f"{path}: {src} has no 'messages' field, unlike {sources[0]}; give every record "
                                  "the same shape.")
            turns, completion, extra = _chat(row["messages"], src, path)
            after += extra
            messages.append(turns)
            prompts.append("\n".join(f"{t['role']}: {t['content']}" for t in turns))
        else:
            prompts.append(_text(row.get("prompt"), "'prompt' field", src, path))
            completion = _text(row.get("completion"), "'completion' field", src, path)
        completions.append(completion)
    empty = [s for s, c in zip(sources, completions) if not c.strip()]
    if empty:
        raise OgdashError(f"{path}: {len(empty)} example(s) have an empty completion (first: {empty[0]}); write "
                          "their completions or remove them.")
    ids, sample_ids = _ids(rows, sources, path)
    extra_cols = sorted({k for r in rows for k, v in r.items() if k not in RESERVED and _scalar(v)}, key=str)
    columns = pd.DataFrame({c: [r.get(c) for r in rows] for c in extra_cols}, index=pd.RangeIndex(len(rows)))
    notes = []
    if after:
        notes.append(f"{after} turn(s) after the last assistant turn were ignored (the completion is the last "
                     "assistant turn).")
    return PromptData(name=name, path=str(path), format=fmt, kind=kind, ids=tuple(ids), sample_ids=sample_ids,
                      sources=tuple(sources), prompts=tuple(prompts), completions=tuple(completions),
                      messages=tuple(messages) if kind == "chat" else None, columns=columns,
                      records=tuple(rows), notes=tuple(notes))


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool, np.generic))


def _ids(rows, sources, path) -> tuple[list[str], np.ndarray]:
    raw = [r.get("id") for r in rows]
    if all(_missing(v) for v in raw):
        return list(sources), np.arange(len(rows), dtype=np.int64)
    seen: dict[str, str] = {}
    ids = []
    for v, src in zip(raw, sources):
        if _missing(v) or (isinstance(v, str) and not v.strip()):
            raise OgdashError(f"{path}: {src} has no id while others have one; give every record an id or none.")
        key = str(v.item() if isinstance(v, np.generic) else v)
        if key in seen:
            raise OgdashError(f"{path}: {src} repeats the id {key[:40]!r} of {seen[key]}; ids must be unique.")
        seen[key] = src
        ids.append(key)
    whole = [_whole(v) for v in raw]
    if all(w is not None for w in whole):
        return ids, np.array(whole, dtype=np.int64)
    return ids, np.arange(len(rows), dtype=np.int64)


def _whole(v) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, np.integer)) and -(2**63) <= int(v) < 2**63:
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit() and len(v.strip()) < 19:
        return int(v)
    return None


# ---------------------------------------------------------------- the cleaned copy


def cleaned_records(data: PromptData, removed=(), edits: dict | None = None) -> list[dict]:
    """The records as read, without the ``removed`` positions and with ``edits`` ({position: new completion})
    written into them: the ``completion`` field, or the content of the last assistant turn."""
    gone = {int(i) for i in removed}
    edits = {int(k): v for k, v in (edits or {}).items()}
    out = []
    for i, record in enumerate(data.records):
        if i in gone:
            continue
        record = copy.deepcopy(record)
        if i in edits:
            if not isinstance(edits[i], str) or not edits[i].strip():
                raise OgdashError(f"{data.sources[i]}: an edited completion must be non-empty text.")
            if data.kind == "chat":
                turns = record["messages"]
                last = max(k for k, t in enumerate(turns) if isinstance(t, dict) and t.get("role") == "assistant")
                turns[last]["content"] = edits[i]
            else:
                record["completion"] = edits[i]
        out.append(record)
    return out


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def jsonl_bytes(records: list[dict]) -> bytes:
    """JSON lines, one record each, UTF-8 (non-ASCII kept as it is)."""
    buf = io.StringIO()
    for r in records:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        buf.write(json.dumps(clean, ensure_ascii=False, default=_plain) + "\n")
    return buf.getvalue().encode("utf-8")


def write_jsonl(records: list[dict], path) -> Path:
    """Write ``records`` as JSON lines to ``path`` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl_bytes(records))
    return path

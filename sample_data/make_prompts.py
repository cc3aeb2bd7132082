"""(Re)generate the fine-tuning samples in sample_data/ from ogdash's built-in task generators.

Run from the repository root:  python sample_data/make_prompts.py

Writes a five-task instruction set (``ogdash.data.prompts.make_instruction_set``, seed 0): 40 training records
per task, 4 of them (10%) with a planted wrong completion, and 6 correct test records per task; the same training
records as chat ``messages``; and the list of planted mistakes. Seeded and written with ``\\n`` line endings, so a
rerun reproduces the files byte for byte. Everything is generated: no download, no third-party text.
"""
import csv
import io
import json
from pathlib import Path

from ogdash.data.prompt_files import jsonl_bytes
from ogdash.data.prompts import make_instruction_set

OUT = Path(__file__).resolve().parent
PER_TASK, TEST_PER_TASK, WRONG = 40, 6, 0.1


def chat(record: dict) -> dict:
    """The same example as a conversation: the prompt as the user's turn, the completion as the assistant's."""
    return {"id": record["id"], "task": record["task"],
            "messages": [{"role": "user", "content": record["prompt"]},
                         {"role": "assistant", "content": record["completion"].strip()}]}


def main():
    s = make_instruction_set(PER_TASK, TEST_PER_TASK, WRONG, seed=0)
    (OUT / "instructions.jsonl").write_bytes(jsonl_bytes(list(s.train)))
    (OUT / "instructions_test.jsonl").write_bytes(jsonl_bytes(list(s.test)))
    (OUT / "instructions_chat.jsonl").write_bytes(jsonl_bytes([chat(r) for r in s.train]))
    (OUT / "instructions_chat_test.jsonl").write_bytes(jsonl_bytes([chat(r) for r in s.test]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "task", "line", "given_completion", "correct_completion"])
    line = {r["id"]: i + 1 for i, r in enumerate(s.train)}
    by_id = {r["id"]: r for r in s.train}
    for rid in sorted(s.wrong, key=line.get):
        w.writerow([rid, by_id[rid]["task"], line[rid], by_id[rid]["completion"], s.wrong[rid]])
    (OUT / "instructions_wrong.csv").write_text(buf.getvalue())
    print(json.dumps({"train": len(s.train), "test": len(s.test), "wrong": len(s.wrong)}))


if __name__ == "__main__":
    main()

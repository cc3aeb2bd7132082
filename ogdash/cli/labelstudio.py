"""``ogdash labelstudio {export,import}``: flagged samples to Label Studio, annotations back as decisions.

``export`` takes the data as ``scan`` does (``--train``/``--test``/``--test-share``/``--seed``, so
the dataset fingerprint is the one the dashboard keys decisions on) and either ``scan --out``'s
scores CSV (its flagged rows) or ``--unsure`` (the samples whose latest decision is unsure). It
writes a Label Studio import file, creates a project on a server, or both. ``import`` reads a
Label Studio JSON export or the project on the server and stores each annotation as a decision.
The server's address and token default to ``$LABEL_STUDIO_URL`` and ``$LABEL_STUDIO_API_KEY``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from ogdash.cli.args import Parser, fraction
from ogdash.core.errors import OgdashError
from ogdash.review import default_store_path


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("LABEL_STUDIO_URL"),
                   help="Label Studio server, e.g. http://localhost:8080 (default: $LABEL_STUDIO_URL)")
    p.add_argument("--token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="access token from Label Studio's Account & Settings (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--decisions", type=Path, help="decision store (default: $OGDASH_DECISIONS or "
                                                  "~/.local/share/ogdash/decisions.sqlite)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_labelstudio_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``labelstudio export`` and ``labelstudio import`` on the CLI's subparsers."""
    ls = subparsers.add_parser("labelstudio", help="export flagged samples to Label Studio, import the annotations "
                                                   "back as review decisions")
    sub = ls.add_subparsers(dest="ls_command", required=True, parser_class=Parser)
    e = sub.add_parser("export", help="flagged (or unsure) samples as a Label Studio project or import file")
    e.add_argument("--train", required=True, help="the training set given to scan (.npz, .csv, .parquet or a "
                                                  "saved dataset folder)")
    e.add_argument("--test", help="the test set given to scan, if any")
    e.add_argument("--val", help="the validation set given to scan, if any")
    e.add_argument("--test-share", type=fraction, default=0.2, help="as scan's (default 0.2)")
    e.add_argument("--seed", type=int, default=0, help="as scan's (default 0)")
    e.add_argument("--scores", type=Path, help="scan --out's CSV: its flagged rows are exported with their "
                                               "suggested label and score")
    e.add_argument("--unsure", action="store_true", help="export the samples whose latest decision is 'unsure' "
                                                         "(with --scores: with their suggestion and score)")
    e.add_argument("--reviewer", help="with --unsure: only this reviewer's unsure decisions")
    e.add_argument("--method", help="the detector that made the scores, named in the suggestion's model "
                                    "version ('ogdash METHOD')")
    e.add_argument("--out", type=Path, help="write a Label Studio import file (.json) and its labelling config "
                                            "(.label_config.xml) here")
    e.add_argument("--title", default="ogdash review", help="the new project's title (with --url)")
    _server_args(e)
    i = sub.add_parser("import", help="annotations made in Label Studio as review decisions")
    i.add_argument("export", nargs="?", type=Path, help="a Label Studio JSON export of the project (or give "
                                                        "--url, --token and --project)")
    i.add_argument("--project", type=int, help="the project's id on the server")
    i.add_argument("--user", action="append", default=[], metavar="ID=NAME",
                   help="reviewer name for a Label Studio user id (an export file names users by id only)")
    _server_args(i)
    return ls


def _scores_table(path: Path, train):
    import pandas as pd

    try:
        table = pd.read_csv(path, encoding="utf-8")
    except Exception as exc:
        raise OgdashError(f"{path}: cannot be read as scan's scores CSV ({type(exc).__name__}); write it with "
                          "ogdash scan --out.") from None
    missing = {"id", "score", "flagged", "given_label"} - set(table.columns)
    if missing:
        raise OgdashError(f"{path}: lacks column(s) {sorted(missing)}; give the CSV written by ogdash scan --out.")
    ids = table["id"].to_numpy(dtype=np.int64)
    if not np.isin(ids, train.ids).all() or len(ids) != train.n:
        raise OgdashError(f"{path}: its ids are not the training set's; give the --train (and --test, --test-share, "
                          "--seed) that scan was given.")
    if not np.array_equal(table["given_label"].to_numpy(), train.y[train.positions(ids)]):
        raise OgdashError(f"{path}: its given labels differ from the training set's; give the data scan was given.")
    return table.set_index("id")


def run_export(args) -> dict:
    from ogdash.data.files import load_splits
    from ogdash.labelstudio import label_config, make_tasks, push, unsure_ids, write_import_file
    from ogdash.review import DecisionStore

    if not args.out and not args.url:
        raise OgdashError("say where the tasks go: --out tasks.json (an import file) and/or --url and --token "
                          "(a new project on the server).")
    if args.scores is None and not args.unsure:
        raise OgdashError("say which samples: --scores scores.csv (scan --out's flagged rows) or --unsure.")
    train = load_splits(args.train, args.test, args.val, args.test_share, args.seed).train
    table = None if args.scores is None else _scores_table(args.scores, train)
    if args.unsure:
        ids = unsure_ids(DecisionStore(args.decisions or default_store_path()), train.fingerprint(), args.reviewer)
    else:
        ids = table.index[table["flagged"].astype(bool)].to_numpy(dtype=np.int64)
    suggested = scores = None
    if table is not None and len(ids):
        rows = table.loc[ids]
        column = "suggested_label" if "suggested_label" in rows.columns else "predicted_label"
        suggested = rows[column].to_numpy() if column in rows.columns else None
        scores = rows["score"].to_numpy(dtype=float)
    tasks = make_tasks(train, ids, suggested, scores, args.method)
    config = label_config(train)
    out = {"tasks": len(tasks), "dataset": train.fingerprint(), "ids": ids.tolist()}
    if args.out:
        path, xml = write_import_file(tasks, config, args.out)
        out.update(file=str(path), label_config=str(xml))
    if args.url:
        project = push(tasks, config, args.url, args.token, args.title)
        out.update(project=project, url=f"{args.url.rstrip('/')}/projects/{project}")
    return out


def format_export(result: dict) -> str:
    lines = []
    if "file" in result:
        lines.append(f"wrote {result['tasks']} tasks to {result['file']} (labelling config: {result['label_config']})")
    if "project" in result:
        lines.append(f"created Label Studio project {result['project']} with {result['tasks']} tasks: {result['url']}")
    return "\n".join(lines)


def _users(pairs) -> dict[int, str]:
    users = {}
    for pair in pairs:
        key, sep, name = pair.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise OgdashError(f"--user takes ID=NAME, like 3=ann@example.com; got {pair!r}.")
        users[int(key)] = name.strip()
    return users


def run_import(args) -> dict:
    from ogdash.labelstudio import fetch_tasks, import_decisions, read_export
    from ogdash.review import DecisionStore

    if (args.export is None) == (args.project is None):
        raise OgdashError("give either a Label Studio JSON export file or --project (with --url and --token).")
    if args.export is not None:
        tasks, users = read_export(args.export), {}
    else:
        tasks, users = fetch_tasks(args.url, args.token, args.project)
    store = DecisionStore(args.decisions or default_store_path())
    result = import_decisions(store, tasks, {**users, **_users(args.user)})
    return {**result.to_dict(), "decisions": str(store.path)}


def format_import(result: dict) -> str:
    who = ", ".join(result["reviewers"]) or "nobody"
    return (f"{result['annotations']} annotations by {who}: {result['kept']} keep, {result['relabelled']} relabel; "
            f"{result['added']} new decisions in {result['decisions']}, "
            f"{result['annotations'] - result['added']} already there; {result['skipped']} skipped or empty")


def run(args) -> dict:
    return (run_export if args.ls_command == "export" else run_import)(args)


def format_result(result: dict) -> str:
    return format_import(result) if "added" in result else format_export(result)

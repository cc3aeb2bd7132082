"""Headless commands: ``ogdash {scan,apply,extract,textselect,llm,labelstudio} ...`` (also ``python -m ogdash``).

Bad input exits with status 2 and a one-line ``error: ...`` on stderr, never a traceback.
"""
from __future__ import annotations

import argparse

import numpy as np

from ogdash.cli.args import Parser, choice_list, positive_int, run_command
from ogdash.cli.choices import add_data_arguments, add_model_arguments, data_spec, model_choice
from ogdash.cli.extract import add_extract_parser, summary_line
from ogdash.cli.extract import run as run_extract
from ogdash.cli.labelstudio import add_labelstudio_parser, format_result as format_labelstudio, run as run_labelstudio
from ogdash.cli.llm import add_llm_parser, format_llm, run_llm
from ogdash.cli.text import add_textselect_parser, format_textselect, run_textselect
from ogdash.core.cache import DiskCache
from ogdash.core.progress import Timer, stderr_progress
from ogdash.models.zoo import TUNES
from ogdash.pipeline import DETECTORS, RECOMMENDED
from ogdash.retrain import ACTIONS, RESTORED


OUT_TEXT = 200  # characters of each text in scan's --out


def _budget(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget must be a number (a fraction like 0.05 or a count like 50) or 'auto'; got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ogdash", description="Find detrimental training samples by outlier gradient analysis.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    s = sub.add_parser("scan", help="train, extract gradients, score, flag (and optionally retrain)")
    add_data_arguments(s)
    s.add_argument("--val", help="validation set (inliers for OneClassSVM); without it OneClassSVM fits on the "
                                  "training gradients, so every sample is scored")
    add_model_arguments(s, "your network's weights (.safetensors, or a tensors-only torch checkpoint)")
    s.add_argument("--tune", choices=TUNES, default="last",
                   help="with --retrain on your network: fine-tune its last layer (default) or all layers, from "
                        "your weights")
    s.add_argument("--detector", choices=list(DETECTORS), default=RECOMMENDED,
                   help=f"default: {RECOMMENDED}, the best in the detection benchmark")
    s.add_argument("--budget", type=_budget, default=0.05,
                   help="fraction 0<B<1 or count B>=1 of samples to flag, or 'auto': the estimated share of "
                        "mislabelled samples (reported as suggested_budget)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="write per-sample scores to this CSV")
    s.add_argument("--retrain", action="store_true",
                   help="apply each --action to the flags and retrain, beside the unchanged data and a control of "
                        "each fix's kind: as many random removals, or the suggested label on as many random samples "
                        "(and, when true labels are known, every flipped label restored)")
    s.add_argument("--action", type=choice_list(ACTIONS), default=("remove",),
                   help="with --retrain: comma-separated fixes of the flags: remove, relabel (to the suggested label), "
                        "auto (relabel where the suggestion is sure, remove the rest), or all (default: remove)")
    s.add_argument("--seeds", type=positive_int, default=3, help="with --retrain: seeds --seed, --seed+1, … (default 3)")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s.add_argument("--cache", help="cache directory (default: $OGDASH_CACHE or ~/.cache/ogdash)")
    s.add_argument("--no-cache", action="store_true", help="compute everything afresh")
    a = sub.add_parser("apply", help="write a corrected copy of an image folder from the Review page's folder changes")
    a.add_argument("changes", help="folder_changes.csv (path,given,decision,new_label) exported on the Review page")
    a.add_argument("--folder", required=True, help="the image folder the changes were made on (never modified)")
    a.add_argument("--out", required=True, help="a new folder for the corrected copy")
    a.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_extract_parser(sub)
    add_textselect_parser(sub)
    add_llm_parser(sub)
    add_labelstudio_parser(sub)
    return p


def run_scan(args) -> dict:
    """The ``scan`` command for parsed ``args``: a JSON-able summary (and ``--out``'s CSV)."""
    from ogdash.pipeline import Scan, ScanSettings

    timer = Timer()
    data, spec = data_spec(args, args.val), model_choice(args, args.tune)
    settings = ScanSettings(args.detector, args.budget, args.seed)
    scanned = Scan(data, spec, settings, None if args.no_cache else DiskCache(args.cache))
    with timer("load"):
        splits = scanned.splits()
    res = scanned.result()
    out = {"n_train": splits.train.n, "n_test": splits.test.n, "test_held_out": data.held_out,
           "n_flagged": int(res.flags.sum()), "detector": args.detector,
           "budget": args.budget, "accuracy_before": res.accuracy_before,
           "classes": list(splits.train.classes), "seconds": {**timer.seconds, **res.seconds}}
    if splits.notes or res.notes:
        out["notes"] = [*splits.notes, *res.notes]
    if res.suggested_budget is not None:
        out["budget"] = res.suggested_budget.budget
        out["suggested_budget"] = res.suggested_budget.to_dict()
    if splits.val is not None:
        out["n_val"] = splits.val.n
    if res.detection is not None:
        out["detection"] = res.detection
    if args.retrain:
        from ogdash.retrain import compare, fixes_from_flags, restored

        with timer("retrain"):
            P = scanned.probabilities()
            fixes = fixes_from_flags(splits.train, res.flags, P.argmax(1), P.max(1), actions=args.action)
            if splits.train.truth_known and splits.train.noisy.any():
                fixes.append(restored(splits.train))
            said = stderr_progress()  # the overall progress the dashboard shows, in the same words
            c = compare(splits, spec, fixes, range(args.seed, args.seed + args.seeds), scanned.cache,
                        lambda f, msg: said(f, f"retraining: {msg}"), suggested=P.argmax(1))
        out["retrain"] = {"seeds": c.seeds, "steps": c.steps, "rows": c.to_rows(),
                          "verdicts": {a: c.verdict(a) for a in args.action}}
        if any(r.name == RESTORED for r in c.rows):
            out["retrain"]["restored"] = c.verdict(RESTORED)
        out["accuracy_after"] = c.row(args.action[0]).accuracy.mean()
        out["seconds"]["retrain"] = timer.seconds["retrain"]
    if args.out:
        with timer("out"):
            _write_out(args.out, splits.train, res)
        out["seconds"]["out"] = timer.seconds["out"]
    return out


def _write_out(path, train, res) -> None:
    """``--out``: one CSV row per training sample (a million rows in seconds: pandas' writer over columns)."""
    import pandas as pd

    predicted = res.grads.predicted
    df = pd.DataFrame({"id": train.ids, "source": train.source_list(), "given_label": train.y,
                       "predicted_label": predicted, "score": res.scores, "flagged": res.flags.astype(int)})
    if train.y_true is not None:
        df["true_label"] = train.y_true
    if train.kind == "text":  # the row's classes by name, and the text (its first characters)
        names = np.asarray(train.classes, object)
        df["given_class"], df["predicted_class"] = names[train.y], names[predicted]
        df["text"] = [t if len(t) <= OUT_TEXT else t[:OUT_TEXT - 1] + "…" for t in train.texts]
    df.to_csv(path, index=False)


def format_scan(result: dict) -> str:
    """The scan's result in a line or two; each accuracy names its baseline."""
    line = (f"flagged {result['n_flagged']} of {result['n_train']} training samples; the trained model's test accuracy "
            f"{result['accuracy_before']:.3f}")
    if result.get("test_held_out"):
        line += f" on {result['n_test']} samples held out of --train (not scored)"
    if "suggested_budget" in result:
        b = result["suggested_budget"]
        line = (f"suggested budget {b['fraction']:.1%} ({b['level']:.0%} interval {b['low']:.1%}-{b['high']:.1%}); "
                + line)
    if "detection" in result:
        d = result["detection"]
        line += f"; detection precision {d['precision']:.2f}, recall {d['recall']:.2f}, AUROC {d['auroc']:.3f}"
    for note in result.get("notes", []):
        line += f"\n  note: {note}"
    if "retrain" in result:
        rt = result["retrain"]
        base, seeds = rt["rows"][0], rt["seeds"]
        which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
        line += (f"\n  retrained on {which} without changes (the baseline): test accuracy {base['accuracy_mean']:.3f}"
                 + ("" if len(seeds) == 1 else f" ± {base['accuracy_std']:.3f} (mean ± std)"))
        for r in rt["rows"][1:]:
            line += (f"\n  {r['label']}: test accuracy {r['accuracy_mean']:.3f} ({100 * r['change_mean']:+.1f} points "
                     "against the baseline)")
        for action, verdict in rt["verdicts"].items():
            line += f"\n  {action}: {verdict}"
        if "restored" in rt:
            line += f"\n  {rt['restored']}"
    return line


def run_apply(args) -> dict:
    from ogdash.exports import apply_folder_changes

    return {"out": args.out, **apply_folder_changes(args.changes, args.folder, args.out)}


def format_apply(result: dict) -> str:
    return (f"wrote {result['out']}: {result['copied']} images copied as they were, {result['relabelled']} moved to "
            f"their new class, {result['removed']} left out")


# command -> (run(args) -> dict, format(dict) -> str)
COMMANDS = {"scan": (run_scan, format_scan), "apply": (run_apply, format_apply), "extract": (run_extract, summary_line),
            "textselect": (run_textselect, format_textselect), "llm": (run_llm, format_llm),
            "labelstudio": (run_labelstudio, format_labelstudio)}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(*COMMANDS[args.command], args)
